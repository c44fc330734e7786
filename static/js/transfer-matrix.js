// The transfer matrix fills in live: when one of the user's jobs finishes (dashboard
// socket), the page re-reads the matrix from the API and redraws it. The socket only
// says "something changed"; the numbers always come from the database.
(function () {
  "use strict";
  const panel = document.getElementById("matrix");
  const state = document.querySelector("[data-live-state]");
  if (!panel) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";

  async function refresh() {
    const response = await fetch(`/transfer/?shots=${panel.dataset.shots}`, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("matrix");
    if (fresh) panel.replaceChildren(...fresh.childNodes);
  }

  let delay = 500;
  function open() {
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.onopen = () => { delay = 500; if (state) state.textContent = "Live"; refresh(); };
    socket.onmessage = (e) => {
      const message = JSON.parse(e.data);
      if (message.type === "event" && message.job.status === "succeeded") refresh();
    };
    socket.onclose = () => {
      if (state) state.textContent = "Reconnecting…";
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  open();
})();
