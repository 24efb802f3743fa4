// otphub console: progressive enhancement only. Every page works without
// this script; it adds confirmation prompts, copy buttons and the org
// picker's instant switch. Loaded as a file (the CSP allows no inline script).
"use strict";
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    e.preventDefault();
  }
});
document.addEventListener("click", function (e) {
  var id = e.target.getAttribute && e.target.getAttribute("data-copy");
  if (!id || !navigator.clipboard) {
    return;
  }
  var el = document.getElementById(id);
  navigator.clipboard.writeText(el.textContent).then(function () {
    e.target.textContent = "Copied";
  });
});
document.addEventListener("change", function (e) {
  var form = e.target.form;
  if (form && form.hasAttribute("data-org-picker")) {
    window.location.assign("/console/orgs/" + encodeURIComponent(e.target.value) + "/");
  }
});
// Live preview of an SMS template while typing (the Preview button does
// the same without script).
(function () {
  var form = document.querySelector("form[data-preview]");
  if (!form) {
    return;
  }
  var body = form.querySelector("textarea[name=body]");
  var out = document.getElementById("preview");
  var timer = null;
  body.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var data = new URLSearchParams();
      data.set("csrf", form.querySelector("input[name=csrf]").value);
      data.set("body", body.value);
      fetch(form.getAttribute("data-preview"), { method: "POST", body: data, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (res) {
          out.textContent = res.text;
          out.classList.toggle("bad", !res.ok);
        });
    }, 250);
  });
})();
