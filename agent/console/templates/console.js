// The front desk's live list: the page follows /api/events, says when a
// request arrives (the title, a status line read by screen readers, a sound
// that can be turned off), and fetches the lists again unless someone is
// typing in a form, when it offers a button instead. Without this script,
// a reload shows what is new.
"use strict";
(function () {
  var live = { headers: { "X-Console-Live": "1" } }; // does not keep an idle session alive
  var body = document.body;
  var known = Number(body.dataset.pending || 0);
  var title = document.title;
  var status = document.getElementById("live-status");
  var controls = document.getElementById("live-controls");
  var showNew = document.getElementById("show-new");
  var sound = document.getElementById("sound");
  if (!status || !controls) return;
  controls.hidden = false;
  sound.checked = localStorage.getItem("console-sound") !== "off";
  sound.addEventListener("change", function () {
    localStorage.setItem("console-sound", sound.checked ? "on" : "off");
  });
  var audio = null; // made at the first click: browsers play only after one
  document.addEventListener("click", function () {
    if (!audio && window.AudioContext) audio = new AudioContext();
  });
  function beep() {
    if (!sound.checked || !audio) return;
    var o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 880;
    g.gain.setValueAtTime(0.15, audio.currentTime);
    g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    o.connect(g); g.connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.4);
  }
  function typing() {
    var a = document.activeElement;
    if (a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    return Array.prototype.some.call(document.querySelectorAll("#lists input[type=text]"), function (i) {
      return i.value !== "";
    });
  }
  function refresh() {
    return fetch("/", live).then(function (r) {
      if (r.redirected && /\/signin$/.test(r.url)) { location.href = "/signin"; return; }
      return r.text().then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var lists = doc.getElementById("lists");
        if (!lists) return;
        document.getElementById("lists").replaceWith(document.adoptNode(lists));
        showNew.hidden = true;
      });
    });
  }
  showNew.addEventListener("click", function () { refresh(); });
  function onCount(n) {
    document.title = (n > 0 ? "(" + n + ") " : "") + title.replace(/^\(\d+\) /, "");
    if (n > known) {
      status.textContent = n - known === 1 ? "A new request arrived. " + n + " pending." :
        (n - known) + " new requests arrived. " + n + " pending.";
      beep();
    }
    if (n !== known) {
      if (typing()) showNew.hidden = false; else refresh();
    }
    known = n;
  }
  var es = new EventSource("/api/events");
  es.addEventListener("requests", function (e) { onCount(JSON.parse(e.data).pending); });
  es.addEventListener("signedout", function () { es.close(); location.href = "/signin"; });
  es.onerror = function () {
    fetch("/api/session", live).then(function (r) {
      if (r.status === 401) { es.close(); location.href = "/signin"; }
    });
  };
})();
