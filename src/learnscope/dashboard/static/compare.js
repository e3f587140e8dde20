// learnscope dashboard: runs compared on one plot per measure, layers lined up by LAYER INDEX
// (runs of different nets name their layers differently), x in steps or epochs, seeds of one
// config as mean +- s.d. bands (a toggle shows the single runs), and the config keys that differ.
// Data: GET /api/compare (aligned, aggregated and thinned on the server). State in the URL.
(function () {
  "use strict";

  const ls = window.learnscope;
  if (!ls || ls.config.page !== "compare") return;
  const lib = ls.lib;
  const $ = lib.$;
  const el = lib.el;
  const config = ls.config;
  const runs = config.runs || [];
  const measures = (config.plot_measures || []).slice();
  const layerSelect = $("layer");
  const axisSelect = $("x-axis");
  const singlesBox = $("single-runs");
  const plots = $("compare-plots");
  const diff = $("compare-diff");
  // distinct colours for up to 20 groups (Tableau 20 order: strong colours first)
  const COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
  ];
  ls.compare = { responses: new Map(), draws: 0 };
  if (runs.length < 1 || !measures.length) return;

  const params = new URLSearchParams(window.location.search);
  const state = {
    layer: /^([0-9]{1,4}|last)$/.test(params.get("layer") || "") ? params.get("layer") : "0",
    x: params.get("x") === "epoch" ? "epoch" : "step",
    singles: params.get("singles") === "1",
  };
  axisSelect.value = state.x;
  singlesBox.checked = state.singles;

  function writeUrl() {
    const url = new URL(window.location.href);
    url.searchParams.set("layer", state.layer);
    url.searchParams.set("x", state.x);
    if (state.singles) url.searchParams.set("singles", "1");
    else url.searchParams.delete("singles");
    history.replaceState(null, "", url.toString());
  }

  const cells = new Map();
  // one section per measure; the first (the measure chosen above) is #compare-lines
  function build() {
    cells.clear();
    ls.compare.responses.clear();
    plots.replaceChildren();
    measures.forEach((measure, i) => {
      const plot = el("div", { className: "plot", id: i === 0 ? "compare-lines" : "compare-plot-" + i, "data-measure": measure });
      const note = el("ul", { className: "muted small compare-notes" });
      plots.appendChild(el("section", {}, [el("h2", { className: "plot-title", text: measure }), note, plot]));
      cells.set(measure, { plot: plot, note: note });
    });
  }
  build();

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function traces(data) {
    const out = [];
    data.groups.forEach((group, g) => {
      const colour = COLOURS[g % COLOURS.length];
      const members = data.runs.filter((r) => r.group === g && r.x.length);
      const band = group.runs.length > 1 && group.mean;
      if (band) {
        const lower = group.mean.map((m, i) => (m === null ? null : m - group.sd[i]));
        const upper = group.mean.map((m, i) => (m === null ? null : m + group.sd[i]));
        out.push({ type: "scatter", mode: "lines", x: group.x, y: lower, line: { width: 0, color: colour },
          name: group.label + " mean - s.d.",
          hoverinfo: "skip", showlegend: false, legendgroup: "g" + g, meta: "band-lower" });
        out.push({ type: "scatter", mode: "lines", x: group.x, y: upper, line: { width: 0, color: colour },
          name: group.label + " mean + s.d.",
          fill: "tonexty", fillcolor: rgba(colour, 0.2), hoverinfo: "skip", showlegend: false,
          legendgroup: "g" + g, meta: "band-upper" });
        out.push({ type: "scatter", mode: "lines", x: group.x, y: group.mean, name: group.label + " mean \u00b1 s.d.",
          line: { color: colour, width: 2.5 }, legendgroup: "g" + g, meta: "mean",
          customdata: group.sd.map((s, i) => [s, group.n[i]]),
          hovertemplate: "%{y:.4g} \u00b1 %{customdata[0]:.3g} (n=%{customdata[1]})<extra>" + group.label + "</extra>" });
      }
      if (!band || state.singles) {
        for (const run of members) {
          out.push({
            type: "scatter", mode: run.x.length > 60 ? "lines" : "lines+markers",
            name: run.name + " (" + run.id + ")" + (run.chance_level ? " [chance-level]" : ""),
            x: run.x, y: run.y, connectgaps: true, legendgroup: "g" + g, meta: "run",
            line: { color: colour, width: band ? 1 : 2, dash: run.chance_level ? "dot" : "solid" },
            hovertemplate: "%{y:.4g}<extra>" + run.name + " \u00b7 " + (run.layer || "") + "</extra>",
          });
        }
      }
    });
    return out;
  }

  function drawDiff(data) {
    const ids = data.runs.map((r) => r.id);
    const head = el("tr", {}, [el("th", { text: "config key" }),
      ...data.runs.map((r) => el("th", {}, [el("a", { href: "/runs/" + encodeURIComponent(r.id), text: r.name })]))]);
    const body = data.config_diff.map((row) => el("tr", { "data-key": row.key }, [
      el("td", { text: row.key }),
      ...ids.map((id) => el("td", { text: row.values[id] === null ? "-" : row.values[id] })),
    ]));
    if (!body.length) {
      body.push(el("tr", {}, [el("td", { colspan: String(ids.length + 1), className: "muted",
        text: "The selected runs have the same config." })]));
    }
    diff.replaceChildren(el("thead", {}, [head]), el("tbody", {}, body));
  }

  function setLayers(count) {
    const wanted = [];
    for (let i = 0; i < count; i++) wanted.push([String(i), "index " + i + (i === 0 ? " (first)" : "")]);
    wanted.push(["last", "last layer of each run"]);
    if (!wanted.some(([v]) => v === state.layer)) wanted.push([state.layer, "index " + state.layer]);
    const same = layerSelect.options.length === wanted.length &&
      wanted.every(([v], i) => layerSelect.options[i].value === v);
    if (!same) layerSelect.replaceChildren(...wanted.map(([v, t]) => el("option", { value: v, text: t })));
    layerSelect.value = state.layer;
  }

  function draw(measure, data) {
    const cell = cells.get(measure);
    const layers = Array.from(new Set(data.runs.map((r) => r.layer).filter((l) => l)));
    Plotly.react(cell.plot, traces(data), {
      margin: { l: 60, r: 10, t: 10, b: 45 }, height: 360,
      xaxis: { title: { text: data.x_axis } },
      yaxis: { title: { text: measure + (state.layer === "last" ? " (last layer)" : " (layer index " + state.layer + ")") } },
      uirevision: measure + "|" + state.layer + "|" + state.x, showlegend: true,
      legend: { orientation: "h", y: -0.2 },
    }, lib.PLOT_CONFIG);
    // PNG / SVG / CSV of this plot (the run page's download buttons)
    ls.addDownloads(cell.plot, "compare-" + measure);
    cell.plot.setAttribute("data-layers", layers.join(", "));
    cell.note.replaceChildren(...data.runs.filter((r) => r.note).map((r) =>
      el("li", { text: r.name + " (" + r.id + ") " + r.note })));
  }

  // A live update asks only for the points after the smallest last x of the runs drawn
  // (`since`); the server recomputes lines and bands there, and they replace what came after it.
  function lastX(data) {
    const ends = data.runs.filter((r) => r.x.length).map((r) => r.x[r.x.length - 1]);
    return ends.length ? Math.min(...ends) : null;
  }

  // `update`'s fields (points after `since`) appended to `before`'s points up to `since`
  function prepend(before, update, fields, since) {
    let kept = 0;
    while (kept < before.x.length && before.x[kept] <= since) kept += 1;
    for (const field of fields) update[field] = before[field].slice(0, kept).concat(update[field]);
  }

  function mergeUpdate(old, update) {
    const runsById = new Map(old.runs.map((r) => [r.id, r]));
    for (const run of update.runs) {
      const before = runsById.get(run.id);
      if (before) prepend(before, run, ["x", "y"], update.since);
    }
    update.groups.forEach((group, g) => {
      const before = old.groups[g];
      if (!before || !before.mean || !group.mean || before.key !== group.key) return;
      prepend(before, group, ["x", "mean", "sd", "n"], update.since);
    });
    return update;
  }

  let version = 0;
  const refreshNow = lib.poll(async () => {
    const asked = ++version;
    const view = state.layer + "|" + state.x;
    const base = new URLSearchParams();
    for (const run of runs) base.append("runs", run.id);
    base.set("layer", state.layer);
    base.set("x", state.x);
    const results = await Promise.all(measures.map((measure) => {
      const query = new URLSearchParams(base);
      query.set("measure", measure);
      const old = ls.compare.responses.get(measure);
      const since = old && old.view === view ? lastX(old) : null;
      if (since !== null) query.set("since", String(since));
      return lib.getJSON("/api/compare?" + query.toString()).then((data) => {
        const merged = since !== null ? mergeUpdate(old, data) : data;
        merged.view = view;
        return [measure, merged];
      });
    }));
    if (asked !== version) return;
    let layerCount = 0;
    for (const [measure, data] of results) {
      ls.compare.responses.set(measure, data);
      layerCount = Math.max(layerCount, data.layer_count);
      draw(measure, data);
    }
    setLayers(layerCount);
    drawDiff(results[0][1]);
    ls.compare.draws += 1;
  });

  function changed() {
    writeUrl();
    version += 1;
    refreshNow();
  }
  layerSelect.addEventListener("change", () => {
    state.layer = layerSelect.value;
    changed();
  });
  axisSelect.addEventListener("change", () => {
    state.x = axisSelect.value;
    changed();
  });
  $("measure").addEventListener("change", (event) => {
    const chosen = event.target.value;
    measures.splice(0, measures.length, chosen, ...measures.filter((m) => m !== chosen));
    build();
    changed();
  });
  singlesBox.addEventListener("change", () => {
    state.singles = singlesBox.checked;
    for (const [measure, data] of ls.compare.responses) draw(measure, data);
    writeUrl();
    ls.compare.draws += 1;
  });
})();
