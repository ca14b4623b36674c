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
    // A running step's output arrives as "output" events (its last lines, as the engine
    // keeps them): shown in the step's row as it is produced, without re-rendering the page.
    source.addEventListener("output", function (ev) {
      var out;
      try { out = JSON.parse(ev.data); } catch (e) { return; }
      showOutput(box, out.step, out.text);
    });
  }

  function showOutput(box, step, text) {
    var row = document.getElementById("step-" + step);
    if (!row || !box.contains(row)) return;
    var pre = row.querySelector("pre[data-running-output]");
    if (!pre) {
      var cell = row.lastElementChild;
      if (!cell) return;
      pre = document.createElement("pre");
      pre.className = "live-output";
      pre.setAttribute("data-running-output", "");
      cell.appendChild(pre);
    }
    var follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text;
    if (follow) pre.scrollTop = pre.scrollHeight;
  }

  document.addEventListener("DOMContentLoaded", function () { confirmations(); live(); });
})();
