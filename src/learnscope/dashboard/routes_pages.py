"""The HTML pages: the run list (``/``), one run (``/runs/{run}``) and the comparison of
several runs (``/compare``). Each renders what the store holds now; the page script then keeps
it up to date from the JSON endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from learnscope.health import SATURATION

from .compare import plot_measures
from .errors import DashboardError
from .params import PageMeasureQuery, RunsQuery, compared_refs
from .payloads import PREFERRED_MEASURES, run_payload, runs_payload
from .settings import Settings
from .store_reader import read_store
from .templates import (
    compare_page_body,
    notice_box,
    render_page,
    run_page_body,
    runs_page_body,
)

__all__ = ["add_page_routes"]


def runs_page(settings: Settings) -> HTMLResponse:
    path = settings.store_path
    runs: list[dict[str, Any]] = []
    problem: DashboardError | None = None
    try:
        with read_store(path) as store:
            runs = runs_payload(store)
    except DashboardError as exc:
        problem = exc
    if problem is not None:
        notice = notice_box(problem.title, problem.detail, problem.hint, "error", "ls-error")
    elif not runs:
        notice = notice_box(
            "No runs yet",
            f"The store {path} has no runs yet.",
            "Start one, e.g. `learnscope run quickstart --store "
            f"{path}`, or train with ls.Scope(..., store=...) pointing at it. This list "
            "updates by itself.",
            "info",
            "ls-error",
        )
    else:
        notice = '<div id="ls-error" hidden></div>'
    body = runs_page_body(runs, notice, settings.poll_seconds)
    return render_page("Runs", "runs", body, {"poll_ms": settings.poll_ms}, store=path,
                       status_code=problem.status if problem else 200,
                       scripts_after=("runs_table.js",))  # fmt: skip


def run_page(ref: str, settings: Settings, measure: PageMeasureQuery = None) -> HTMLResponse:
    with read_store(settings.store_path) as store:
        content = run_payload(store, ref)
    run = content["run"]
    names = [m["name"] for m in content["measures"]]
    notice = ""
    chosen = content["default_measure"]
    if measure is not None and measure in names:
        chosen = measure
    elif measure is not None:
        notice = notice_box(
            "Unknown measure", f"Run {run['id']} has no measure {measure!r}.",
            f"Showing {chosen!r} instead; pick another from the list.", "info",
        )  # fmt: skip
    mapped = content["trajectory_map"]
    if not names and run["status"] in ("failed", "diverged"):
        notice = notice_box(
            f"Run {run['status']} before its first measurement",
            f"Run {run['id']} {run['status']} and has no measurements.",
            "Its stored error is shown above; fix the cause and start the run again.",
            "error", "ls-notice",
        )  # fmt: skip
    elif not names:
        notice = notice_box(
            "No measurements yet", f"Run {run['id']} has no measurements yet"
            + (" (it holds a weight-trajectory map, shown below)." if mapped else "."),
            "This page shows them as soon as the run writes its first one.", "info",
            "ls-notice",
        )  # fmt: skip
    else:
        notice += '<div id="ls-notice" hidden></div>'  # for the page script's messages
    body = run_page_body(content, chosen, notice, settings.poll_seconds)
    config = {
        "poll_ms": settings.poll_ms,
        "run_id": run["id"],
        "measure": chosen,
        "separation_probe": content["separation_probe"],
        "trajectory_map": mapped,
        "saturation": SATURATION,
    }
    return render_page(run["name"], "run", body, config, store=settings.store_path, plotly=True)


def compare_page(
    settings: Settings, runs: RunsQuery = None, measure: PageMeasureQuery = None
) -> HTMLResponse:
    refs = compared_refs(runs)
    with read_store(settings.store_path) as store:
        every = runs_payload(store)
        chosen = [run_payload(store, ref) for ref in refs]
    ids = list(dict.fromkeys(c["run"]["id"] for c in chosen))
    chosen = [next(c for c in chosen if c["run"]["id"] == i) for i in ids]
    counts: dict[str, int] = {}
    per_layer: dict[str, bool] = {}
    for content in chosen:
        for m in content["measures"]:
            counts[m["name"]] = counts.get(m["name"], 0) + 1
            per_layer[m["name"]] = per_layer.get(m["name"], False) or m["per_layer"]
    names = sorted(counts, key=lambda n: (-counts[n], not per_layer[n], n))
    selected = measure if measure in counts else None
    if selected is None:
        common = [n for n in PREFERRED_MEASURES if counts.get(n, 0) == len(chosen)]
        selected = common[0] if common else (names[0] if names else None)
    if not every:
        notice = notice_box("No runs yet", f"The store {settings.store_path} has no runs yet.",
                            "Start a run; then pick runs to compare here.", "info")  # fmt: skip
    elif len(ids) < 2:
        notice = notice_box(
            "Pick runs to compare",
            "Choose two or more runs below and press Compare.",
            "",
            "info",
        )
    else:
        notice = ""
    body = compare_page_body(every, ids, counts, names, selected, notice, settings.poll_seconds)
    config = {
        "poll_ms": settings.poll_ms,
        "runs": [{"id": c["run"]["id"], "name": c["run"]["name"]} for c in chosen],
        "measure": selected,
        # static/compare.js: one plot per measure, the chosen one first, then the other
        # per-layer measures all compared runs have
        "plot_measures": plot_measures(selected, names, counts, per_layer, len(chosen)),
    }
    return render_page("Compare runs", "compare", body, config, store=settings.store_path,
                       plotly=True, scripts_after=("compare.js",))  # fmt: skip


def add_page_routes(app: FastAPI) -> None:
    """Register the HTML pages on ``app`` (left out of its OpenAPI schema)."""
    for path, page in (("/", runs_page), ("/runs/{ref}", run_page), ("/compare", compare_page)):
        app.add_api_route(path, page, methods=["GET"], response_class=HTMLResponse,
                          include_in_schema=False)  # fmt: skip
