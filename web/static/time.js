// time.js: next to each slot time, shown in the clinic's zone, add the
// patient's own time when the browser's zone differs from the clinic's.
// Markup: <time datetime="RFC 3339" data-zone="IANA zone" [data-clock]>,
// the label "your time:" in <body data-your-time>. No inline script: the
// CSP is default-src 'self'. A script that adds times to the page later
// (status.js) calls window.clinicrelayTimes() again; times done are skipped.
(function () {
  "use strict";
  var here;
  try {
    here = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!here) {
    return;
  }
  var lang = document.documentElement.lang || "en";
  var label = document.body.getAttribute("data-your-time") || "your time:";
  var clock = { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
  var full = { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };

  function fmt(date, zone, opts) {
    var o = {};
    for (var k in opts) {
      o[k] = opts[k];
    }
    o.timeZone = zone;
    return new Intl.DateTimeFormat(lang, o).format(date);
  }

  function annotate(el) {
    var zone = el.getAttribute("data-zone");
    var date = new Date(el.getAttribute("datetime"));
    if (!zone || zone === here || isNaN(date.getTime()) || el.hasAttribute("data-annotated")) {
      return;
    }
    el.setAttribute("data-annotated", "true");
    var opts = el.hasAttribute("data-clock") ? clock : full;
    var mine;
    try {
      // Zones with other names but the same clock at this instant add nothing.
      if (fmt(date, zone, opts) === fmt(date, here, opts)) {
        return;
      }
      mine = fmt(date, here, opts);
    } catch (e) {
      return; // a zone this browser does not know
    }
    var span = document.createElement("span");
    span.className = "your-time";
    span.textContent = " (" + label + " " + mine + ")";
    el.parentNode.insertBefore(span, el.nextSibling);
  }

  function run() {
    var els = document.querySelectorAll("time[datetime][data-zone]");
    for (var i = 0; i < els.length; i++) {
      annotate(els[i]);
    }
  }

  window.clinicrelayTimes = run;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
