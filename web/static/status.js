// Live status: the server sends the rendered status panel on each change
// (server-sent events). Without JavaScript the page works by refreshing.
(function () {
  "use strict";
  var panel = document.getElementById("status-panel");
  if (!panel || !window.EventSource || panel.dataset.closed) {
    return;
  }
  function connect() {
    var es = new EventSource(panel.dataset.events);
    es.addEventListener("status", function (e) {
      var d = JSON.parse(e.data);
      // Keep the keyboard focus where it was if its element survives.
      var focused = document.activeElement && document.activeElement.id;
      panel.innerHTML = d.html;
      if (focused && document.getElementById(focused)) {
        document.getElementById(focused).focus();
      }
      panel.dataset.state = d.state;
      if (window.clinicrelayTimes) {
        window.clinicrelayTimes(); // the patient's own time beside the new panel's times
      }
      if (d.closed) {
        es.close();
      }
    });
    es.onerror = function () {
      // A 503 while the relay reconnects closes the stream for good: try
      // again a little later.
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(connect, 5000);
      }
    };
  }
  connect();
})();
