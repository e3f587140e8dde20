// learnscope dashboard: keeps the pages up to date by polling the JSON API (no reloads).
// Served from the learnscope package; uses only Plotly (served from the plotly package).
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("ls-config").textContent);
  // Exposed for debugging and for the browser tests.
  const ls = (window.learnscope = { config: config, polls: 0, draws: 0, state: null });
  const POLL_MS = Math.max(200, config.poll_ms || 2000);
  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "style") node.setAttribute("style", value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.detail) || response.statusText);
      error.status = response.status;
      error.body = body || { error: "Request failed", detail: response.statusText, hint: "" };
      throw error;
    }
    return body;
  }

  function banner(text) {
    const node = $("ls-banner");
    if (!node) return;
    node.hidden = !text;
    node.textContent = text || "";
  }

  // Polls fn now and then every POLL_MS (never two at once). API errors are fn's business;
  // a failed fetch (server gone) shows a banner until the server answers again.
  function poll(fn) {
    let timer = null;
    let running = false;
    async function tick() {
      timer = null;
      if (running) return;
      running = true;
      try {
        await fn();
        banner(null);
      } catch (error) {
        if (error && error.status !== undefined) banner(error.message);
        else banner("The dashboard server cannot be reached; retrying every " + POLL_MS / 1000 + " s.");
        if (window.console) console.warn("learnscope dashboard:", error);
      } finally {
        running = false;
        ls.polls += 1;
        if (timer === null) timer = setTimeout(tick, POLL_MS);
      }
    }
    tick();
    return function now() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (!running) tick();
      else timer = setTimeout(tick, 50);
    };
  }

  // ------------------------------------------------------------------ formatting

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "-";
    const s = Math.round(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + pad(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function fmtProgress(p) {
    return p === null || p === undefined || !isFinite(p) ? "-" : Math.round(100 * p) + "%";
  }

  function fmtAgo(unix) {
    if (unix === null || unix === undefined) return "-";
    const ago = Math.max(0, Date.now() / 1000 - unix);
    if (ago < 5) return "just now";
    return fmtDuration(ago) + " ago";
  }

  // A run's status as a badge: "finished (chance-level)" in warning colours (learnscope.health).
  function statusBadge(run) {
    const kind = run.chance_level ? "chance" : run.status;
    const badge = el("span", { className: "status status-" + kind, text: run.status_label || run.status });
    if (run.note) badge.title = run.note;
    return badge;
  }

  // The shortened stored error of a failed run, full text on hover (nothing without one).
  function errorLine(run) {
    if (!run.error_short) return [];
    return [el("div", { className: "run-error small", title: run.error || "", text: run.error_short })];
  }

  // The run page's box for a stored error or a chance-level result.
  function setProblem(run) {
    const node = $("run-problem");
    if (!node) return;
    if (run.error) {
      node.className = "notice error";
      node.replaceChildren(
        el("h2", { text: "Run " + run.status + ": stored error" }),
        el("pre", { className: "detail", text: run.error })
      );
      node.hidden = false;
    } else if (run.chance_level) {
      node.className = "notice warning";
      node.replaceChildren(
        el("h2", { text: "Chance-level result" }),
        el("p", { className: "detail", text: run.note + ": the network learned nothing; do not average its measures with other runs." })
      );
      node.hidden = false;
    } else {
      node.hidden = true;
    }
  }

  function showNotice(node, body, kind) {
    if (!node) return;
    node.className = "notice " + (kind || "error");
    node.replaceChildren(
      el("h2", { text: body.error || "Error" }),
      el("p", { className: "detail", text: body.detail || "" })
    );
    if (body.hint) node.appendChild(el("p", { className: "hint", text: body.hint }));
    node.hidden = false;
  }

  function hideNotice(node) {
    if (node) node.hidden = true;
  }

  // The run list (page "runs") is drawn by static/runs_table.js.

  // ------------------------------------------------------------------ series of one measure

  // Series of one measure of one run, merged from incremental responses.
  function newSeriesState(measure) {
    return { measure: measure, steps: [], epochs: new Map(), series: new Map() };
  }

  // Merges a /metrics response; returns whether anything new arrived.
  function merge(state, data) {
    let changed = false;
    const known = new Set(state.steps);
    data.steps.forEach((step, i) => {
      if (!known.has(step)) {
        known.add(step);
        changed = true;
      }
      if (data.epochs[i] !== null) state.epochs.set(step, data.epochs[i]);
    });
    for (const s of data.series) {
      const key = s.probe + "\u0001" + s.layer;
      let entry = state.series.get(key);
      if (!entry) {
        entry = { probe: s.probe, layer: s.layer, layer_index: s.layer_index, values: new Map() };
        state.series.set(key, entry);
        changed = true;
      }
      data.steps.forEach((step, i) => {
        const value = s.values[i];
        if (value !== null || !entry.values.has(step)) {
          if (entry.values.get(step) !== value) changed = true;
          entry.values.set(step, value);
        }
      });
    }
    state.steps = Array.from(known).sort((a, b) => a - b);
    return changed;
  }

  // Since-step for the next request: the last step again (a measure may come from several
  // probes written one after the other), then only newer ones.
  function sinceStep(state) {
    return state.steps.length ? state.steps[state.steps.length - 1] - 1 : null;
  }

  // Series in forward order with display labels (probe shown only when there are several).
  function ordered(state) {
    const list = Array.from(state.series.values());
    list.sort((a, b) => a.layer_index - b.layer_index || (a.probe < b.probe ? -1 : a.probe > b.probe ? 1 : 0) ||
      (a.layer < b.layer ? -1 : a.layer > b.layer ? 1 : 0));
    const probes = new Set(list.map((s) => s.probe));
    return list.map((s) => ({
      label: probes.size > 1 ? s.probe + ": " + s.layer : s.layer,
      values: state.steps.map((step) => (s.values.has(step) ? s.values.get(step) : null)),
      series: s,
    }));
  }

  // A long run's steps are thinned on the server to at most this many per request (its
  // heatmap has fewer pixel columns); later polls add the new steps.
  const MAX_STEPS = 1000;

  function metricsUrl(runId, state) {
    let url = "/api/runs/" + encodeURIComponent(runId) + "/metrics?measure=" + encodeURIComponent(state.measure) +
      "&max_steps=" + MAX_STEPS;
    const since = sinceStep(state);
    if (since !== null) url += "&since_step=" + since;
    return url;
  }

  function heatmapTrace(rows, steps, measure, extra) {
    return Object.assign({
      type: "heatmap",
      x: steps,
      y: rows.map((r) => r.label),
      z: rows.map((r) => r.values),
      colorscale: "Viridis",
      hoverongaps: false,
      colorbar: { title: { text: measure, side: "right" }, thickness: 14 },
      hovertemplate: "%{y}<br>step %{x}<br>" + measure + " %{z:.4g}<extra></extra>",
    }, extra || {});
  }

  // Colours each row (layer) from its own minimum to its own maximum; hover shows the values.
  function perLayer(rows, measure) {
    const z = rows.map((r) => {
      const finite = r.values.filter((v) => v !== null && isFinite(v));
      const lo = Math.min(...finite);
      const span = Math.max(...finite) - lo;
      return r.values.map((v) => (v === null || !isFinite(v) ? null : span > 0 ? (v - lo) / span : 0.5));
    });
    return {
      z: z,
      customdata: rows.map((r) => r.values),
      zmin: 0,
      zmax: 1,
      colorbar: { title: { text: "per layer: min to max", side: "right" }, thickness: 14 },
      hovertemplate: "%{y}<br>step %{x}<br>" + measure + " %{customdata:.4g}<extra></extra>",
    };
  }

  function heatmapLayout(rows, measure, extra) {
    return Object.assign({
      margin: { l: 10, r: 10, t: 10, b: 45 },
      height: Math.max(240, 70 + 24 * rows.length),
      xaxis: { title: { text: "step" }, zeroline: false },
      yaxis: { autorange: "reversed", type: "category", automargin: true },
      uirevision: measure,
    }, extra || {});
  }

  // Plotly.react with the container sized to the layout's height: Plotly's responsive resize
  // (the window resized while the page is open) drops layout.height and would otherwise shrink
  // the plot to its container's minimum height.
  function drawPlot(node, traces, layout) {
    if (layout.height) node.style.height = layout.height + 2 + "px";
    return Plotly.react(node, traces, layout, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------ equi-separation

  // Viridis (as the heatmaps) at t in [0, 1], for lines coloured by layer depth.
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    const x = Math.max(0, Math.min(1, t)) * 0.85 * (VIRIDIS.length - 1); // light end is hard to see
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const f = x - i;
    const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
    return "rgb(" + c.join(",") + ")";
  }

  function fmt3(v) {
    return v === null || v === undefined || !isFinite(v) ? "-" : v.toFixed(3);
  }

  // The fitted line over layers first..last: y = exp(a + slope * l), with the intercept a (not
  // stored) by least squares for the stored slope over the stored D_l > 0 in that range.
  function fitLine(xs, ys, law) {
    if (!law || law.slope === null || law.first === null || law.last === null) return null;
    const inside = xs.map((x, i) => [x, ys[i]]).filter(([x, y]) =>
      x >= law.first && x <= law.last && y !== null && isFinite(y) && y > 0);
    if (!inside.length) return null;
    const meanX = inside.reduce((a, p) => a + p[0], 0) / inside.length;
    const meanLog = inside.reduce((a, p) => a + Math.log(p[1]), 0) / inside.length;
    const intercept = meanLog - law.slope * meanX;
    const lx = [];
    for (let l = Math.round(law.first); l <= Math.round(law.last); l++) lx.push(l);
    return { x: lx, y: lx.map((l) => Math.exp(intercept + law.slope * l)) };
  }

  function drawSeparation(sep) {
    const state = sep.state;
    const rows = ordered(state);
    if (!state.steps.length || !rows.length) return;
    const last = state.steps[state.steps.length - 1];
    const at = state.steps.length - 1;
    const law = sep.law.get(last) || null;
    const xs = rows.map((r) => r.series.layer_index);
    const ys = rows.map((r) => r.values[at]);
    const epoch = state.epochs.get(last);
    const when = "step " + last + (epoch === undefined ? "" : ", epoch " + epoch);
    const traces = [{
      type: "scatter", mode: "markers", name: "D_l (" + when + ")", x: xs, y: ys,
      text: rows.map((r) => r.label), marker: { size: 9 },
      hovertemplate: "%{text} (l = %{x})<br>D_l %{y:.4g}<extra></extra>",
    }];
    const line = fitLine(xs, ys, law);
    let title = "step " + last;
    if (line) {
      const label = "fit: ρ = " + fmt3(law.rho) + ", r = " + fmt3(law.pearson_r);
      traces.push({ type: "scatter", mode: "lines", name: label, x: line.x, y: line.y,
        line: { dash: "dash" }, hovertemplate: "fit<br>l = %{x}<br>%{y:.4g}<extra></extra>" });
      title += ": ρ = " + fmt3(law.rho) + ", r = " + fmt3(law.pearson_r) + ", R² = " + fmt3(law.r2) +
        " (layers " + law.first + "-" + law.last + ")";
    }
    drawPlot($("equisep"), traces, {
      margin: { l: 60, r: 10, t: 35, b: 45 }, height: 360,
      title: { text: title, font: { size: 13 } },
      xaxis: { title: { text: "layer l (0 = input)" }, dtick: 1 },
      yaxis: Object.assign({ title: { text: "D_l (log scale)" }, type: "log" }, logTicks([ys])),
      uirevision: "equisep", showlegend: true,
    });

    const top = Math.max(1, Math.max(...xs));
    const mode = state.steps.length > 60 ? "lines" : "lines+markers";
    const xMode = (sep.view && sep.view.x) || "step";
    const along = xValues(state.steps, (step) => state.epochs.get(step), xMode);
    const xTitle = along.epoch ? "epoch" : xMode === "epoch" ? "step (no rising epochs stored)" : "step";
    const dynamics = rows.map((r) => ({
      type: "scatter", mode: mode, name: r.label, x: along.x, y: r.values, connectgaps: true,
      line: { color: viridis(r.series.layer_index / top) }, marker: { size: 4 },
      hovertemplate: r.label + "<br>" + xTitle + " %{x}<br>D_l %{y:.4g}<extra></extra>",
    }));
    if (rows.length > MAX_DISTINCT_COLOURS) dynamics.push(depthColourBar(0, top, "layer l", 1.08));
    const lawOf = (key) => state.steps.map((step) => (sep.law.get(step) || {})[key] ?? null);
    dynamics.push({
      type: "scatter", mode: mode, name: "Pearson r", x: along.x, y: lawOf("pearson_r"),
      yaxis: "y2", line: { color: "#b42318" }, connectgaps: true,
      hovertemplate: xTitle + " %{x}<br>r %{y:.4f}<extra></extra>",
    }, {
      type: "scatter", mode: mode, name: "ρ", x: along.x, y: lawOf("rho"),
      yaxis: "y3", line: { color: "#3559c7", dash: "dot" }, connectgaps: true,
      hovertemplate: xTitle + " %{x}<br>ρ %{y:.4f}<extra></extra>",
    });
    drawPlot($("equisep-dynamics"), dynamics, {
      margin: { l: 60, r: 60, t: 10, b: 45 }, height: 520,
      xaxis: { title: { text: xTitle }, anchor: "y2" },
      yaxis: Object.assign({ title: { text: "D_l (log scale)" }, type: "log", domain: [0.42, 1] },
        logTicks(rows.map((r) => r.values))),
      yaxis2: { title: { text: "Pearson r" }, domain: [0, 0.32] },
      yaxis3: { title: { text: "ρ" }, overlaying: "y2", side: "right", showgrid: false },
      uirevision: "equisep-dynamics", showlegend: true,
      legend: rows.length > MAX_DISTINCT_COLOURS ? { x: 1.2, xanchor: "left" } : {},
    });
    sep.draws += 1;
  }

  // ------------------------------------------------------------------ weight trajectories

  // Colours as in the figure (learnscope.viz.trajectories): with one group, tab10 per network;
  // with several, a colour family per group (dark to light within it) and a dash per group.
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  const FAMILIES = [["#084a91", "#7fb9da"], ["#9e3303", "#fd9a4e"], ["#006428", "#86cc85"],
    ["#4f1f8b", "#aaa8d0"], ["#980c13", "#fb7a5a"], ["#1d1d1d", "#a5a5a5"]];
  const DASHES = ["solid", "dash", "dot", "dashdot"];
  const LANDSCAPE_SCALE = [[0, "#ececec"], [1, "#5f5f5f"]];

  function mixHex(a, b, t) {
    const parse = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const pa = parse(a);
    const pb = parse(b);
    return "rgb(" + pa.map((v, k) => Math.round(v + t * (pb[k] - v))).join(",") + ")";
  }

  function trajectoryStyles(groups) {
    const distinct = Array.from(new Set(groups));
    if (distinct.length < 2) return groups.map((g, i) => ({ color: TAB10[i % 10], dash: "solid" }));
    return groups.map((g, i) => {
      const gi = distinct.indexOf(g);
      const members = groups.map((h, j) => (h === g ? j : -1)).filter((j) => j >= 0);
      const k = members.indexOf(i);
      const family = FAMILIES[gi % FAMILIES.length];
      const t = members.length === 1 ? 1 / 3 : k / (members.length - 1);
      return { color: mixHex(family[0], family[1], t), dash: DASHES[gi % DASHES.length] };
    });
  }

  function finiteRange(arrays) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const values of arrays) {
      for (const v of values) {
        if (v !== null && isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (!isFinite(lo)) return null;
    return hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
  }

  // The map as Plotly traces: the landscape heatmap (if any), one line+markers trace per
  // network (markers coloured by the score), then the start and the end markers.
  function trajectoryTraces(map, score) {
    const styles = trajectoryStyles(map.groups);
    const several = new Set(map.groups).size > 1;
    const land = map.landscape;
    const values = score ? map.scores[score] : [];
    const shared = land && score && land.score === score;
    const pointRange = finiteRange(shared ? values.concat(land.values) : values);
    const traces = [];
    if (land) {
      const range = shared ? pointRange : finiteRange(land.values);
      const how = land.method === "interpolate" ? "interpolated" : "evaluated";
      traces.push(Object.assign({
        type: "heatmap", name: "landscape", x: land.x, y: land.y, z: land.values,
        colorscale: LANDSCAPE_SCALE, hoverongaps: false, showlegend: false,
        colorbar: { title: { text: land.score + " (landscape, " + how + ")", side: "right" },
          thickness: 14, x: 1.02, xanchor: "left" },
        hovertemplate: "landscape<br>(%{x:.3g}, %{y:.3g})<br>" + land.score + " %{z:.4g}<extra></extra>",
      }, range ? { zmin: range[0], zmax: range[1], zauto: false } : {}));
    }
    map.networks.forEach((name, i) => {
      const st = styles[i];
      const label = several && map.groups[i] ? name + " (" + map.groups[i] + ")" : name;
      const marker = { size: 7, line: { color: st.color, width: 1.2 } };
      if (score) {
        Object.assign(marker, {
          color: values[i], colorscale: "Viridis", showscale: i === 0,
          colorbar: { title: { text: score, side: "right" }, thickness: 14,
            x: land ? 1.17 : 1.02, xanchor: "left" },
        }, pointRange ? { cmin: pointRange[0], cmax: pointRange[1] } : {});
      } else {
        marker.color = st.color;
      }
      traces.push({
        type: "scatter", mode: "lines+markers", name: label, x: map.coords[i].map((p) => p[0]),
        y: map.coords[i].map((p) => p[1]), customdata: map.steps[i], legendgroup: map.groups[i],
        line: { color: st.color, dash: st.dash, width: 2 }, marker: marker,
        hovertemplate: name + "<br>step %{customdata}" +
          (score ? "<br>" + score + " %{marker.color:.4g}" : "") + "<extra></extra>",
      });
    });
    const ends = (which) => map.coords.map((c) => c[which === "start" ? 0 : c.length - 1]);
    const endSteps = (which) => map.steps.map((s) => s[which === "start" ? 0 : s.length - 1]);
    traces.push({
      type: "scatter", mode: "markers", name: "start", x: ends("start").map((p) => p[0]),
      y: ends("start").map((p) => p[1]), customdata: endSteps("start"), text: map.networks,
      marker: { symbol: "circle-open", size: 14, color: styles.map((s) => s.color), line: { width: 2.5 } },
      hovertemplate: "%{text}: start (step %{customdata})<extra></extra>",
    }, {
      type: "scatter", mode: "markers", name: "end", x: ends("end").map((p) => p[0]),
      y: ends("end").map((p) => p[1]), customdata: endSteps("end"), text: map.networks,
      marker: { symbol: "star", size: 17, color: styles.map((s) => s.color), line: { color: "#000", width: 1 } },
      hovertemplate: "%{text}: end (step %{customdata})<extra></extra>",
    });
    return traces;
  }

  function drawTrajectories(view) {
    const map = view.map;
    const labels = Array.isArray(map.meta && map.meta.axis_labels) && map.meta.axis_labels.length === 2
      ? map.meta.axis_labels : ["projected axis 1", "projected axis 2"];
    const land = map.landscape;
    const edges = (c) => (c.length > 1 ? [c[0] - (c[1] - c[0]) / 2,
      c[c.length - 1] + (c[c.length - 1] - c[c.length - 2]) / 2] : null);
    const layout = {
      margin: { l: 60, r: 20, t: 10, b: 45 }, height: 560,
      xaxis: Object.assign({ title: { text: labels[0] }, zeroline: false, showgrid: !land },
        land ? { range: edges(land.x) } : {}),
      yaxis: Object.assign({ title: { text: labels[1] }, zeroline: false, showgrid: !land },
        land ? { range: edges(land.y) } : {}),
      legend: { orientation: "h", y: -0.14, yanchor: "top" },
      uirevision: "trajectories", showlegend: true,
    };
    drawPlot($("trajectory-map"), trajectoryTraces(map, view.score), layout);
    view.draws += 1;
  }

  // ------------------------------------------------------------------ view helpers (run page)

  // The run page's view state, kept in the address so that a link reproduces the view:
  // measure, x (step | epoch), log (1), smooth (0 to 0.99), scale (layer), hide (layers left
  // out of the lines plot, comma-separated), score (the trajectory map's score).
  const VIEW_KEYS = ["measure", "x", "log", "smooth", "scale", "hide", "score"];
  function readView() {
    const params = new URL(window.location.href).searchParams;
    const smooth = parseFloat(params.get("smooth"));
    return {
      measure: params.get("measure") || null,
      x: params.get("x") === "epoch" ? "epoch" : "step",
      log: params.get("log") === "1",
      smooth: isFinite(smooth) ? Math.max(0, Math.min(0.99, smooth)) : 0,
      scale: params.get("scale") === "layer",
      hide: (params.get("hide") || "").split(",").filter((s) => s),
      score: params.get("score") || null,
      explicit: params.has("measure"),
    };
  }

  function writeView(view) {
    const url = new URL(window.location.href);
    for (const key of VIEW_KEYS) url.searchParams.delete(key);
    if (view.measure) url.searchParams.set("measure", view.measure);
    if (view.x === "epoch") url.searchParams.set("x", "epoch");
    if (view.log) url.searchParams.set("log", "1");
    if (view.smooth > 0) url.searchParams.set("smooth", String(view.smooth));
    if (view.scale) url.searchParams.set("scale", "layer");
    if (view.hide.length) url.searchParams.set("hide", view.hide.join(","));
    if (view.score) url.searchParams.set("score", view.score);
    history.replaceState(null, "", url.toString());
  }

  // Exponential moving average with TensorBoard's debiasing (weight 0: the values unchanged);
  // nulls stay null and do not move the average.
  function smooth(values, weight) {
    if (!(weight > 0)) return values;
    let last = 0;
    let n = 0;
    return values.map((v) => {
      if (v === null || !isFinite(v)) return null;
      last = last * weight + (1 - weight) * v;
      n += 1;
      return last / (1 - Math.pow(weight, n));
    });
  }

  // Readable ticks for a log axis over the finite positive values: 1-2-5 steps per decade
  // when the values span up to 3 decades, powers of ten beyond (labels as 0.02, 5e-4...).
  function logTicks(arrays) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const values of arrays) {
      for (const v of values) {
        if (v !== null && isFinite(v) && v > 0) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (!isFinite(lo)) return {};
    const first = Math.floor(Math.log10(lo));
    const last = Math.ceil(Math.log10(hi));
    const mantissas = last - first <= 3 ? [1, 2, 5] : [1];
    const vals = [];
    for (let e = first; e <= last; e++) {
      for (const m of mantissas) {
        const v = m * Math.pow(10, e);
        if (v >= lo / 1.5 && v <= hi * 1.5) vals.push(v);
      }
    }
    if (vals.length < 2) return {};
    const text = vals.map((v) => (v >= 1e-3 && v < 1e5 ? String(Number(v.toPrecision(3))) : v.toExponential(0)));
    return { tickmode: "array", tickvals: vals, ticktext: text };
  }

  // Plotly's default colours (10): a line plot with more lines colours them by depth instead.
  const MAX_DISTINCT_COLOURS = 10;
  const DEPTH_SCALE = [0, 0.25, 0.5, 0.75, 1].map((t) => [t, viridis(t)]);

  // An invisible trace that draws the colour bar of lines coloured by depth (layer index); the
  // plot's legend goes right of it (DEPTH_LEGEND).
  const DEPTH_LEGEND = { x: 1.14, xanchor: "left" };
  function depthColourBar(lo, hi, title, x) {
    return {
      type: "scatter", mode: "markers", x: [null], y: [null], showlegend: false, hoverinfo: "skip",
      meta: { decoration: true },
      marker: { color: [lo], cmin: lo, cmax: hi, colorscale: DEPTH_SCALE, showscale: true, size: 0,
        colorbar: { title: { text: title, side: "right" }, thickness: 12, len: 0.6, y: 1, yanchor: "top",
          x: x || 1.02, xanchor: "left" } },
    };
  }

  function csvCell(value) {
    if (value === null || value === undefined) return "";
    const text = String(value);
    return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  // The data a plot draws, as CSV: heatmaps as row,x,value; lines as trace,x,y (the unsmoothed
  // values when smoothing is on). Decorations (colour bars, faint raw lines) are left out.
  function plotCSV(gd) {
    const xTitle = (gd.layout && gd.layout.xaxis && gd.layout.xaxis.title && gd.layout.xaxis.title.text) || "x";
    const lines = [];
    const heat = (gd.data || []).some((t) => t.type === "heatmap");
    lines.push(heat ? ["trace", "row", xTitle, "value"].join(",") : ["trace", xTitle, "y"].join(","));
    for (const trace of gd.data || []) {
      const meta = trace.meta || {};
      if (meta.decoration) continue;
      const name = trace.name || trace.type;
      if (trace.type === "heatmap") {
        const values = trace.customdata && trace.customdata.length ? trace.customdata : trace.z;
        trace.y.forEach((row, i) => trace.x.forEach((x, j) => {
          lines.push([name, row, x, values[i][j]].map(csvCell).join(","));
        }));
      } else {
        const ys = meta.raw || trace.y;
        trace.x.forEach((x, i) => lines.push([name, x, ys[i]].map(csvCell).join(",")));
      }
    }
    return lines.join("\n") + "\n";
  }

  function saveText(text, filename, type) {
    const url = URL.createObjectURL(new Blob([text], { type: type }));
    const link = el("a", { href: url, download: filename });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // PNG / SVG / CSV buttons above a plot (images by Plotly.downloadImage, the data by plotCSV).
  function addDownloads(plot, filename) {
    if (!plot || plot.dataset.downloads) return;
    plot.dataset.downloads = "1";
    const bar = el("div", { className: "downloads small", "data-for": plot.id });
    for (const format of ["png", "svg", "csv"]) {
      const button = el("button", { type: "button", className: "link", "data-format": format,
        text: format.toUpperCase(), title: "download this plot as " + format.toUpperCase() });
      button.addEventListener("click", () => {
        if (!plot.data) return;
        if (format === "csv") saveText(plotCSV(plot), filename + ".csv", "text/csv");
        else Plotly.downloadImage(plot, { format: format, filename: filename,
          width: plot.offsetWidth || 900, height: plot.offsetHeight || 400 });
      });
      bar.appendChild(button);
    }
    plot.parentNode.insertBefore(bar, plot);
  }
  ls.addDownloads = addDownloads;
  ls.plotCSV = plotCSV;

  // Training curves (GET /api/runs/RUN/training), merged from incremental responses.
  function newTrainingState() {
    return { series: new Map(), lastStep: null };
  }

  function mergeTraining(state, data) {
    let changed = false;
    for (const s of data.series) {
      const key = s.probe + "\u0001" + s.measure;
      let entry = state.series.get(key);
      if (!entry) {
        entry = { probe: s.probe, measure: s.measure, points: new Map() };
        state.series.set(key, entry);
        changed = true;
      }
      s.steps.forEach((step, i) => {
        const old = entry.points.get(step);
        if (!old || old.value !== s.values[i]) changed = true;
        entry.points.set(step, { epoch: s.epochs[i], value: s.values[i] });
        if (state.lastStep === null || step > state.lastStep) state.lastStep = step;
      });
    }
    return changed;
  }

  // One training series as sorted arrays.
  function trainingArrays(entry) {
    const steps = Array.from(entry.points.keys()).sort((a, b) => a - b);
    return {
      steps: steps,
      epochs: steps.map((s) => entry.points.get(s).epoch),
      values: steps.map((s) => entry.points.get(s).value),
    };
  }

  // Which panel a training measure goes to: loss, accuracy or learning rate (else "other").
  function trainingPanel(measure) {
    if (/(^|_)lr$|learning_rate/.test(measure)) return "lr";
    if (/acc/.test(measure)) return "accuracy";
    if (/loss/.test(measure)) return "loss";
    return "other";
  }

  // Epochs as x when every step has a known epoch and they increase; else the steps.
  function xValues(steps, epochOf, mode) {
    if (mode !== "epoch") return { x: steps, epoch: false };
    const epochs = steps.map(epochOf);
    const known = epochs.every((e) => e !== null && e !== undefined && isFinite(e));
    const rising = known && epochs.every((e, i) => i === 0 || e > epochs[i - 1]);
    return rising ? { x: epochs, epoch: true } : { x: steps, epoch: false };
  }

  // ------------------------------------------------------------------ one run

  // The value of training arrays at `step`: the one logged there, else the last one before it
  // (validation and test values are logged once per epoch); null before the first.
  function valueAt(arrays, step) {
    let lo = 0;
    let hi = arrays.steps.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (arrays.steps[mid] <= step) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? null : { step: arrays.steps[found], value: arrays.values[found] };
  }

  function initRun() {
    const runId = config.run_id;
    const select = $("measure");
    const view = (ls.view = readView());
    const SATURATION = typeof config.saturation === "number" ? config.saturation : 0.95;
    const SATURATION_MEASURE = "distinct_frac";
    let state = newSeriesState(config.measure || null);
    view.measure = config.measure || null;
    // distinct / E of every layer, for marking saturated cells (when the run stores it)
    let saturation = newSeriesState(SATURATION_MEASURE);
    const training = (ls.training = newTrainingState());
    let trainingDraws = 0;
    // The run's measures are rendered into the page; they are re-read while the run is
    // running (a measure may first appear later, e.g. one logged once per epoch).
    const CATALOG_EVERY = 15;
    const FIRST_TRAINING_POINTS = 2000; // per series, downsampled on the server
    let catalogAge = 0;
    let status = null;
    ls.state = state;

    // the controls start from the address
    $("x-axis").value = view.x;
    $("log-scale").checked = view.log;
    $("smoothing").value = String(view.smooth);
    $("smoothing-value").textContent = view.smooth.toFixed(2);
    if ($("per-layer-scale")) $("per-layer-scale").checked = view.scale;
    // a run with a weight-trajectory map opens on the map (its layer measures folded away)
    const details = $("measure-details");
    if (details && config.trajectory_map && !view.explicit) details.open = false;
    if (details) details.addEventListener("toggle", () => {
      for (const id of ["heatmap", "lines"]) if ($(id).data) Plotly.Plots.resize($(id));
    });
    writeView(view);
    const filename = (name) => (config.run_id + "-" + name).replace(/[^A-Za-z0-9_.-]/g, "_");
    for (const id of ["training", "heatmap", "lines", "equisep", "equisep-dynamics", "trajectory-map"]) {
      if ($(id)) addDownloads($(id), filename(id));
    }

    function hasMeasure(name) {
      return Array.from(select.options).some((o) => o.value === name);
    }

    function setSummary(run) {
      const set = (key, text) => {
        const node = document.querySelector('#run-summary [data-key="' + key + '"]');
        if (node) node.textContent = text;
      };
      const badge = document.querySelector('#run-summary [data-key="status"]');
      if (badge) badge.replaceChildren(statusBadge(run));
      setProblem(run);
      status = run.status;
      set("experiment", run.experiment || "-");
      set("progress", fmtProgress(run.progress));
      set("eta", fmtDuration(run.eta_seconds));
      set("last_step", run.last_step === null ? "-" : String(run.last_step));
      set("measurements", String(run.measurements));
      set("updated", fmtAgo(run.updated_unix));
      const updated = document.querySelector('#run-summary [data-key="updated"]');
      if (updated) updated.title = run.updated_at || "";
    }

    function setMeasures(measures) {
      const current = select.value;
      const names = measures.map((m) => m.name);
      const same = names.length === select.options.length &&
        names.every((n, i) => select.options[i].value === n);
      if (same) return;
      select.replaceChildren(...measures.map((m) =>
        el("option", { value: m.name, text: m.name + (m.per_layer ? "" : " (model)") })));
      if (names.includes(current)) select.value = current;
    }

    // ---- training curves: loss, accuracy and learning rate in panels sharing the x-axis

    function trainingSeries() {
      return Array.from(training.series.values())
        .map((entry) => Object.assign({ probe: entry.probe, measure: entry.measure,
          panel: trainingPanel(entry.measure) }, trainingArrays(entry)))
        .sort((a, b) => (a.measure < b.measure ? -1 : a.measure > b.measure ? 1 : 0));
    }

    function drawTraining() {
      const all = trainingSeries();
      if (!all.length) return;
      $("training-section").hidden = false;
      const probes = new Set(all.map((s) => s.probe));
      const order = ["loss", "accuracy", "lr", "other"].filter((p) => all.some((s) => s.panel === p));
      const gap = 0.06;
      const height = (1 - gap * (order.length - 1)) / order.length;
      const layout = {
        margin: { l: 60, r: 10, t: 10, b: 45 }, height: 170 + 150 * order.length, showlegend: true,
        uirevision: "training", legend: { orientation: "v" },
      };
      const traces = [];
      let allEpochs = true;
      order.forEach((panel, k) => {
        const axis = k === 0 ? "y" : "y" + (k + 1);
        const top = 1 - k * (height + gap);
        const logged = view.log && panel !== "accuracy";
        layout[k === 0 ? "yaxis" : "yaxis" + (k + 1)] = {
          title: { text: panel === "lr" ? "learning rate" : panel },
          domain: [Math.max(0, top - height), top], type: logged ? "log" : "linear",
          anchor: "x", exponentformat: "e",
        };
        for (const s of all.filter((t) => t.panel === panel)) {
          const x = xValues(s.steps, (step, i) => s.epochs[i], view.x);
          allEpochs = allEpochs && x.epoch;
          const label = probes.size > 1 ? s.probe + ": " + s.measure : s.measure;
          const sparse = s.steps.length <= 60;
          const shown = smooth(s.values, panel === "lr" ? 0 : view.smooth);
          if (shown !== s.values) {
            traces.push({ type: "scatter", mode: "lines", x: x.x, y: s.values, yaxis: axis,
              name: label + " (raw)", showlegend: false, hoverinfo: "skip", opacity: 0.25,
              line: { width: 1 }, legendgroup: label, meta: { decoration: true } });
          }
          traces.push({
            type: "scatter", mode: sparse ? "lines+markers" : "lines", name: label, x: x.x,
            y: shown, yaxis: axis, connectgaps: true, legendgroup: label,
            meta: { raw: s.values, measure: s.measure, probe: s.probe },
            hovertemplate: label + "<br>" + (x.epoch ? "epoch" : "step") + " %{x}<br>%{y:.4g}<extra></extra>",
          });
        }
      });
      // colours by measure family: train solid, val dashed, test dotted
      const colours = { loss: "#3559c7", accuracy: "#1f7a3f", lr: "#a05a00", other: "#667085" };
      for (const t of traces) {
        const measure = t.meta.measure || t.name;
        const panel = trainingPanel(measure.replace(/ \(raw\)$/, ""));
        const dash = /^val_/.test(measure) ? "dash" : /^test_/.test(measure) ? "dot" : "solid";
        t.line = Object.assign({}, t.line || {}, { color: colours[panel], dash: dash });
      }
      layout.xaxis = { title: { text: allEpochs ? "epoch" : "step" }, anchor: "y" + (order.length > 1 ? order.length : "") };
      drawPlot($("training"), traces, layout);
      trainingDraws += 1;
      ls.trainingDraws = trainingDraws;
    }

    async function pollTraining() {
      let url = "/api/runs/" + encodeURIComponent(runId) + "/training";
      url += training.lastStep === null ? "?max_points=" + FIRST_TRAINING_POINTS
        : "?since_step=" + Math.max(-1, training.lastStep - 1);
      let data;
      try {
        data = await getJSON(url);
      } catch (error) {
        if (!error.body || error.status >= 500) throw error;
        return;
      }
      if (mergeTraining(training, data) || (trainingDraws === 0 && training.series.size)) {
        drawTraining();
        if (ls.draws && state.steps.length) draw(true); // the heatmap's hover shows them
      }
    }

    // the training values (loss, accuracy...) at each step, for the heatmap's hover
    function trainingHover(steps) {
      const all = trainingSeries().filter((s) => s.panel === "loss" || s.panel === "accuracy");
      return steps.map((step) => {
        const parts = [];
        for (const s of all) {
          const at = valueAt(s, step);
          if (at === null || at.value === null) continue;
          parts.push(s.measure + " " + Number(at.value.toPrecision(4)) + (at.step !== step ? " (step " + at.step + ")" : ""));
        }
        return parts.join("<br>");
      });
    }

    // ---- the equi-separation plots, for runs with the separation probe's fuzziness rows
    // (they may first appear while the run trains: the catalog refresh starts them then)
    let separationStarted = false;
    function startSeparation(probe) {
      if (separationStarted || !probe || !$("separation")) return;
      separationStarted = true;
      $("separation").hidden = false;
      const sep = (ls.separation = { probe: probe, state: newSeriesState("fuzziness"), law: new Map(), draws: 0, view: view });
      poll(async () => {
        let url = "/api/runs/" + encodeURIComponent(runId) + "/separation?probe=" + encodeURIComponent(probe);
        const since = sinceStep(sep.state);
        if (since !== null) url += "&since_step=" + since;
        let data;
        try {
          data = await getJSON(url);
        } catch (error) {
          if (!error.body || error.status >= 500) throw error;
          return; // not (yet) there: keep asking
        }
        let changed = merge(sep.state, data);
        data.steps.forEach((step, i) => {
          const law = {};
          for (const key of Object.keys(data.law)) law[key] = data.law[key][i];
          if (JSON.stringify(sep.law.get(step)) !== JSON.stringify(law)) changed = true;
          sep.law.set(step, law);
        });
        if (changed || sep.draws === 0) drawSeparation(sep);
      });
    }

    // The weight-trajectory map, for runs that have one (it may be written while the page is
    // open: the catalog refresh starts it then). A map does not change, so it is read once.
    let trajectoriesStarted = false;
    async function startTrajectories(present) {
      if (trajectoriesStarted || !present || !$("trajectories")) return;
      trajectoriesStarted = true;
      let map;
      try {
        map = await getJSON("/api/runs/" + encodeURIComponent(runId) + "/trajectories");
      } catch (error) {
        trajectoriesStarted = false; // try again with the next catalog refresh
        if (!error.body) throw error;
        $("trajectories").hidden = false;
        showNotice($("trajectory-notice"), error.body, "error");
        return;
      }
      hideNotice($("trajectory-notice"));
      $("trajectories").hidden = false;
      const names = map.score_names;
      // the address's score, else the one the map was made for, else the landscape's, else the
      // first (as the figure)
      const chosen = map.meta && typeof map.meta.score === "string" ? map.meta.score : null;
      const preferred = names.includes(view.score) ? view.score : names.includes(chosen) ? chosen
        : map.landscape && names.includes(map.landscape.score) ? map.landscape.score : names[0];
      const tview = (ls.trajectories = { map: map, score: preferred || null, draws: 0 });
      const scoreSelect = $("trajectory-score");
      scoreSelect.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
      if (tview.score) scoreSelect.value = tview.score;
      $("trajectory-score-label").hidden = names.length < 2;
      scoreSelect.onchange = () => {
        tview.score = scoreSelect.value;
        view.score = scoreSelect.value;
        writeView(view);
        drawTrajectories(tview);
      };
      $("trajectory-about").textContent = map.networks.length + " networks, " + map.trajectory +
        " parameters, " + map.projection;
      drawTrajectories(tview);
    }

    async function refreshCatalog() {
      const data = await getJSON("/api/runs/" + encodeURIComponent(runId));
      catalogAge = 0;
      startSeparation(data.separation_probe);
      await startTrajectories(data.trajectory_map);
      setMeasures(data.measures);
      setSummary(data.run);
      if (!state.measure && data.default_measure) {
        state = newSeriesState(data.default_measure);
        ls.state = state;
        select.value = data.default_measure;
      }
    }

    // ---- the measure's heatmap and lines

    // [row, column] of every saturated cell (distinct / E > SATURATION) of the rows shown
    function saturatedCells(rows, steps) {
      if (!saturation.steps.length) return [];
      const byLayer = new Map(ordered(saturation).map((r) => [r.series.probe + "\u0001" + r.series.layer, r]));
      const column = new Map(saturation.steps.map((s, i) => [s, i]));
      const cells = [];
      rows.forEach((r, i) => {
        if (r.series.layer_index < 0) return;
        const share = byLayer.get(r.series.probe + "\u0001" + r.series.layer);
        if (!share) return;
        steps.forEach((step, j) => {
          const k = column.get(step);
          if (k !== undefined && share.values[k] !== null && share.values[k] > SATURATION) cells.push([i, j]);
        });
      });
      return cells;
    }

    // The heatmap and (unless heatmapOnly: new training values only change its hover) the lines.
    function draw(heatmapOnly) {
      const rows = ordered(state);
      const measure = state.measure;
      const steps = state.steps;
      const xs = xValues(steps, (s) => state.epochs.get(s), view.x);
      const xTitle = xs.epoch ? "epoch" : view.x === "epoch" ? "step (no rising epochs stored)" : "step";
      const hover = trainingHover(steps);
      const text = rows.map(() => hover);
      const extra = view.scale ? perLayer(rows, measure) : {};
      const valueHover = view.scale ? "%{customdata:.4g}" : "%{z:.4g}";
      extra.text = text;
      extra.x = xs.x;
      const withTraining = hover.some((h) => h);
      extra.hovertemplate = "%{y}<br>" + xTitle + " %{x}<br>" + measure + " " + valueHover +
        (withTraining ? "<br>%{text}" : "") + "<extra></extra>";
      const cells = saturatedCells(rows, steps);
      ls.saturated = cells.map(([i, j]) => [rows[i].label, steps[j]]);
      const heat = [heatmapTrace(rows, steps, measure, extra)];
      const satNote = "saturated: distinct/E > " + SATURATION;
      if (cells.length) {
        heat.push({ type: "scatter", mode: "markers", name: satNote, x: cells.map(([, j]) => xs.x[j]),
          y: cells.map(([i]) => rows[i].label), marker: { symbol: "x", color: "red", size: 7 },
          meta: { decoration: true }, hovertemplate: "%{y}<br>" + xTitle + " %{x}<br>" + satNote + "<extra></extra>" });
      }
      drawPlot($("heatmap"), heat, heatmapLayout(rows, measure, {
        xaxis: { title: { text: xTitle }, zeroline: false },
        showlegend: cells.length > 0, legend: { orientation: "h", y: -0.2, yanchor: "top" },
      }));
      if (heatmapOnly) return;
      const mode = steps.length > 60 ? "lines" : "lines+markers";
      const perLayerRows = rows.filter((r) => r.series.layer_index >= 0);
      const byDepth = rows.length > MAX_DISTINCT_COLOURS;
      const depths = perLayerRows.map((r) => r.series.layer_index);
      const lo = depths.length ? Math.min(...depths) : 0;
      const hi = depths.length ? Math.max(...depths) : 1;
      const saturatedAt = new Map();
      for (const [i, j] of cells) {
        if (!saturatedAt.has(i)) saturatedAt.set(i, new Set());
        saturatedAt.get(i).add(j);
      }
      const lines = rows.map((r, i) => {
        const trace = {
          type: "scatter", mode: mode, name: r.label, x: xs.x, y: smooth(r.values, view.smooth),
          connectgaps: true, meta: { raw: r.values },
          visible: view.hide.includes(r.label) ? "legendonly" : true,
          hovertemplate: r.label + "<br>" + xTitle + " %{x}<br>" + measure + " %{y:.4g}<extra></extra>",
        };
        const colour = byDepth ? viridis(hi > lo ? (r.series.layer_index - lo) / (hi - lo) : 0)
          : TAB10[i % TAB10.length];
        trace.line = { color: colour };
        // saturated points as red crosses on the layer's own line (one trace per layer)
        const marked = saturatedAt.get(i);
        if (marked) {
          trace.mode = "lines+markers";
          trace.marker = {
            symbol: steps.map((_, j) => (marked.has(j) ? "x" : "circle")),
            color: steps.map((_, j) => (marked.has(j) ? "red" : colour)),
            size: steps.map((_, j) => (marked.has(j) ? 7 : mode === "lines" ? 0 : 6)),
          };
          trace.hovertemplate = trace.hovertemplate.replace("<extra>",
            "%{text}<extra>");
          trace.text = steps.map((_, j) => (marked.has(j) ? "<br>" + satNote : ""));
        }
        return trace;
      });
      if (byDepth) lines.push(depthColourBar(lo, hi, "layer index"));
      drawPlot($("lines"), lines, {
        margin: { l: 60, r: 10, t: 10, b: 45 }, height: 380 + (rows.length > 20 ? 8 * rows.length : 0),
        xaxis: { title: { text: xTitle } },
        yaxis: { title: { text: measure }, type: view.log ? "log" : "linear", exponentformat: "e" },
        uirevision: measure + "|" + view.x + "|" + view.log, showlegend: true,
        legend: byDepth ? DEPTH_LEGEND : {},
      });
      ls.draws += 1;
    }

    // layers hidden in the lines plot (legend clicks) go into the address
    function watchLegend() {
      const gd = $("lines");
      if (!gd.on || gd.dataset.watched) return;
      gd.dataset.watched = "1";
      gd.on("plotly_restyle", () => {
        view.hide = gd.data.filter((t) => !(t.meta && t.meta.decoration) && t.visible === "legendonly")
          .map((t) => t.name);
        writeView(view);
      });
    }

    function redraw() {
      if (state.steps.length) {
        draw();
        watchLegend();
      }
      drawTraining();
      if (ls.separation && ls.separation.draws) drawSeparation(ls.separation);
    }

    startSeparation(config.separation_probe);
    startTrajectories(config.trajectory_map).catch((error) => {
      if (window.console) console.warn("learnscope dashboard:", error);
    });

    // The measure's values and distinct / E (for the saturated cells), fetched together.
    async function pollMeasure() {
      if (!state.measure) return;
      const requested = state;
      const shareWanted = hasMeasure(SATURATION_MEASURE) && state.measure !== SATURATION_MEASURE;
      const shareState = saturation;
      let data;
      let share;
      try {
        [data, share] = await Promise.all([getJSON(metricsUrl(runId, requested)),
          shareWanted ? getJSON(metricsUrl(runId, shareState)) : null]);
      } catch (error) {
        if (!error.body || error.status >= 500) throw error;
        showNotice($("ls-notice"), error.body, "error");
        return;
      }
      hideNotice($("ls-notice"));
      if (requested !== state) return; // the measure changed meanwhile
      setSummary(data.run);
      let changed = merge(state, data);
      if (state.measure === SATURATION_MEASURE) saturation = state;
      else if (share && shareState === saturation && merge(saturation, share)) changed = true;
      if (changed || ls.draws === 0 || !$("heatmap").data) {
        draw();
        watchLegend();
      }
    }

    const refreshNow = poll(async () => {
      if (!state.measure || (catalogAge >= CATALOG_EVERY && status === "running")) {
        await refreshCatalog();
      }
      catalogAge += 1;
      // the training curves and the measure in parallel (the first plot comes sooner)
      const outcomes = await Promise.allSettled([pollTraining(), pollMeasure()]);
      const failed = outcomes.find((o) => o.status === "rejected");
      if (failed) throw failed.reason;
    });

    const scale = $("per-layer-scale");
    if (scale) scale.addEventListener("change", () => {
      view.scale = scale.checked;
      writeView(view);
      if (state.steps.length) draw();
    });
    $("x-axis").addEventListener("change", () => {
      view.x = $("x-axis").value;
      writeView(view);
      redraw();
    });
    $("log-scale").addEventListener("change", () => {
      view.log = $("log-scale").checked;
      writeView(view);
      redraw();
    });
    $("smoothing").addEventListener("input", () => {
      view.smooth = parseFloat($("smoothing").value) || 0;
      $("smoothing-value").textContent = view.smooth.toFixed(2);
      writeView(view);
      redraw();
    });

    select.addEventListener("change", () => {
      state = newSeriesState(select.value);
      ls.state = state;
      view.measure = select.value;
      view.hide = [];
      writeView(view);
      refreshNow();
    });
  }

  // ------------------------------------------------------------------ several runs

  function initCompare() {
    const runs = config.runs || [];
    const select = $("measure");
    const grid = $("compare-grid");
    let measure = config.measure || select.value || null;
    let states = new Map();
    const cells = new Map();
    ls.state = states;
    if (!runs.length || !measure) return;

    function reset() {
      states = new Map(runs.map((r) => [r.id, newSeriesState(measure)]));
      ls.state = states;
    }
    reset();

    for (const run of runs) {
      const plot = el("div", { className: "plot", id: "heatmap-" + run.id });
      const note = el("p", { className: "muted small", hidden: "" });
      const link = el("a", { href: "/runs/" + encodeURIComponent(run.id), text: run.name });
      const cell = el("div", { className: "cell" }, [
        el("h2", { className: "plot-title" }, [link]),
        el("div", { className: "muted small", text: run.id }),
        note, plot,
      ]);
      grid.appendChild(cell);
      cells.set(run.id, { plot: plot, note: note });
    }

    function draw() {
      let lo = Infinity;
      let hi = -Infinity;
      const rowsOf = new Map();
      for (const run of runs) {
        const rows = ordered(states.get(run.id));
        rowsOf.set(run.id, rows);
        for (const r of rows) {
          for (const v of r.values) {
            if (v !== null && isFinite(v)) {
              lo = Math.min(lo, v);
              hi = Math.max(hi, v);
            }
          }
        }
      }
      const range = isFinite(lo) ? { zmin: lo, zmax: hi, zauto: false } : {};
      for (const run of runs) {
        const state = states.get(run.id);
        const rows = rowsOf.get(run.id);
        Plotly.react(cells.get(run.id).plot, [heatmapTrace(rows, state.steps, measure, range)],
          heatmapLayout(rows, measure, { height: Math.max(220, 70 + 20 * rows.length) }),
          PLOT_CONFIG);
      }
      // the runs lined up by layer index on one plot per measure: static/compare.js
      ls.draws += 1;
    }

    const refreshNow = poll(async () => {
      const requested = states;
      const results = await Promise.all(runs.map(async (run) => {
        try {
          return { run: run, data: await getJSON(metricsUrl(run.id, requested.get(run.id))) };
        } catch (error) {
          if (!error.body || error.status >= 500) throw error;
          return { run: run, error: error.body };
        }
      }));
      if (requested !== states) return;
      let changed = ls.draws === 0;
      for (const result of results) {
        const cell = cells.get(result.run.id);
        if (result.error) {
          cell.note.hidden = false;
          cell.note.textContent = result.error.detail;
          continue;
        }
        cell.note.hidden = true;
        if (merge(states.get(result.run.id), result.data)) changed = true;
      }
      if (changed) draw();
    });

    select.addEventListener("change", () => {
      measure = select.value;
      reset();
      const url = new URL(window.location.href);
      url.searchParams.set("measure", measure);
      history.replaceState(null, "", url.toString());
      refreshNow();
    });
  }

  // ------------------------------------------------------------------ error pages

  function initError() {
    if (!config.retry) return;
    poll(async () => {
      try {
        await getJSON("/api/runs");
      } catch (error) {
        if (error.body) return; // still not readable: keep the page
        throw error;
      }
      window.location.reload(); // the store is readable now: show the real page
    });
  }

  // Helpers for the page scripts loaded after this one (static/runs_table.js, compare.js).
  ls.lib = {
    $, el, getJSON, poll, statusBadge, errorLine, showNotice, hideNotice, fmtDuration,
    fmtProgress, fmtAgo, PLOT_CONFIG,
  };
  const pages = { run: initRun, compare: initCompare, error: initError };
  (pages[config.page] || function () {})();
})();
