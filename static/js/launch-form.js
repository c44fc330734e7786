// Launch forms: show only the settings the chosen algorithm (or transfer method) takes. Each
// setting's input names its algorithms in data-algorithms; without JavaScript all stay shown
// and the server ignores the ones the algorithm does not take.
(function () {
  "use strict";
  document.querySelectorAll("form[data-settings-for]").forEach((form) => {
    const chooser = form.querySelector(`[name="${form.dataset.settingsFor}"]`);
    if (!chooser) return;
    function update() {
      form.querySelectorAll("[data-algorithms]").forEach((input) => {
        const field = input.closest(".field");
        const takes = input.dataset.algorithms.split(" ").includes(chooser.value);
        if (field) field.hidden = !takes;
        input.disabled = !takes;  // a hidden setting is not sent
      });
    }
    chooser.addEventListener("change", update);
    update();
  });
})();

// The meta-training form: the automatic split of the chosen domain, before anything is launched.
(function () {
  "use strict";
  const data = document.getElementById("split-previews");
  const preview = document.querySelector("[data-split-preview]");
  const domain = document.querySelector('select[name="domain"]');
  if (!data || !preview || !domain) return;
  const splits = JSON.parse(data.textContent);
  function update() {
    const text = splits[domain.value];
    preview.textContent = text ? `Without a task spec, the automatic split (seed 0) is: ${text}.` : "";
  }
  domain.addEventListener("change", update);
  update();
})();
