// Behaviour for server-rendered pages. No inline scripts anywhere (CSP): pages declare data-* hooks.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Charts: <canvas data-chart="ID"> reads its Chart.js config from <script type="application/json" id="ID">.
  function renderCharts(root) {
    if (!window.Chart) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var existing = window.Chart.getChart(canvas);
      if (existing) existing.destroy();
      var config = JSON.parse(source.textContent);
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
      new window.Chart(canvas, config);
    });
  }

  // Scope pickers: show only the field that belongs to the chosen scope kind.
  function wireScopePickers(root) {
    root.querySelectorAll("[data-scope-picker]").forEach(function (picker) {
      if (picker.dataset.scopeWired) return;
      picker.dataset.scopeWired = "1";
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

  // <form data-kind-picker="kind">: elements with data-kinds="a b c" show only when the field named
  // "kind" (a select or a radio group) has one of those values (type-specific parameters, ...).
  function wireKindPickers(root) {
    root.querySelectorAll("[data-kind-picker]").forEach(function (form) {
      if (form.dataset.kindWired) return;
      form.dataset.kindWired = "1";
      var name = form.dataset.kindPicker;
      if (!form.querySelector("[name='" + name + "']")) return;
      function sync() {
        // A <select>, or a radio group (then the checked one).
        var field = form.querySelector("select[name='" + name + "'], [name='" + name + "']:checked");
        var value = field ? field.value : "";
        form.querySelectorAll("[data-kinds]").forEach(function (el) {
          var kinds = el.dataset.kinds.split(/\s+/);
          el.classList.toggle("kind-hidden", kinds.indexOf(value) === -1);
        });
      }
      form.addEventListener("change", sync);
      sync();
    });
  }

  // <button data-copy-target="ID"> copies the value of #ID to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var field = document.getElementById(button.dataset.copyTarget);
    if (!field) return;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done);
    } else {
      field.select();
      document.execCommand("copy");
      done();
    }
  });

  // Read-only fields with data-select-on-focus select their whole value (easy manual copy).
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // <form data-confirm="Really?"> asks before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  // Live refresh pauses while the tab is hidden: no point polling for nobody.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail && event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    if (document.hidden && (!trigger || trigger.type === "every")) event.preventDefault();
  });

  // A live part whose session expired gets the login page back: reload the whole page instead of
  // swapping a login form into a table (the reload lands on the login page with ?next= set).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.responseURL && xhr.responseURL.indexOf("/accounts/login/") !== -1) {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });

  // A panel another app adds that fails to load says so, instead of "Loading…" forever.
  document.addEventListener("htmx:responseError", function (event) {
    var slot = event.detail.elt;
    if (!slot || !slot.matches("[data-panel]")) return;
    var status = event.detail.xhr ? event.detail.xhr.status : "";
    slot.innerHTML = "";
    var note = document.createElement("div");
    note.className = "panel-loading text-danger";
    note.textContent = "This panel could not be loaded (HTTP " + status + "). It retries every 30 seconds.";
    slot.appendChild(note);
  });

  function wire(root) {
    renderCharts(root);
    wireScopePickers(root);
    wireKindPickers(root);
  }
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    // An outerHTML swap settles on the replaced (detached) element: wire the document then.
    wire(document.contains(event.target) ? event.target : document);
  });
})();
