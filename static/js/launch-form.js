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

// The meta-training form: how long training will take, from the jobs that finished here.
(function () {
  "use strict";
  const data = document.getElementById("job-speeds");
  const out = document.querySelector("[data-estimate]");
  const form = out && out.closest("form");
  if (!data || !form) return;
  const speeds = JSON.parse(data.textContent);
  const field = (name) => form.querySelector(`[name="${name}"]`);
  function spoken(seconds) {
    if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }
  function update() {
    const algorithm = field("algorithm").value;
    const speed = speeds[algorithm];
    if (!speed) { out.textContent = `No ${algorithm} job has finished here yet, so there is no measured speed to estimate from.`; return; }
    const steps = Number(field("steps").value || field("steps").placeholder || 0);
    const batch = Number(field("meta_batch").value || 1);
    if (!steps) { out.textContent = ""; return; }
    out.textContent = `Training takes about ${spoken(steps * batch * speed.seconds)} on this site's workers ` +
      `(the median speed of its last ${speed.jobs} ${algorithm} job${speed.jobs > 1 ? "s" : ""}), then the evaluation.`;
  }
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
})();
