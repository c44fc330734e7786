// Compare page: one line per run for the chosen metric, against each run's own step (a
// transfer job's two runs are drawn as two lines). The same numbers fill a table.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("compare-curves-data").textContent);
  const select = document.getElementById("compare-metric");
  const canvas = document.getElementById("compare-chart");
  const table = document.getElementById("compare-table");
  const COLORS = ["#2f5bd3", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#e67700", "#495057"];
  const NOT_SERIES = new Set(["step", "run_step", "phase"]);

  document.querySelectorAll("[data-swatch]").forEach((el) => {
    el.style.background = COLORS[Number(el.dataset.swatch) % COLORS.length];
  });
  const metrics = [...new Set(data.flatMap((run) => run.history.flatMap((p) =>
    Object.keys(p).filter((k) => !NOT_SERIES.has(k) && typeof p[k] === "number"))))];
  metrics.forEach((name) => select.append(new Option(name, name, name === "loss", name === "loss")));
  const empty = metrics.length === 0;
  canvas.hidden = empty;
  document.querySelector("[data-chart-empty]").hidden = !empty;
  if (empty) return;

  function lines(metric) {
    return data.flatMap((run, i) => {
      const phases = [...new Set(run.history.map((p) => p.phase).filter(Boolean))];
      return (phases.length > 1 ? phases : [null]).map((phase) => ({
        label: phase ? `${run.label} (${phase})` : run.label,
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
        borderDash: phase === "baseline" ? [6, 4] : undefined,
        data: run.history
          .filter((p) => typeof p[metric] === "number" && (!phase || p.phase === phase))
          .map((p) => ({ x: phase ? p.run_step : p.step, y: p[metric] })),
        borderWidth: 2, pointRadius: 0, tension: 0.2,
      })).filter((line) => line.data.length);
    });
  }
  function fillTable(sets) {
    const head = document.createElement("tr");
    ["run", "step", select.value].forEach((t) => { const th = document.createElement("th"); th.textContent = t; head.append(th); });
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(...sets.flatMap((set) => set.data.map((pt) => {
      const tr = document.createElement("tr");
      [set.label, pt.x, pt.y.toFixed(4)].forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.append(td); });
      return tr;
    })));
  }
  let chart = null;
  function draw() {
    const sets = lines(select.value);
    fillTable(sets);
    if (!window.Chart) return;
    if (chart) { chart.data.datasets = sets; chart.update("none"); return; }
    chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: sets },
      options: {
        animation: false, parsing: false, responsive: true,
        scales: { x: { type: "linear", title: { display: true, text: "step (of each run)" } } },
      },
    });
  }
  select.addEventListener("change", draw);
  draw();
})();
