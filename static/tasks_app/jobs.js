// Live job state over websockets. The server-rendered page stands without this script;
// with it, a snapshot arrives first, then events with sequence numbers. After a
// reconnect the socket sends a fresh snapshot, so nothing missed while away is lost.
(function () {
  "use strict";
  const scheme = location.protocol === "https:" ? "wss" : "ws";

  // ``path`` may be a function, asked again at every reconnect (a job page adds what it has).
  function connect(path, onMessage, stateEl) {
    let delay = 500;
    function open() {
      const where = typeof path === "function" ? path() : path;
      const socket = new WebSocket(`${scheme}://${location.host}${where}`);
      socket.onopen = () => { delay = 500; if (stateEl) stateEl.textContent = "Live"; };
      socket.onmessage = (e) => onMessage(JSON.parse(e.data));
      socket.onclose = () => {
        if (stateEl) stateEl.textContent = "Reconnecting…";
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  function setText(root, selector, text) {
    const el = root.querySelector(selector);
    if (el) el.textContent = text;
  }

  function setProgress(root, job) {
    const bar = root.querySelector("[data-progress] .progress-bar");
    if (bar) {
      bar.style.width = `${job.percent}%`;
      bar.className = `progress-bar status-${job.status}`;
    }
    const wrap = root.querySelector("[data-progress]");
    if (wrap) wrap.setAttribute("aria-valuenow", Math.round(job.percent));
    const badge = root.querySelector("[data-status]");
    if (badge) {
      badge.textContent = job.status.charAt(0).toUpperCase() + job.status.slice(1);
      badge.className = `badge status-${job.status}`;
    }
  }

  // --- job detail ---------------------------------------------------------------------
  const detail = document.getElementById("job");
  if (detail) {
    const jobId = detail.dataset.job;
    const snapshot = JSON.parse(document.getElementById("job-snapshot").textContent);
    let seq = -1;
    let chart = null;
    const chartEl = document.getElementById("chart");

    const NOT_SERIES = new Set(["step", "run_step", "phase"]);
    function seriesNames(points) {
      const names = new Set();
      points.forEach((p) => Object.keys(p).forEach((k) => { if (!NOT_SERIES.has(k) && typeof p[k] === "number") names.add(k); }));
      return [...names];
    }
    // A job of several runs (a transfer and its from-scratch baseline) draws one line per run
    // and metric, each against the run's own step, so the two can be compared point by point.
    function chartSeries(history, names) {
      const phases = [...new Set(history.map((p) => p.phase).filter(Boolean))];
      const runs = phases.length > 1 ? phases : [null];
      return runs.flatMap((phase) => names.map((name) => {
        const points = history.filter((p) => typeof p[name] === "number" && (phase === null || p.phase === phase));
        return {
          label: phase === null ? name : `${name} (${phase})`,
          data: points.map((p) => ({ x: phase === null ? p.step : p.run_step, y: p[name] })),
          yAxisID: name === "loss" ? "loss" : "metric",
          borderDash: phase === "baseline" ? [6, 4] : undefined,
          borderWidth: 2, pointRadius: 0, tension: 0.2,
        };
      })).filter((set) => set.data.length);
    }
    // The chart's numbers for screen readers and copying: one row per point, one column per series.
    function fillTable(history, names) {
      const table = document.getElementById("chart-table");
      if (!table) return;
      const head = document.createElement("tr");
      const phased = history.some((p) => p.phase);
      const columns = phased ? ["run", "step", ...names] : ["step", ...names];
      columns.forEach((name) => { const th = document.createElement("th"); th.textContent = name; head.append(th); });
      table.tHead.replaceChildren(head);
      table.tBodies[0].replaceChildren(...history.map((p) => {
        const tr = document.createElement("tr");
        const values = names.map((n) => (typeof p[n] === "number" ? p[n].toFixed(4) : "—"));
        (phased ? [p.phase || "", p.run_step ?? p.step, ...values] : [p.step, ...values]).forEach((v) => {
          const td = document.createElement("td");
          td.className = "num";
          td.textContent = v;
          tr.append(td);
        });
        return tr;
      }));
    }
    function drawChart(history) {
      if (!chartEl) return;
      const names = seriesNames(history);
      // A job that ends before its first step has nothing to draw: say so, not an empty 0-1 plot.
      const empty = history.length === 0;
      chartEl.hidden = empty;
      const emptyNote = document.querySelector("[data-chart-empty]");
      if (emptyNote) emptyNote.hidden = !empty || !["succeeded", "failed", "cancelled"].includes(lastStatus);
      fillTable(history, names);
      if (!window.Chart || empty) return;
      const datasets = chartSeries(history, names);
      if (chart) { chart.data.datasets = datasets; chart.update("none"); return; }
      chart = new window.Chart(chartEl, {
        type: "line",
        data: { datasets },
        options: {
          animation: false, parsing: false, responsive: true,
          scales: {
            x: { type: "linear", title: { display: true, text: "step" } },
            loss: { type: "linear", position: "left", title: { display: true, text: "loss" } },
            metric: { type: "linear", position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "metric" } },
          },
        },
      });
    }
    let history = snapshot.history || [];
    const startedFinal = ["succeeded", "failed", "cancelled"].includes(snapshot.status);

    let lastStatus = snapshot.status;
    function render(job) {
      if (job.seq !== undefined && job.seq < seq) return;  // an older event than what we show
      seq = job.seq;
      lastStatus = job.status;
      if (job.attempts) setText(document, "[data-attempts]", ` · attempt ${job.attempts}`);
      setProgress(detail, job);
      setText(detail, "[data-step]", job.step);
      setText(detail, "[data-total]", job.total);
      setText(detail, "[data-phase]", job.phase || "");
      setText(detail, "[data-percent-text]", `${Math.round(job.percent)}%`);
      const final = ["succeeded", "failed", "cancelled"].includes(job.status);
      setText(detail, "[data-eta]", job.eta_seconds != null && !final ? `${Math.round(job.eta_seconds)} s` : "—");
      const phaseBox = detail.querySelector("[data-phase-progress]");
      if (phaseBox) {
        phaseBox.hidden = !job.phase_total || final;
        setText(detail, "[data-phase-done]", job.phase_done);
        setText(detail, "[data-phase-total]", job.phase_total);
        const phaseBar = detail.querySelector("[data-phase-bar]");
        if (phaseBar) phaseBar.style.width = `${job.phase_percent || 0}%`;
      }
      const log = document.querySelector("[data-log]");
      if (log && job.log && job.log.length) {
        log.replaceChildren(...job.log.map((entry) => {
          const li = document.createElement("li");
          const at = document.createElement("span");
          at.className = "mono muted";
          at.textContent = entry.at.slice(0, 19);
          li.append(at, ` ${entry.message}`);
          return li;
        }));
      }
      const error = detail.querySelector("[data-error]");
      if (error) { error.hidden = !job.error; error.textContent = job.error || ""; }
      if (job.result_model_url) {
        const result = detail.querySelector("[data-result]");
        result.hidden = false;
        if (!document.getElementById("model-link")) {
          result.innerHTML = 'Registered model: <a id="model-link"></a>';
          const link = document.getElementById("model-link");
          link.href = job.result_model_url;
          link.textContent = job.result_model_name || `model #${job.result_model}`;
        }
      }
      const metrics = detail.parentElement.querySelector("[data-metrics]");
      if (metrics && job.metrics && Object.keys(job.metrics).length) {
        metrics.replaceChildren(...Object.entries(job.metrics).flatMap(([name, value]) => {
          const dt = document.createElement("dt");
          const dd = document.createElement("dd");
          dt.textContent = name;
          dd.className = "mono";
          dd.textContent = typeof value === "number" ? value.toFixed(4) : String(value);
          return [dt, dd];
        }));
      }
      if (final) { const cancel = document.querySelector("[data-cancel-form]"); if (cancel) cancel.remove(); }
      // A finished import created its domain: the server-rendered page links it.
      if (final && job.kind === "import" && job.status === "succeeded" && !startedFinal) location.reload();
      if (job.history && job.history_after != null) {
        // A reconnect's snapshot: only the points after the ones this page has.
        history = history.filter((p) => p.step <= job.history_after).concat(job.history);
      } else if (job.history) history = job.history;
      else if (job.point && (!history.length || history[history.length - 1].step !== job.point.step)) history.push(job.point);
      drawChart(history);
    }
    render(snapshot);
    connect(() => {
      const last = history.length ? history[history.length - 1].step : null;
      return last == null ? `/ws/jobs/${jobId}/` : `/ws/jobs/${jobId}/?after_step=${last}`;
    }, (msg) => {
      if (msg.type === "snapshot") { seq = -1; render(msg.job); }
      else if (msg.type === "event") render(msg.job);
    }, detail.querySelector("[data-live-state]"));
  }

  // --- job list -----------------------------------------------------------------------
  const table = document.getElementById("jobs");
  if (table) {
    const seqs = {};
    function renderRow(job) {
      const row = table.querySelector(`tr[data-job="${job.id}"]`);
      if (!row || (seqs[job.id] !== undefined && job.seq < seqs[job.id])) return;
      seqs[job.id] = job.seq;
      setProgress(row, job);
      setText(row, "[data-steps]", `${job.step} / ${job.total}`);
      if (job.result_model_url && !row.querySelector("[data-result] a")) {
        const link = document.createElement("a");
        link.href = job.result_model_url;
        link.textContent = job.result_model_name || `model #${job.result_model}`;
        row.querySelector("[data-result]").appendChild(link);
      }
    }
    connect("/ws/dashboard/", (msg) => {
      if (msg.type === "snapshot") msg.jobs.forEach(renderRow);
      else if (msg.type === "event") {
        // A new job appears on the unfiltered first page; a filtered list would reload for
        // every event of a job it does not show.
        if (!table.querySelector(`tr[data-job="${msg.job.id}"]`)) { if (!location.search) location.reload(); }
        else renderRow(msg.job);
      }
    }, document.querySelector("[data-live-state]"));
  }
})();
