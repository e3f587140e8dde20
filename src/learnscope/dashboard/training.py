"""Training curves for the run page: the model-level values a training loop logs with
``scope.log`` (the trainer: ``loss``, ``accuracy`` and ``lr`` every step under probe ``train``,
``val_*`` / ``test_*`` at the end of each epoch), all stored under layer ``model``.

``GET /api/runs/{run}/training`` sends them as one series per (probe, measure), each with its
own steps (validation is logged once per epoch, the training loss every step), optionally
downsampled on the server (``max_points``: each point the mean of a run of consecutive values,
at the run's last step) and as CSV (``format=csv``).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Query
from fastapi.responses import Response

from learnscope.health import assess_run

from .params import QUERY_RULES, SinceStepQuery
from .payloads import SafeJSONResponse, json_safe, run_summary
from .settings import Settings
from .store_reader import find_run, read_store

__all__ = [
    "MAX_POINTS", "TRAINING_LAYER", "api_training", "downsample", "training_csv",
    "training_payload",
]  # fmt: skip

#: The layer name under which ``Scope.log`` stores model-level values.
TRAINING_LAYER = "model"

#: The most points one training series may be downsampled to (and the fewest: 2).
MAX_POINTS = 100_000

MaxPointsQuery = Annotated[int | None, Query(ge=2, le=MAX_POINTS, description=QUERY_RULES[
    "max_points"])]  # fmt: skip
FormatQuery = Annotated[Literal["json", "csv"], Query(description=QUERY_RULES["format"])]

NO_STORE = {"Cache-Control": "no-store"}


def downsample(
    steps: np.ndarray, epochs: np.ndarray, values: np.ndarray, max_points: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``max_points`` points: consecutive values in equal runs, each point the mean of
    its run's finite values (NaN when none) at the run's last step and epoch. Unchanged when
    there are no more than ``max_points`` (or ``max_points`` is None)."""
    if max_points is None or len(steps) <= max_points:
        return steps, epochs, values
    bounds = np.linspace(0, len(steps), max_points + 1).round().astype(int)
    ends = bounds[1:] - 1
    finite = np.isfinite(values)
    sums = np.add.reduceat(np.where(finite, values, 0.0), bounds[:-1])
    counts = np.add.reduceat(finite.astype(int), bounds[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return steps[ends], epochs[ends], means


def training_payload(frame: pd.DataFrame, max_points: int | None = None) -> dict[str, Any]:
    """The model-level rows of ``frame`` (a :meth:`Store.metrics` frame) as one series per
    (probe, measure) in name order: ``{"probe", "measure", "steps", "epochs", "values",
    "points"}`` (``points``: stored values the series stands for)."""
    rows = frame[frame["layer"] == TRAINING_LAYER]
    series = []
    for (probe, measure), part in rows.groupby(["probe", "measure"], sort=True):
        part = part.sort_values("step", kind="stable")
        steps, epochs, values = downsample(part["step"].to_numpy(), part["epoch"].to_numpy(
            dtype=float), part["value"].to_numpy(dtype=float), max_points)  # fmt: skip
        series.append({
            "probe": str(probe), "measure": str(measure), "points": int(len(part)),
            "steps": [int(s) for s in steps], "epochs": [json_safe(float(e)) for e in epochs],
            "values": [json_safe(float(v)) for v in values],
        })  # fmt: skip
    return {"series": series}


def training_csv(payload: dict[str, Any]) -> str:
    """A training payload as CSV: one row per point (``probe,measure,step,epoch,value``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["probe", "measure", "step", "epoch", "value"])
    for s in payload["series"]:
        for step, epoch, value in zip(s["steps"], s["epochs"], s["values"], strict=True):
            writer.writerow([s["probe"], s["measure"], step, "" if epoch is None else epoch,
                             "" if value is None else repr(value)])  # fmt: skip
    return out.getvalue()


def api_training(
    ref: str,
    settings: Settings,
    since_step: SinceStepQuery = None,
    max_points: MaxPointsQuery = None,
    format: FormatQuery = "json",  # noqa: A002 - the query parameter's name
) -> Response:
    """The run's training curves (steps > since_step), JSON or CSV; no series when the run has
    logged none yet."""
    with read_store(settings.store_path) as store:
        record = find_run(store, ref)
        run_id = record["id"]
        try:
            frame = store.metrics(run_id, layer=TRAINING_LAYER, since_step=since_step)
        except ValueError:  # the run has no layer-"model" rows (yet)
            frame = None
        summary = run_summary(record, assess_run(store, record))
    content = training_payload(frame, max_points) if frame is not None else {"series": []}
    if format == "csv":
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
        return Response(training_csv(content), media_type="text/csv; charset=utf-8", headers={
            **NO_STORE, "Content-Disposition": f'attachment; filename="{safe_name}-training.csv"'})
    return SafeJSONResponse({"run": summary, "since_step": since_step, "max_points": max_points,
                             **content}, headers=NO_STORE)  # fmt: skip
