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
    Plotly.react($("equisep"), traces, {
      margin: { l: 60, r: 10, t: 35, b: 45 }, height: 360,
      title: { text: title, font: { size: 13 } },
      xaxis: { title: { text: "layer l (0 = input)" }, dtick: 1 },
      yaxis: { title: { text: "D_l (log scale)" }, type: "log" },
      uirevision: "equisep", showlegend: true,
    }, PLOT_CONFIG);

    const top = Math.max(1, Math.max(...xs));
    const mode = state.steps.length > 60 ? "lines" : "lines+markers";
    const dynamics = rows.map((r) => ({
      type: "scatter", mode: mode, name: r.label, x: state.steps, y: r.values, connectgaps: true,
      line: { color: viridis(r.series.layer_index / top) }, marker: { size: 4 },
      hovertemplate: r.label + "<br>step %{x}<br>D_l %{y:.4g}<extra></extra>",
    }));
    const lawOf = (key) => state.steps.map((step) => (sep.law.get(step) || {})[key] ?? null);
    dynamics.push({
      type: "scatter", mode: mode, name: "Pearson r", x: state.steps, y: lawOf("pearson_r"),
      yaxis: "y2", line: { color: "#b42318" }, connectgaps: true,
      hovertemplate: "step %{x}<br>r %{y:.4f}<extra></extra>",
    }, {
      type: "scatter", mode: mode, name: "ρ", x: state.steps, y: lawOf("rho"),
      yaxis: "y3", line: { color: "#3559c7", dash: "dot" }, connectgaps: true,
      hovertemplate: "step %{x}<br>ρ %{y:.4f}<extra></extra>",
    });
    Plotly.react($("equisep-dynamics"), dynamics, {
      margin: { l: 60, r: 60, t: 10, b: 45 }, height: 520,
      xaxis: { title: { text: "step" }, anchor: "y2" },
      yaxis: { title: { text: "D_l (log scale)" }, type: "log", domain: [0.42, 1] },
      yaxis2: { title: { text: "Pearson r" }, domain: [0, 0.32] },
      yaxis3: { title: { text: "ρ" }, overlaying: "y2", side: "right", showgrid: false },
      uirevision: "equisep-dynamics", showlegend: true,
    }, PLOT_CONFIG);
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
    Plotly.react($("trajectory-map"), trajectoryTraces(map, view.score), layout, PLOT_CONFIG);
    view.draws += 1;
  }

  // ------------------------------------------------------------------ one run

  function initRun() {
    const runId = config.run_id;
    const select = $("measure");
    let state = newSeriesState(config.measure || null);
    // The run's measures are rendered into the page; they are re-read while the run is
    // running (a measure may first appear later, e.g. one logged once per epoch).
    const CATALOG_EVERY = 15;
    let catalogAge = 0;
    let status = null;
    ls.state = state;

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

    // The equi-separation plots, for runs with the separation probe's fuzziness rows (they
    // may first appear while the run trains: the catalog refresh starts them then).
    let separationStarted = false;
    function startSeparation(probe) {
      if (separationStarted || !probe || !$("separation")) return;
      separationStarted = true;
      $("separation").hidden = false;
      const sep = (ls.separation = { probe: probe, state: newSeriesState("fuzziness"), law: new Map(), draws: 0 });
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
      // the score the map was made for, else the landscape's, else the first (as the figure)
      const chosen = map.meta && typeof map.meta.score === "string" ? map.meta.score : null;
      const preferred = names.includes(chosen) ? chosen
        : map.landscape && names.includes(map.landscape.score) ? map.landscape.score : names[0];
      const view = (ls.trajectories = { map: map, score: preferred || null, draws: 0 });
      const select = $("trajectory-score");
      select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
      if (view.score) select.value = view.score;
      $("trajectory-score-label").hidden = names.length < 2;
      select.onchange = () => {
        view.score = select.value;
        drawTrajectories(view);
      };
      $("trajectory-about").textContent = map.networks.length + " networks, " + map.trajectory +
        " parameters, " + map.projection;
      drawTrajectories(view);
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

    function draw() {
      const rows = ordered(state);
      const measure = state.measure;
      const scaled = $("per-layer-scale") && $("per-layer-scale").checked;
      Plotly.react($("heatmap"), [heatmapTrace(rows, state.steps, measure, scaled ? perLayer(rows, measure) : null)],
        heatmapLayout(rows, measure), PLOT_CONFIG);
      const mode = state.steps.length > 60 ? "lines" : "lines+markers";
      const lines = rows.map((r) => ({
        type: "scatter", mode: mode, name: r.label, x: state.steps, y: r.values, connectgaps: true,
        hovertemplate: r.label + "<br>step %{x}<br>" + measure + " %{y:.4g}<extra></extra>",
      }));
      Plotly.react($("lines"), lines, {
        margin: { l: 60, r: 10, t: 10, b: 45 }, height: 380,
        xaxis: { title: { text: "step" } }, yaxis: { title: { text: measure } },
        uirevision: measure, showlegend: true,
      }, PLOT_CONFIG);
      ls.draws += 1;
    }

    startSeparation(config.separation_probe);
    startTrajectories(config.trajectory_map).catch((error) => {
      if (window.console) console.warn("learnscope dashboard:", error);
    });

    const refreshNow = poll(async () => {
      if (!state.measure || (catalogAge >= CATALOG_EVERY && status === "running")) {
        await refreshCatalog();
      }
      catalogAge += 1;
      if (!state.measure) return;
      const requested = state;
      let data;
      try {
        data = await getJSON(metricsUrl(runId, requested));
      } catch (error) {
        if (!error.body || error.status >= 500) throw error;
        showNotice($("ls-notice"), error.body, "error");
        return;
      }
      hideNotice($("ls-notice"));
      if (requested !== state) return; // the measure changed meanwhile
      setSummary(data.run);
      const changed = merge(state, data);
      if (changed || ls.draws === 0 || !$("heatmap").data) draw();
    });

    const scale = $("per-layer-scale");
    if (scale) scale.addEventListener("change", () => { if (state.steps.length) draw(); });


    select.addEventListener("change", () => {
      state = newSeriesState(select.value);
      ls.state = state;
      const url = new URL(window.location.href);
      url.searchParams.set("measure", select.value);
      history.replaceState(null, "", url.toString());
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
