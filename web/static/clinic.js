// Live clinic page: the server sends the rendered free times again whenever
// a slot is taken or freed (server-sent events). Without JavaScript the page
// works by refreshing.
(function () {
  "use strict";
  var live = document.getElementById("clinic-live");
  if (!live || !window.EventSource) {
    return;
  }
  // Reconnect after a failure with a growing wait, 5 s doubling up to 60 s,
  // with a little jitter so pages do not all come back at once.
  var first = 5000;
  var most = 60000;
  var wait = first;
  function connect() {
    var es = new EventSource(live.dataset.events);
    es.addEventListener("slots", function (e) {
      var d = JSON.parse(e.data);
      wait = first;
      // Keep the keyboard focus on the link it was on, if it is still there.
      var focused = document.activeElement;
      var href = focused && live.contains(focused) ? focused.getAttribute("href") : null;
      live.innerHTML = d.html;
      if (href) {
        var again = live.querySelector('a[href="' + CSS.escape(href) + '"]');
        if (again) {
          again.focus();
        }
      }
      if (window.clinicrelayTimes) {
        window.clinicrelayTimes();
      }
    });
    es.onerror = function () {
      es.close();
      setTimeout(connect, wait * (0.8 + 0.4 * Math.random()));
      wait = Math.min(wait * 2, most);
    };
  }
  connect();
})();
