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
