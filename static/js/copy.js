// "Copy" buttons: data-copy-from names the element whose text is copied (a json_script
// element with data-copy-json is copied pretty-printed). The status line says what happened.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-from]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-from"));
    if (!source) return;
    var text = source.textContent;
    if (button.hasAttribute("data-copy-json")) text = JSON.stringify(JSON.parse(text), null, 2);
    var status = button.parentNode.querySelector("[data-copy-status]");
    function say(message) { if (status) status.textContent = message; }
    if (!navigator.clipboard) { say("Copying needs a secure (https or localhost) page."); return; }
    navigator.clipboard.writeText(text).then(
      function () { say("Copied."); },
      function () { say("The browser refused to copy."); }
    );
  });
})();
