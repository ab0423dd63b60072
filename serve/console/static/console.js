// Chronos console: progressive enhancement only. Every page works without this file;
// with it, live parts refresh in place and some forms submit without a reload.
(function () {
  "use strict";

  // Elements with data-refresh="URL" get a fresh copy of their content every
  // data-every seconds, while the tab is visible (hidden tabs cost nothing).
  function refresh(el) {
    if (document.hidden || el.dataset.busy) { return Promise.resolve(); }
    el.dataset.busy = "1";
    return fetch(el.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { el.innerHTML = html; } })
      .catch(function () { /* the next round tries again */ })
      .finally(function () { delete el.dataset.busy; });
  }

  function refreshAll() {
    return Promise.all(Array.prototype.map.call(document.querySelectorAll("[data-refresh]"), refresh));
  }

  function schedule(el) {
    var seconds = Number(el.dataset.every || 3);
    window.setInterval(function () { refresh(el); }, Math.max(1, seconds) * 1000);
  }

  // Forms with data-confirm ask first; forms with data-async post in the background
  // and then refresh the live parts.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-async")) {
      event.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) { form.dataset.result = r.ok ? "ok" : "error"; return refreshAll(); })
        .catch(function () { form.submit(); });
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-refresh]"), schedule);
  });
})();
