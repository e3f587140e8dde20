"""Comparing runs (``GET /api/compare``): one measure of several runs lined up by LAYER INDEX,
seeds of one config aggregated, and the config keys that tell the runs apart.

Runs of different networks name their layers differently (``fc1`` / ``conv1`` / ``blocks.0``),
so layers are matched by their index in forward order (``layer=0`` is each run's first layer,
``layer=last`` each run's last one), never by name. Runs whose configs are equal but for their
seed (any key named ``seed``, at any depth) form a group; a group of several runs gets the mean
and the sample standard deviation of its runs at each x (over the runs that have a value there).

Query parameters: ``runs`` (repeated or comma-separated ids / names, 1 to
:data:`~.params.MAX_COMPARED_RUNS`), ``measure``, ``layer`` (an index from 0, or ``last``),
``x`` (``step`` or ``epoch``), ``max_points`` (each line is thinned to at most this many
points on the server, keeping the first and last) and ``since`` (a live update: only the points
with x > since, lines and bands recomputed there; the page sends the smallest last x of its
runs and replaces its points after it).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Query

from learnscope.health import assess_run
from learnscope.store import Store

from .errors import DashboardError
from .params import MAX_NAME_CHARS, QUERY_RULES, RunsQuery, compared_refs
from .payloads import SafeJSONResponse, json_safe, run_summary
from .run_table import config_cell, flatten_config
from .settings import Settings
from .store_reader import find_run, read_store

__all__ = [
    "MAX_LINE_POINTS", "MAX_PLOTTED_MEASURES", "api_compare", "compare_payload", "config_diff",
    "plot_measures", "seed_free", "thin", "thinned_steps",
]  # fmt: skip

#: The most measures the comparison page plots at once.
MAX_PLOTTED_MEASURES = 6

#: The most points one line of a comparison may ask for.
MAX_LINE_POINTS = 20_000

QUERY_RULES.update({
    "layer": "layer: a layer index from 0 (forward order) or last",
    "x": "x: step or epoch",
    "max_points": f"max_points: an integer from 2 to {MAX_LINE_POINTS}",
    "since": "since: a number (the last x the page has), -1e15 to 1e15",
})  # fmt: skip

LayerQuery = Annotated[str, Query(pattern="^([0-9]{1,4}|last)$")]
AxisQuery = Annotated[str, Query(pattern="^(step|epoch)$")]
PointsQuery = Annotated[int, Query(ge=2, le=MAX_LINE_POINTS)]
SinceQuery = Annotated[float | None, Query(ge=-1e15, le=1e15, allow_inf_nan=False)]
RequiredMeasure = Annotated[str, Query(min_length=1, max_length=MAX_NAME_CHARS)]


def seed_free(config: dict[str, Any]) -> str:
    """The identity of a config without its seeds (flattened keys named ``seed``), as text."""
    kept = {k: v for k, v in flatten_config(config).items() if k.rsplit(".", 1)[-1] != "seed"}
    return json.dumps(kept, sort_keys=True, default=str)


def plot_measures(selected: str | None, names: list[str], counts: dict[str, int],
                  per_layer: dict[str, bool], compared: int) -> list[str]:
    """The measures the comparison page plots: ``selected`` first, then the per-layer measures
    every compared run has, at most :data:`MAX_PLOTTED_MEASURES` (none without ``selected``)."""
    if selected is None:
        return []
    common = [n for n in names if n != selected and per_layer.get(n) and counts[n] == compared]
    return [selected, *common][:MAX_PLOTTED_MEASURES]


def thinned_steps(store: Store, run_id: str, measure: str, since_step: int | None,
                  max_steps: int) -> list[int] | None:  # fmt: skip
    """At most ``max_steps`` of the steps > ``since_step`` at which the probes that write
    ``measure`` measured run ``run_id``, evenly spread (first and last kept); None when there
    are no more than that (read them all). A measure the run lacks raises ValueError, as
    :meth:`Store.metrics` does."""
    series = store.series(run_id)
    probes = sorted(set(series.loc[series["measure"] == measure, "probe"]))
    if not probes:
        store.metrics(run_id, measure=measure, since_step=2**63 - 1)  # raises the ValueError
        return []
    steps = sorted({s for p in probes for s in store.measured_steps(run_id, p)
                    if since_step is None or s > since_step})  # fmt: skip
    if len(steps) <= max_steps:
        return None
    return [steps[i] for i in thin(len(steps), max_steps)]


def thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, evenly spread, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def config_diff(configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The flattened config keys whose values differ between the runs of ``configs`` (run id
    -> config): per key, each run's value as the run table shows it (None: the run lacks it)."""
    flat = {run: flatten_config(config) for run, config in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = {run: config_cell(f[key]) if key in f else None for run, f in flat.items()}
        if len(set(values.values())) > 1:
            rows.append({"key": key, "values": values})
    return rows


def _line(store: Store, run_id: str, series: pd.DataFrame, measure: str, layer: str,
          axis: str, since: float | None = None) -> tuple[pd.Series | None, str | None, str]:
    """One run's values of ``measure`` at layer index ``layer`` indexed by x (only x > ``since``
    when given), the layer's name, and a note when the run has no such line."""
    rows = series[series["measure"] == measure]
    if rows.empty:
        return None, None, f"has no measure {measure!r}"
    per_layer = rows[rows["layer_index"] >= 0]
    if per_layer.empty:  # a model-level measure: its one line
        chosen = rows.sort_values(["probe", "layer"]).iloc[0]
    else:
        indices = sorted(set(per_layer["layer_index"]))
        index = indices[-1] if layer == "last" else int(layer)
        at = per_layer[per_layer["layer_index"] == index]
        if at.empty:
            return None, None, f"has no layer with index {index} (its last is {indices[-1]})"
        chosen = at.sort_values(["probe", "layer"]).iloc[0]
    # a live update in steps reads only the new rows; in epochs it filters after reading
    since_step = int(np.floor(since)) if since is not None and axis == "step" else None
    frame = store.metrics(run_id, layer=str(chosen["layer"]), measure=measure,
                          probe=str(chosen["probe"]), since_step=since_step)  # fmt: skip
    if axis == "epoch":
        frame = frame[frame["epoch"].notna()]
        if frame.empty:
            return None, str(chosen["layer"]), "has no epochs stored with its measurements"
    values = pd.Series(frame["value"].to_numpy(dtype=float), index=frame[axis].to_numpy())
    values = values[~values.index.duplicated(keep="last")].sort_index()
    if since is not None:
        values = values[values.index > since]
    return values, str(chosen["layer"]), ""


def _group_band(lines: list[pd.Series], max_points: int) -> dict[str, Any]:
    """Mean, sample s.d. and count of ``lines`` at each x any of them has (thinned)."""
    table = pd.concat(lines, axis=1).sort_index()
    count = table.notna().sum(axis=1)
    mean = table.mean(axis=1)
    sd = table.std(axis=1, ddof=1).where(count > 1, 0.0)
    keep = thin(len(table), max_points)
    return {"x": table.index.to_numpy()[keep].tolist(), "mean": mean.to_numpy()[keep].tolist(),
            "sd": sd.to_numpy()[keep].tolist(), "n": count.to_numpy()[keep].tolist()}


def compare_payload(store: Store, refs: list[str], measure: str, *, layer: str = "0",
                    axis: str = "step", max_points: int = 2000,
                    since: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The comparison of the runs ``refs`` (see the module docstring): ``runs`` (summary,
    layer name, line ``x``/``y`` thinned to ``max_points``, ``group``, ``note`` when the run has
    no such line), ``groups`` (``label``, ``runs``, and for several runs ``x``, ``mean``, ``sd``,
    ``n``), ``config_diff`` (:func:`config_diff`) and ``layer_count`` (the most layers a run
    has in ``measure``). With ``since``, lines and bands hold only their points with x >
    ``since`` (a live update)."""
    if not refs:
        raise DashboardError(422, "Invalid request", "runs: no runs were given.",
                             f"Allowed: {QUERY_RULES['runs']}; e.g. runs=RUN1&runs=RUN2.")
    records = list({r["id"]: r for r in (find_run(store, ref) for ref in refs)}.values())
    runs, lines, configs, layer_count = [], {}, {}, 0
    for record in records:
        run_id = record["id"]
        configs[run_id] = record.get("config") or {}
        series = store.series(run_id)
        measured = series[(series["measure"] == measure) & (series["layer_index"] >= 0)]
        layer_count = max(layer_count, len(set(measured["layer_index"])))
        line, name, note = _line(store, run_id, series, measure, layer, axis, since)
        entry = {**run_summary(record, assess_run(store, record)), "layer": name, "note": note,
                 "x": [], "y": []}
        if line is not None:
            lines[run_id] = line
            keep = thin(len(line), max_points)
            entry["x"] = line.index.to_numpy()[keep].tolist()
            entry["y"] = line.to_numpy()[keep].tolist()
        runs.append(entry)
    diff = config_diff(configs)
    shown_keys = [row["key"] for row in diff if row["key"].rsplit(".", 1)[-1] != "seed"]
    groups: dict[str, dict[str, Any]] = {}
    for entry in runs:
        key = seed_free(configs[entry["id"]])
        group = groups.setdefault(key, {"runs": [], "label": ""})
        group["runs"].append(entry["id"])
        entry["group"] = list(groups).index(key)
    for key, group in groups.items():
        first = next(e for e in runs if e["id"] == group["runs"][0])
        flat = flatten_config(configs[first["id"]])
        parts = [f"{k}={config_cell(flat[k])}" for k in shown_keys if k in flat]
        label = ", ".join(parts) if parts else first["name"]
        group["label"] = label if len(group["runs"]) == 1 else (
            f"{label} ({len(group['runs'])} seeds)")
        members = [lines[r] for r in group["runs"] if r in lines]
        if len(group["runs"]) > 1 and members:
            group.update(_group_band(members, max_points))
        group["key"] = key
    return json_safe({
        "measure": measure, "layer": layer, "x_axis": axis, "max_points": max_points,
        "since": since,
        "runs": runs, "groups": list(groups.values()), "config_diff": diff,
        "layer_count": layer_count,
    })


def api_compare(
    settings: Settings, measure: RequiredMeasure, runs: RunsQuery = None,
    layer: LayerQuery = "0", x: AxisQuery = "step", max_points: PointsQuery = 2000,
    since: SinceQuery = None,
) -> SafeJSONResponse:
    """``GET /api/compare``: one measure of several runs aligned by layer index (module doc)."""
    refs = compared_refs(runs)
    with read_store(settings.store_path) as store:
        content = compare_payload(store, refs, measure, layer=layer, axis=x,
                                  max_points=max_points, since=since)
    return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})
