// Forms whose answer takes seconds (data-busy="message"): on submit, show the message in
// the form's status line and disable its button, so a slow page is not taken for a dead one.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("form[data-busy]"), function (form) {
    form.addEventListener("submit", function () {
      var status = form.querySelector("[data-busy-status]");
      var button = form.querySelector('button[type="submit"]');
      if (status) {
        status.textContent = form.getAttribute("data-busy");
        status.hidden = false;
      }
      if (button) button.disabled = true;
      form.setAttribute("aria-busy", "true");
    });
  });
})();
