"""The dashboard's JSON: what each endpoint sends, built from the run store.

NaN and infinite values become ``null`` (:func:`json_safe`, :class:`SafeJSONResponse`), so the
answers are standard JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from fastapi.responses import JSONResponse

from learnscope.defaults import LAW_MEASURES
from learnscope.health import RunHealth, assess_run, assess_runs, short_error
from learnscope.store import Store
from learnscope.store.db import parse_time
from learnscope.trajectory.maps import TrajectoryMap, has_map, support_mask, support_radius

from .store_reader import find_run

__all__ = [
    "LAW_MEASURES", "PREFERRED_MEASURES", "SEPARATION_MEASURE", "SEPARATION_PROBE",
    "SafeJSONResponse", "json_safe", "run_catalog", "run_payload", "run_summary",
    "runs_payload", "separation_payload", "separation_probe_of", "trajectory_payload",
    "wide_series",
]  # fmt: skip

#: Measures a run page shows first, in this order of preference, when the run has them.
PREFERRED_MEASURES = ("entropy", "rel_entropy", "distinct_frac", "distinct")

#: The measure of the separation probe's per-layer rows, its usual probe name, and its fit rows
#: (layer "law", index -1), sent by ``/api/runs/{run}/separation`` without the ``law_`` prefix.
SEPARATION_MEASURE = "fuzziness"
SEPARATION_PROBE = "separation"

_SUMMARY_KEYS = (
    "id", "name", "experiment", "status", "created_at", "updated_at", "finished_at",
    "total_steps", "last_step", "progress", "eta_seconds", "measurements", "host", "pid",
    "error",
)  # fmt: skip


def json_safe(value: Any) -> Any:
    """A JSON-safe Python value: NaN, infinities and pandas' NA become None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """JSON with NaN/inf as null (standard JSON has neither)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(json_safe(content), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))  # fmt: skip
        return text.encode("utf-8")


def run_summary(record: Mapping[str, Any], health: RunHealth) -> dict[str, Any]:
    """The JSON form of a run (a :meth:`Store.runs` row or a :meth:`Store.run` dict) with what
    :mod:`learnscope.health` says about it: ``status_label`` (``finished (chance-level)``),
    ``chance_level``, ``test_accuracy`` (final), ``chance`` (1 / classes), ``note`` (one line on
    what is wrong) and ``error_short`` (the last line of the stored error)."""
    out = {key: json_safe(record.get(key)) for key in _SUMMARY_KEYS}
    out["updated_unix"] = parse_time(record.get("updated_at"))
    out.update(status_label=health.label, chance_level=health.chance_level,
               test_accuracy=json_safe(health.test_accuracy), chance=json_safe(health.chance),
               note=health.note, error_short=short_error(health.error))
    return out


def run_catalog(series: pd.DataFrame) -> dict[str, Any]:
    """Measures and layers of a run, from :meth:`Store.series`."""
    measures = []
    for name, part in series.groupby("measure", sort=True):
        measures.append({
            "name": str(name),
            "per_layer": bool((part["layer_index"] >= 0).any()),
            "probes": sorted({str(p) for p in part["probe"]}),
            "layers": int(len(part[["probe", "layer"]].drop_duplicates())),
        })  # fmt: skip
    measures.sort(key=lambda m: (not m["per_layer"], m["name"]))
    layers = (
        series[["probe", "layer", "layer_index"]]
        .drop_duplicates()
        .sort_values(["layer_index", "probe", "layer"], kind="stable")
    )
    names = {m["name"] for m in measures}
    default = next((m for m in PREFERRED_MEASURES if m in names), None)
    if default is None and measures:
        default = measures[0]["name"]
    return {
        "measures": measures,
        "layers": [
            {"probe": str(r.probe), "layer": str(r.layer), "layer_index": int(r.layer_index)}
            for r in layers.itertuples(index=False)
        ],
        "default_measure": default,
    }


