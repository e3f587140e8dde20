"""The JSON endpoints (``/api/...``); each reads the store once, read-only, and answers with
:class:`~learnscope.dashboard.payloads.SafeJSONResponse` (NaN and infinities as ``null``)."""

from __future__ import annotations

import time

from fastapi import FastAPI

from learnscope.health import assess_run
from learnscope.trajectory.maps import MapNotFoundError, TrajectoryMapError, load_map

from .compare import api_compare, thinned_steps
from .errors import DashboardError
from .params import MaxStepsQuery, MeasureQuery, ProbeQuery, SinceStepQuery
from .payloads import (
    SEPARATION_MEASURE,
    SafeJSONResponse,
    run_catalog,
    run_payload,
    run_summary,
    runs_payload,
    separation_payload,
    separation_probe_of,
    trajectory_payload,
    wide_series,
)
from .run_table import api_run_table
from .settings import Settings
from .store_reader import find_run, read_store
from .training import api_training

__all__ = ["add_api_routes"]

NO_STORE = {"Cache-Control": "no-store"}


def api_runs(settings: Settings) -> SafeJSONResponse:
    """All runs of the store, newest first."""
    with read_store(settings.store_path) as store:
        runs = runs_payload(store)
    return SafeJSONResponse({"store": str(settings.store_path), "poll_seconds":
                             settings.poll_seconds, "now": time.time(), "runs": runs},
                            headers=NO_STORE)  # fmt: skip


def api_run(ref: str, settings: Settings) -> SafeJSONResponse:
    """One run (by id, unique id prefix or name) with its config, measures and layers."""
    with read_store(settings.store_path) as store:
        content = run_payload(store, ref)
    return SafeJSONResponse(content, headers=NO_STORE)


def api_metrics(
    ref: str, settings: Settings, measure: MeasureQuery = None, since_step: SinceStepQuery = None,
    max_steps: MaxStepsQuery = None,
) -> SafeJSONResponse:
    """One measure of a run: steps, and per (probe, layer) the values at those steps (with
    ``max_steps``: at most that many of them, evenly spread, read as such from the store)."""
    with read_store(settings.store_path) as store:
        record = find_run(store, ref)
        run_id = record["id"]
        if measure is None:
            measure = run_catalog(store.series(run_id))["default_measure"]
            if measure is None:
                raise DashboardError(
                    404, "No measurements yet", f"Run {run_id} has no measurements yet.",
                    "Wait for its first measurement; the run page updates by itself.",
                )  # fmt: skip
        try:
            steps = None if max_steps is None else thinned_steps(
                store, run_id, measure, since_step, max_steps)
            frame = store.metrics(run_id, measure=measure, since_step=since_step, steps=steps)
        except ValueError as exc:
            raise DashboardError(
                404, "Unknown measure", str(exc),
                f"Choose one of the run's measures (GET /api/runs/{run_id} lists them).",
            ) from exc  # fmt: skip
        summary = run_summary(record, assess_run(store, record))
    content = {"run": summary, "measure": measure, "since_step": since_step,
               **wide_series(frame)}  # fmt: skip
    return SafeJSONResponse(content, headers=NO_STORE)


def api_separation(
    ref: str, settings: Settings, probe: ProbeQuery = None, since_step: SinceStepQuery = None
) -> SafeJSONResponse:
    """Fuzziness D_l per layer and the equi-separation fit per step, steps > since_step."""
    with read_store(settings.store_path) as store:
        record = find_run(store, ref)
        run_id = record["id"]
        series = store.series(run_id)
        if probe is None:
            probe = separation_probe_of(series)
        found = series[(series["measure"] == SEPARATION_MEASURE) & (series["probe"] == probe)]
        if probe is None or found.empty:
            raise DashboardError(
                404, "No separation measurements",
                f"Run {run_id} has no {SEPARATION_MEASURE!r} rows"
                + (f" from probe {probe!r}." if probe else "."),
                "Record them with the equi-separation preset (`learnscope run equisep`) or "
                "add ls.Separation(...) to the Scope's probes.",
            )  # fmt: skip
        frame = store.metrics(run_id, probe=probe, since_step=since_step)
        summary = run_summary(record, assess_run(store, record))
    content = {"run": summary, "probe": probe, "since_step": since_step,
               **separation_payload(frame)}  # fmt: skip
    return SafeJSONResponse(content, headers=NO_STORE)


def api_trajectories(ref: str, settings: Settings) -> SafeJSONResponse:
    """The run's weight-trajectory map: per network its steps, 2-D points and scores."""
    with read_store(settings.store_path) as store:
        record = find_run(store, ref)
        try:
            tmap = load_map(store, record["id"])
        except MapNotFoundError as exc:
            raise DashboardError(
                404, "No trajectory map", str(exc),
                "Project weight snapshots into a map with `learnscope run trajectories` or "
                "`learnscope project RUN...`; the run page shows it then.",
            ) from exc  # fmt: skip
        except (TrajectoryMapError, OSError) as exc:
            raise DashboardError(
                500, "Cannot read the trajectory map", str(exc),
                "The map file may be from a newer learnscope or damaged; write it again "
                "(e.g. `learnscope project RUN...`).",
            ) from exc  # fmt: skip
        summary = run_summary(record, assess_run(store, record))
    content = {"run": summary, **trajectory_payload(tmap)}
    return SafeJSONResponse(content, headers=NO_STORE)


def add_api_routes(app: FastAPI) -> None:
    """Register the JSON endpoints on ``app`` (answered with its default response class,
    :class:`~learnscope.dashboard.payloads.SafeJSONResponse`)."""
    app.add_api_route("/api/runs", api_runs, methods=["GET"])
    app.add_api_route("/api/runs/{ref}", api_run, methods=["GET"])
    app.add_api_route("/api/runs/{ref}/metrics", api_metrics, methods=["GET"])
    app.add_api_route("/api/runs/{ref}/separation", api_separation, methods=["GET"])
    app.add_api_route("/api/runs/{ref}/trajectories", api_trajectories, methods=["GET"])
    app.add_api_route("/api/runs/{ref}/training", api_training, methods=["GET"])
    # issue 16: the run list as a table, and runs compared by layer index
    app.add_api_route("/api/run-table", api_run_table, methods=["GET"])
    app.add_api_route("/api/compare", api_compare, methods=["GET"])
