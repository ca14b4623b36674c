// opsbook console: the only script. Live execution pages (Server-Sent Events from the
// journal, then the step table re-rendered by the server) and confirmations. Written for
// this project; no third-party code.
(function () {
  "use strict";

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  function live() {
    var box = document.getElementById("live");
    if (!box || !window.EventSource) return;
    var fragment = box.dataset.fragment;
    var pending = null;
    var busy = false;
    function refresh() {
      pending = null;
      if (busy) { pending = setTimeout(refresh, 300); return; }
      var active = document.activeElement;
      if (active && box.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) {
        pending = setTimeout(refresh, 1000);  // do not replace a form someone is filling in
        return;
      }
      busy = true;
      fetch(fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) { box.innerHTML = html; confirmations(); }
        })
        .finally(function () { busy = false; });
    }
    function later() { if (!pending) pending = setTimeout(refresh, 150); }
    var source = new EventSource(box.dataset.stream, { withCredentials: true });
    source.addEventListener("journal", later);
    source.addEventListener("end", function () { source.close(); refresh(); });
    // A running step's output is kept on its row, not journaled: look again every second
    // while a step is running.
    setInterval(function () {
      if (box.querySelector(".row-running")) later();
    }, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () { confirmations(); live(); });
})();