def wide_series(frame: pd.DataFrame) -> dict[str, Any]:
    """A long metrics frame of one measure as steps + one value list per series."""
    steps = sorted({int(s) for s in frame["step"]})
    position = {step: i for i, step in enumerate(steps)}
    epochs: list[float | None] = [None] * len(steps)
    for step, epoch in zip(frame["step"], frame["epoch"], strict=True):
        i = position[int(step)]
        if epochs[i] is None and not pd.isna(epoch):
            epochs[i] = float(epoch)
    series = []
    keyed = frame.sort_values(["layer_index", "probe", "layer", "step"], kind="stable")
    for (index, probe, layer), part in keyed.groupby(["layer_index", "probe", "layer"], sort=False):
        values: list[float | None] = [None] * len(steps)
        for step, value in zip(part["step"], part["value"], strict=True):
            values[position[int(step)]] = json_safe(float(value))
        series.append({"probe": str(probe), "layer": str(layer), "layer_index": int(index),
                       "values": values})  # fmt: skip
    return {"steps": steps, "epochs": epochs, "series": series}


def separation_probe_of(series: pd.DataFrame) -> str | None:
    """The probe whose fuzziness rows the run page draws (``separation`` first), or None."""
    probes = sorted({str(p) for p in series.loc[series["measure"] == SEPARATION_MEASURE, "probe"]})
    if SEPARATION_PROBE in probes:
        return SEPARATION_PROBE
    return probes[0] if probes else None


def separation_payload(frame: pd.DataFrame) -> dict[str, Any]:
    """Fuzziness per layer (as :func:`wide_series`) and the fit values at the same steps."""
    fuzz = frame[(frame["measure"] == SEPARATION_MEASURE) & (frame["layer_index"] >= 0)]
    content = wide_series(fuzz)
    laws = frame[(frame["layer_index"] < 0) & frame["measure"].isin(LAW_MEASURES)]
    found = {
        (int(step), str(m)): float(v)
        for step, m, v in zip(laws["step"], laws["measure"], laws["value"], strict=True)
    }
    content["law"] = {
        m.removeprefix("law_"): [json_safe(found.get((step, m))) for step in content["steps"]]
        for m in LAW_MEASURES
    }
    return content


def trajectory_payload(tmap: TrajectoryMap) -> dict[str, Any]:
    """The JSON form of a trajectory map (NaN becomes null when sent)."""
    land = tmap.landscape
    return {
        "networks": list(tmap.networks),
        "runs": list(tmap.runs),
        "groups": list(tmap.groups),
        "steps": [steps.tolist() for steps in tmap.steps],
        "coords": [coords.tolist() for coords in tmap.coords],
        "score_names": list(tmap.scores),
        "scores": {name: [values.tolist() for values in per_network]
                   for name, per_network in tmap.scores.items()},
        "trajectory": tmap.trajectory,
        "projection": tmap.projection,
        "landscape": None if land is None else {
            "x": land.x.tolist(), "y": land.y.tolist(),
            # only where snapshots support it (as the figures): null elsewhere
            "values": np.where(support_mask(land, tmap.coords), land.values, np.nan).tolist(),
            "method": land.method, "score": land.score,
            "support_radius": support_radius(tmap.coords),
        },
        "path_lengths": tmap.path_lengths(),
        "start_to_end": tmap.start_to_end(),
        "meta": tmap.meta,
    }



def runs_payload(store: Store) -> list[dict[str, Any]]:
    """Every run of the store as :func:`run_summary`, newest first."""
    frame = store.runs()
    health = assess_runs(store, frame)
    records = frame.iloc[::-1].to_dict("records")  # newest first
    return [run_summary(record, health[record["id"]]) for record in records]


def run_payload(store: Store, ref: str) -> dict[str, Any]:
    """One run (:func:`run_summary` with its config, version and git revision), its measures
    and layers (:func:`run_catalog`), its separation probe and whether it has a trajectory
    map."""
    record = find_run(store, ref)
    run = run_summary(record, assess_run(store, record))
    run["config"] = json_safe(record.get("config") or {})
    for key in ("version", "git_rev"):
        run[key] = json_safe(record.get(key))
    series = store.series(record["id"])
    return {"run": run, **run_catalog(series), "separation_probe": separation_probe_of(series),
            "trajectory_map": has_map(store, record["id"])}  # fmt: skip
