// Live status: the server sends the rendered status panel on each change
// (server-sent events). Without JavaScript the page works by refreshing.
(function () {
  "use strict";
  var panel = document.getElementById("status-panel");
  if (!panel || !window.EventSource || panel.dataset.closed) {
    return;
  }
  // Reconnect after a failure with a growing wait, 5 s doubling up to 60 s
  // (an EventSource does not tell a 404 or 429 from a dropped connection),
  // and never once the status can no longer change.
  var first = 5000;
  var most = 60000;
  var wait = first;
  var done = false;
  function connect() {
    var es = new EventSource(panel.dataset.events);
    es.addEventListener("status", function (e) {
      var d = JSON.parse(e.data);
      wait = first; // the stream works: a later failure starts over
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
        done = true;
        es.close();
      }
    });
    es.onerror = function () {
      // The browser would retry on its own, at its own pace: close and
      // retry here instead, after the wait (with a little jitter, so that
      // pages do not all come back at once after a restart).
      es.close();
      if (done) {
        return;
      }
      setTimeout(connect, wait * (0.8 + 0.4 * Math.random()));
      wait = Math.min(wait * 2, most);
    };
  }
  connect();
})();
