// For a signed-in user on any page: a notice in the page when one of their jobs ends, and,
// on the home page, the running-jobs panel kept live (bars move, ended jobs move to the feed).
// One socket, /ws/dashboard/, which sends a snapshot of the user's jobs, then their events.
(function () {
  "use strict";
  if (!("WebSocket" in window)) return;
  const FINAL = ["succeeded", "failed", "cancelled"];
  const known = {};  // job id -> last status seen
  const region = document.getElementById("job-notices");
  const active = document.querySelector("[data-active-jobs]");
  const ended = document.querySelector("[data-ended-jobs]");
  let delay = 1000;

  function label(job) { return `Job #${job.id}`; }
  function notice(job) {
    if (!region) return;
    const item = document.createElement("div");
    item.className = `notice status-${job.status}`;
    item.setAttribute("role", "status");
    const link = document.createElement("a");
    link.href = `/jobs/${job.id}/`;
    link.textContent = `${label(job)} ${job.status}`;
    item.append(link);
    if (job.result_model_url) {
      const model = document.createElement("a");
      model.href = job.result_model_url;
      model.textContent = job.result_model_name || "its model";
      item.append(": ", model);
    } else if (job.error) item.append(`: ${job.error}`);
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link-button";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => item.remove());
    item.append(" ", close);
    region.append(item);
  }
  function updatePanel(job) {
    if (!active) return;
    const row = active.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) return;
    if (FINAL.includes(job.status)) {
      row.remove();
      if (ended) {
        const empty = ended.querySelector("[data-ended-empty]");
        if (empty) empty.remove();
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = `/jobs/${job.id}/`;
        a.textContent = `${label(job)} ${job.status}`;
        li.append(a);
        ended.prepend(li);
      }
      const none = !active.querySelector("tr[data-job]");
      active.hidden = none;
      const empty = document.querySelector("[data-active-empty]");
      if (empty) empty.hidden = !none;
      return;
    }
    const bar = row.querySelector(".progress-bar");
    if (bar) { bar.style.width = `${job.percent}%`; bar.className = `progress-bar status-${job.status}`; }
    const wrap = row.querySelector("[data-progress]");
    if (wrap) wrap.setAttribute("aria-valuenow", Math.round(job.percent));
    const steps = row.querySelector("[data-steps]");
    if (steps) steps.textContent = `${job.step} / ${job.total}`;
    const badge = row.querySelector("[data-status]");
    if (badge) { badge.textContent = job.status.charAt(0).toUpperCase() + job.status.slice(1); badge.className = `badge status-${job.status}`; }
  }
  function seen(job, fromSnapshot) {
    const before = known[job.id];
    known[job.id] = job.status;
    // Only a job this page saw unfinished counts as "ended now": not old jobs, nor a reconnect.
    if (!fromSnapshot && before && !FINAL.includes(before) && FINAL.includes(job.status)) notice(job);
    updatePanel(job);
  }
  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/dashboard/`);
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "snapshot") msg.jobs.forEach((job) => seen(job, true));
      else if (msg.type === "event") seen(msg.job, false);
    };
    socket.onclose = (e) => {
      if (e.code === 4401) return;  // signed out
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
