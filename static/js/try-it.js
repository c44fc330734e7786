// "Try it" and "Draw samples" pages: previews of the chosen images, "More labels" adds a row in place, and a
// prediction is asked for without leaving the page.
// Without JavaScript the form still works: "More labels" reloads with more rows, and the
// post shows the predictions.
(function () {
  "use strict";
  var form = document.querySelector("[data-try-it]");
  if (!form) return;
  var MAX_PREVIEWS = 24;

  function preview(input) {
    var box = input.parentNode.querySelector("[data-try-preview]");
    if (!box || !window.URL || !URL.createObjectURL) return;
    Array.prototype.forEach.call(box.querySelectorAll("img"), function (img) { URL.revokeObjectURL(img.src); });
    box.textContent = "";
    Array.prototype.slice.call(input.files, 0, MAX_PREVIEWS).forEach(function (file) {
      var img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = "";
      box.appendChild(img);
    });
  }

  form.addEventListener("change", function (event) {
    if (event.target.hasAttribute("data-try-files")) preview(event.target);
  });

  // Submitting in place keeps the chosen files (a page reload would clear every file input):
  // the answer's predictions and error replace the ones on the page.
  form.addEventListener("submit", function (event) {
    if (!window.fetch || !window.FormData || !window.DOMParser) return;
    event.preventDefault();
    var button = form.querySelector('button[type="submit"]');
    if (button) { button.disabled = true; button.dataset.label = button.textContent; button.textContent = button.dataset.busy || "Predicting…"; }
    fetch(form.action || location.href, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var answer = new DOMParser().parseFromString(html, "text/html");
        var swap = function (selector, where) {
          var fresh = answer.querySelector(selector);
          var old = document.querySelector(selector);
          if (old) old.remove();
          if (fresh) where(document.importNode(fresh, true));
        };
        swap("[data-try-it] .form-errors", function (node) { form.prepend(node); });
        swap("#predictions", function (node) { form.after(node); });
        var shown = document.querySelector("#predictions") || document.querySelector("[data-try-it] .form-errors");
        if (shown) shown.scrollIntoView({ block: "nearest" });
      })
      .catch(function () { form.submit(); })
      .finally(function () {
        if (button) { button.disabled = false; button.textContent = button.dataset.label; }
      });
  });

  var add = form.querySelector("[data-try-add]");
  var rows = form.querySelector("[data-try-rows]");
  if (add && rows) {
    add.addEventListener("click", function (event) {
      var all = rows.querySelectorAll("[data-try-row]");
      var last = all[all.length - 1];
      if (!last || all.length >= 100) return;
      event.preventDefault();
      var index = all.length;
      var row = last.cloneNode(true);
      var text = row.querySelector('input[type="text"]');
      var file = row.querySelector('input[type="file"]');
      var label = row.querySelector("label");
      text.id = text.name = "label_" + index;
      text.value = "";
      file.name = "support_" + index;
      file.value = "";
      file.setAttribute("aria-label", "Images of label " + (index + 1));
      label.htmlFor = text.id;
      label.textContent = "Label " + (index + 1);
      row.querySelector("[data-try-preview]").textContent = "";
      rows.appendChild(row);
      text.focus();
    });
  }
})();
