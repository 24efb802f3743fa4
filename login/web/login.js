// Progressive enhancement of the hosted SMS OTP prompt: the resend
// countdown and WebOTP autofill. The page works without this file.
(function () {
  "use strict";
  var resend = document.getElementById("resend");
  var countdown = document.getElementById("countdown-seconds");
  if (resend && resend.hasAttribute("data-resend-wait")) {
    var left = parseInt(resend.getAttribute("data-resend-wait"), 10) || 0;
    var tick = function () {
      if (left <= 0) {
        resend.disabled = false;
        resend.removeAttribute("aria-describedby");
        var p = document.getElementById("countdown");
        if (p) { p.hidden = true; }
        return;
      }
      if (countdown) { countdown.textContent = String(left); }
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }

  // WebOTP (WICG): the SMS ends with "@<host> #<code>"; the browser offers
  // the code to this origin only.
  var input = document.querySelector('input[autocomplete="one-time-code"]');
  if (input && document.body.getAttribute("data-webotp") === "on" && "OTPCredential" in window) {
    var form = input.form;
    var ac = new AbortController();
    form.addEventListener("submit", function () { ac.abort(); });
    navigator.credentials.get({ otp: { transport: ["sms"] }, signal: ac.signal }).then(function (otp) {
      if (otp && otp.code) {
        input.value = otp.code;
        form.submit();
      }
    }).catch(function () { /* dismissed or unsupported: the user types the code */ });
  }
})();
