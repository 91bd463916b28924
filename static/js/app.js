// Behaviour for server-rendered pages. No inline scripts anywhere (CSP): pages declare data-* hooks.
(function () {
  "use strict";

  // Charts: <canvas data-chart="ID"> reads its Chart.js config from <script type="application/json" id="ID">.
  function renderCharts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      if (canvas._chart) canvas._chart.destroy();
      var config = JSON.parse(source.textContent);
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
      canvas._chart = new window.Chart(canvas, config);
    });
  }

  // Scope pickers: show only the field that belongs to the chosen scope kind.
  function wireScopePickers(root) {
    root.querySelectorAll("[data-scope-picker]").forEach(function (picker) {
      function sync() {
        var checked = picker.querySelector("input[name$='scope_kind']:checked");
        var kind = checked ? checked.value : "all";
        picker.querySelectorAll("[data-scope-for]").forEach(function (el) {
          el.classList.toggle("visible", el.dataset.scopeFor === kind);
        });
      }
      picker.addEventListener("change", sync);
      sync();
    });
  }

  // <form data-confirm="Really?"> asks before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    renderCharts(document);
    wireScopePickers(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    renderCharts(event.target);
    wireScopePickers(event.target);
  });
})();
