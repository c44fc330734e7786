// Live catalog counts on the home page: the server renders the numbers, and this script
// keeps them current over the /ws/catalog/ websocket. Without JavaScript (or a socket)
// the server-rendered numbers stand.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-counts]");
  if (!root || !("WebSocket" in window)) return;
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.getAttribute("data-live-counts");
  var delay = 1000;

  function show(counts) {
    Object.keys(counts).forEach(function (key) {
      var el = root.querySelector('[data-count="' + key + '"]');
      var value = Number(counts[key]);
      if (el && isFinite(value)) el.textContent = value.toLocaleString("en-US");
    });
  }

  function connect() {
    var socket = new WebSocket(url);
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      if ((message.type === "snapshot" || message.type === "counts") && message.counts) {
        show(message.counts);
        root.classList.add("is-live");
      }
    };
    socket.onclose = function () {
      root.classList.remove("is-live");
      // Reconnect with back-off; the snapshot on reconnect catches up anything missed.
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
