// gantry console: live updates. Every element with data-live="URL" is
// replaced by a fresh copy of URL's fragment when the server says that
// something changed (server-sent events on /events), and every second
// while a fragment holds an element marked data-running (a log that still
// grows: log lines are not state changes). Without JavaScript the pages
// work as they are: plain links and forms.
(function () {
  "use strict";
  var live = document.querySelectorAll("[data-live]");
  if (!live.length || !window.EventSource || !window.fetch) return;
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var all = Array.prototype.map.call(document.querySelectorAll("[data-live]"), function (el) {
      return fetch(el.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.reload(); throw new Error("signed out"); }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          var focused = document.activeElement && document.activeElement.id;
          el.innerHTML = html;
          if (focused) { var f = document.getElementById(focused); if (f) f.focus(); }
          document.body.setAttribute("data-version", String(Date.now()));
        });
    });
    Promise.all(all).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
      poll();
    });
  }
  var polling = null;
  function poll() {
    if (polling || !document.querySelector("[data-live] [data-running]")) return;
    polling = setTimeout(function () { polling = null; refresh(); }, 1000);
  }
  poll();
  var source = new EventSource("/events");
  source.addEventListener("change", refresh);
  // A change between the page's rendering and the stream's (re)connection
  // sends no event: fetch the fragments once the stream is open.
  source.addEventListener("open", refresh);
  source.onerror = function () { /* the browser reconnects by itself */ };
})();
