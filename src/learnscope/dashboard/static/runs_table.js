// learnscope dashboard: the run list as a table (search, filters, grouping, sorting), drawn from
// GET /api/run-table, which filters, sorts and pages on the server. Uses the helpers that
// dashboard.js exposes as window.learnscope.lib; the table's state lives in the URL.
(function () {
  "use strict";

  const ls = window.learnscope;
  if (!ls || ls.config.page !== "runs") return;
  const lib = ls.lib;
  const $ = lib.$;
  const el = lib.el;

  const table = $("runs-table");
  const thead = table.querySelector("thead");
  const tbody = table.querySelector("tbody");
  const notice = $("ls-error");
  const button = $("compare-button");
  const count = $("runs-count");
  const search = $("runs-search");
  const experimentSelect = $("runs-experiment");
  const statusSelect = $("runs-status");
  const whereInput = $("runs-where");
  const whereChoices = $("runs-where-choices");
  const groupBox = $("runs-group");

  // [header, sort column or null]; config keys that differ between the listed runs follow.
  const COLUMNS = [
    ["", null], ["run", "name"], ["experiment", "experiment"], ["status", "status"],
    ["test acc.", "test_accuracy"], ["progress", "progress"], ["ETA", "eta_seconds"],
    ["measurements", "measurements"], ["last update", "updated_at"],
  ];

  function readUrl() {
    const params = new URLSearchParams(window.location.search);
    return {
      q: params.get("q") || "",
      experiment: params.get("experiment") || "",
      status: params.get("status") || "",
      where: params.getAll("where"),
      sort: params.get("sort") || "created_at",
      order: params.get("order") === "asc" ? "asc" : "desc",
      group: params.get("group") === "experiment",
    };
  }

  const state = readUrl();
  search.value = state.q;
  whereInput.value = state.where.join("; ");
  groupBox.checked = state.group;

  function query() {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    if (state.experiment) params.set("experiment", state.experiment);
    if (state.status) params.set("status", state.status);
    for (const item of state.where) params.append("where", item);
    if (state.sort !== "created_at") params.set("sort", state.sort);
    if (state.order !== "desc") params.set("order", state.order);
    if (state.group) params.set("group", "experiment");
    return params;
  }

  function writeUrl() {
    const text = query().toString();
    history.replaceState(null, "", window.location.pathname + (text ? "?" + text : ""));
  }

  const picked = new Set();
  $("runs-form").addEventListener("change", (event) => {
    const box = event.target;
    if (box.name !== "runs") return;
    if (box.checked) picked.add(box.value);
    else picked.delete(box.value);
  });
  for (const box of tbody.querySelectorAll("input[name=runs]:checked")) picked.add(box.value);

  function fmtAccuracy(run) {
    if (run.test_accuracy === null || run.test_accuracy === undefined) return "-";
    return (100 * run.test_accuracy).toFixed(1) + "%";
  }

  function header(keys) {
    const cells = COLUMNS.concat(keys.map((k) => [k, "config." + k])).map(([label, column]) => {
      if (!column) return el("th", {});
      const sorted = state.sort === column;
      const arrow = sorted ? (state.order === "asc" ? " \u25b2" : " \u25bc") : "";
      const th = el("th", {
        "data-sort": column,
        "aria-sort": sorted ? (state.order === "asc" ? "ascending" : "descending") : "none",
        className: column.startsWith("config.") ? "config-col" : "",
      }, [el("button", { type: "button", className: "sort", text: label + arrow })]);
      return th;
    });
    return el("tr", {}, cells);
  }

  function row(run, keys) {
    const box = el("input", { type: "checkbox", name: "runs", value: run.id, "aria-label": "compare " + run.id });
    box.checked = picked.has(run.id);
    const width = run.progress === null ? 0 : Math.max(0, Math.min(1, run.progress)) * 100;
    const link = el("a", { href: "/runs/" + encodeURIComponent(run.id), text: run.name });
    const kind = run.chance_level ? "row-chance" : (run.status === "failed" || run.status === "diverged") ? "row-failed" : "";
    const accuracy = el("td", { className: "num", "data-key": "test_accuracy", text: fmtAccuracy(run) });
    if (run.chance_level) accuracy.title = run.note || "chance level";
    return el("tr", { "data-run": run.id, className: kind }, [
      el("td", {}, [box]),
      el("td", {}, [link, el("div", { className: "muted small", text: run.id })]),
      el("td", { text: run.experiment || "-" }),
      el("td", {}, [lib.statusBadge(run), ...lib.errorLine(run)]),
      accuracy,
      el("td", {}, [
        el("div", { className: "bar" }, [el("div", { style: "width:" + width.toFixed(1) + "%" })]),
        document.createTextNode(lib.fmtProgress(run.progress)),
      ]),
      el("td", { text: lib.fmtDuration(run.eta_seconds) }),
      el("td", { className: "num", text: String(run.measurements) }),
      el("td", { title: run.updated_at || "", text: lib.fmtAgo(run.updated_unix) }),
      ...keys.map((k) => el("td", { className: "config-col", "data-key": "config." + k,
        text: k in run.config ? run.config[k] : "-" })),
    ]);
  }

  function groupRow(name, size, width) {
    return el("tr", { className: "group-row", "data-group": name }, [
      el("td", { colspan: String(width) }, [
        el("strong", { text: name === "-" ? "(no experiment)" : name }),
        el("span", { className: "muted small", text: " \u00b7 " + size + (size === 1 ? " run" : " runs") }),
      ]),
    ]);
  }

  function setOptions(select, values, current, allLabel) {
    const wanted = [""].concat(values);
    if (current && !wanted.includes(current)) wanted.push(current);
    const same = select.options.length === wanted.length &&
      wanted.every((v, i) => select.options[i].value === v);
    if (!same) {
      select.replaceChildren(...wanted.map((v) => el("option", { value: v, text: v || allLabel })));
    }
    select.value = current;
  }

  function render(data) {
    const keys = data.config_keys;
    thead.replaceChildren(header(keys));
    const width = COLUMNS.length + keys.length;
    const rows = [];
    let group = null;
    const sizes = new Map();
    for (const run of data.rows) sizes.set(run.group, (sizes.get(run.group) || 0) + 1);
    for (const run of data.rows) {
      if (run.group !== null && run.group !== group) {
        group = run.group;
        rows.push(groupRow(group, sizes.get(group), width));
      }
      rows.push(row(run, keys));
    }
    tbody.replaceChildren(...rows);
    setOptions(experimentSelect, data.experiments, state.experiment, "all experiments");
    setOptions(statusSelect, data.statuses, state.status, "any status");
    const choices = [];
    for (const [key, values] of Object.entries(data.keys)) {
      for (const value of values) choices.push(el("option", { value: key + "=" + value }));
    }
    whereChoices.replaceChildren(...choices);
    count.textContent = data.matched === data.total ? data.total + " runs"
      : data.matched + " of " + data.total + " runs";
    if (data.matched > data.rows.length) count.textContent += " (first " + data.rows.length + " shown)";
  }

  let asked = "";
  const refreshNow = lib.poll(async () => {
    const text = query().toString();
    let data;
    try {
      data = await lib.getJSON("/api/run-table?limit=1000" + (text ? "&" + text : ""));
    } catch (error) {
      if (!error.body) throw error;
      lib.showNotice(notice, error.body, "error");
      table.hidden = button.hidden = true;
      return;
    }
    if (text !== query().toString()) return; // the filters changed meanwhile: asked again
    asked = text;
    ls.state = data;
    if (!data.total) {
      lib.showNotice(notice, {
        error: "No runs yet",
        detail: "The store has no runs yet.",
        hint: "Start one, e.g. `learnscope run quickstart --store STORE`, or train with " +
          "ls.Scope(..., store=...) pointing at it. This list updates by itself.",
      }, "info");
      table.hidden = button.hidden = true;
      return;
    }
    lib.hideNotice(notice);
    table.hidden = button.hidden = false;
    render(data);
    ls.tableDraws = (ls.tableDraws || 0) + 1;
    ls.tableQuery = asked;
  });

  function changed() {
    writeUrl();
    refreshNow();
  }

  thead.addEventListener("click", (event) => {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const column = th.getAttribute("data-sort");
    if (state.sort === column) state.order = state.order === "asc" ? "desc" : "asc";
    else {
      state.sort = column;
      state.order = column === "name" || column === "experiment" || column.startsWith("config.") ? "asc" : "desc";
    }
    changed();
  });
  search.addEventListener("input", () => {
    state.q = search.value.trim();
    changed();
  });
  experimentSelect.addEventListener("change", () => {
    state.experiment = experimentSelect.value;
    changed();
  });
  statusSelect.addEventListener("change", () => {
    state.status = statusSelect.value;
    changed();
  });
  function applyWhere() {
    state.where = whereInput.value.split(";").map((s) => s.trim()).filter((s) => s.includes("="));
    changed();
  }
  whereInput.addEventListener("change", applyWhere);
  // Enter in a filter box applies it (instead of submitting the form to /compare)
  for (const box of [search, whereInput]) {
    box.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      if (box === whereInput) applyWhere();
    });
  }
  groupBox.addEventListener("change", () => {
    state.group = groupBox.checked;
    changed();
  });
})();
