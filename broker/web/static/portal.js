// vdi-broker portal: the little there is to script, as a static file (CSP
// script-src 'self'; no inline script or event handler anywhere).
"use strict";

(function () {
  // A desktop that is starting: ask the API until the session is no longer
  // pending (202), then reload, which shows the connect details.
  function pollStarting() {
    var box = document.getElementById("starting");
    if (!box || !box.dataset.poll) { return; }
    var url = box.dataset.poll;
    var deadline = Date.now() + 6 * 60 * 1000;
    function ask() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (response.status === 202 && Date.now() < deadline) {
            window.setTimeout(ask, 2000);
          } else {
            window.location.reload();
          }
        })
        .catch(function () { window.setTimeout(ask, 5000); });
    }
    window.setTimeout(ask, 2000);
  }

  // Copy buttons next to commands; hidden without script or clipboard.
  function copyButtons() {
    if (!navigator.clipboard) { return; }
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var source = document.getElementById(button.dataset.copy);
      if (!source) { return; }
      // Only the visible word changes: the hidden words after it tell a screen
      // reader what the button copies, and must stay hidden.
      var shown = button.querySelector(".label") || button;
      var label = shown.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          shown.textContent = button.dataset.done || label;
          window.setTimeout(function () { shown.textContent = label; }, 2000);
        });
      });
    });
  }

  // A form that loses something when sent (ending a desktop session, locking
  // an account, removing a setting) asks first: one stray tap on a tablet must
  // not wipe a desktop. Its question is the form's data-confirm.
  function confirmForms() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    pollStarting();
    copyButtons();
    confirmForms();
  });
})();
