"""The FastAPI application of the learnscope dashboard.

Everything here reads the run store through ``Store(path, read_only=True)``, opened anew for
every request and closed at its end, so the dashboard never writes to the store (SQLite opens
the file with ``mode=ro``) and always sees what the training processes have committed.

Pages (HTML; the browser script ``static/dashboard.js`` keeps them up to date by polling the
JSON endpoints and redrawing with ``Plotly.react``, without reloading):

``/``                      the run list
``/runs/{run}``            one run: a layer x step heatmap and per-layer lines of one measure;
                           the equi-separation plots and the weight-trajectory map when it has
                           them
``/compare?runs=a&runs=b`` several runs side by side for one measure

JSON endpoints (NaN and infinite values are sent as ``null``; errors as
``{"error", "detail", "hint", "status"}`` with a 4xx/5xx status):

``/api/runs``                                       all runs, newest first
``/api/runs/{run}``                                 one run, its config, measures and layers
``/api/runs/{run}/metrics?measure=M&since_step=S``  one measure of a run, steps > S
``/api/runs/{run}/separation?since_step=S``         separation fuzziness per layer and the
                                                    equi-separation fit, steps > S
``/api/runs/{run}/trajectories``                    the run's weight-trajectory map (2-D
                                                    points, steps and scores per network, and
                                                    the score landscape), see
                                                    :mod:`learnscope.trajectory.maps`

It trusts no request: only those whose ``Host`` header names the loopback interface
(:data:`LOCAL_HOSTS`) or a host given to :func:`create_app` are answered (others get 400, so
a DNS-rebinding web page cannot read the API), and every query parameter has bounds (a value
outside them gets 422 with what is allowed, see :data:`QUERY_RULES`).
"""

from __future__ import annotations

import html
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

import learnscope
from learnscope.health import RunHealth, assess_run, assess_runs, short_error
from learnscope.store import Store, StoreError
from learnscope.store.db import parse_time
from learnscope.trajectory.maps import (
    MapNotFoundError,
    TrajectoryMap,
    TrajectoryMapError,
    has_map,
    load_map,
    support_mask,
    support_radius,
)

__all__ = ["LOCAL_HOSTS", "DashboardError", "create_app", "host_name"]

#: Host names the dashboard always answers to: the loopback interface.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

#: The largest step SQLite can store (a signed 64-bit integer).
MAX_STEP = 2**63 - 1

#: The longest measure or probe name a request may ask for.
MAX_NAME_CHARS = 1000

#: The most runs one comparison page shows.
MAX_COMPARED_RUNS = 100

#: What each query parameter accepts, as said in a 422 answer.
QUERY_RULES = {
    "since_step": f"since_step: an integer from -1 (all steps) to {MAX_STEP}",
    "measure": f"measure: a measure name (1 to {MAX_NAME_CHARS} characters)",
    "probe": f"probe: a probe name (1 to {MAX_NAME_CHARS} characters)",
    "runs": f"runs: run ids, id prefixes or names (at most {MAX_COMPARED_RUNS} runs)",
}

SinceStepQuery = Annotated[
    int | None, Query(ge=-1, le=MAX_STEP, description="only steps greater than this")
]
MeasureQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_NAME_CHARS, description="measure name")
]
#: A page's ``measure`` (an empty one, like an unknown one, shows the run's default measure).
PageMeasureQuery = Annotated[
    str | None, Query(max_length=MAX_NAME_CHARS, description="measure name")
]
ProbeQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_NAME_CHARS, description="probe name")
]

#: Measures a run page shows first, in this order of preference, when the run has them.
PREFERRED_MEASURES = ("entropy", "rel_entropy", "distinct_frac", "distinct")

#: The measure of the separation probe's per-layer rows, its usual probe name, and its fit rows
#: (layer "law", index -1), sent by ``/api/runs/{run}/separation`` without the ``law_`` prefix.
SEPARATION_MEASURE = "fuzziness"
SEPARATION_PROBE = "separation"
LAW_MEASURES = ("law_slope", "law_rho", "law_pearson_r", "law_r2", "law_first", "law_last")

_SUMMARY_KEYS = (
    "id", "name", "experiment", "status", "created_at", "updated_at", "finished_at",
    "total_steps", "last_step", "progress", "eta_seconds", "measurements", "host", "pid",
    "error",
)  # fmt: skip


class DashboardError(Exception):
    """A request that cannot be answered, with what the user can do about it.

    Rendered as an HTML page for page requests and as JSON for ``/api/`` requests.
    """

    def __init__(self, status: int, title: str, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.hint = status, title, detail, hint

    def as_json(self) -> dict[str, Any]:
        return {"error": self.title, "detail": self.detail, "hint": self.hint,
                "status": self.status}  # fmt: skip


# --------------------------------------------------------------------------- Host check


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or ``--host`` value: lower-case, without the port
    and without the brackets of an IPv6 address (``[::1]:8765`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return value.split(":")[0]
    return value


class AllowedHosts:
    """ASGI middleware: answers only HTTP requests whose ``Host`` header names an allowed host
    (any port); others get 400 with a one-line message naming the refused host. ``*`` among
    the hosts turns the check off.

    Not Starlette's ``TrustedHostMiddleware``: its fixed "Invalid host header" says neither
    which host was refused nor how to allow it, and the Starlette versions FastAPI 0.110
    allows cut ``[::1]:8765`` at its first colon.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = tuple(dict.fromkeys(host_name(h) for h in (*LOCAL_HOSTS, *hosts)))
        self.any = "*" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is not None and host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        await PlainTextResponse(self.refusal(header), status_code=400)(scope, receive, send)

    def refusal(self, header: str | None) -> str:
        allowed = ", ".join(self.hosts)
        if header is None:
            return f"Refused: the request has no Host header; this dashboard answers {allowed}.\n"
        name = host_name(header)
        shown = name if len(name) <= 100 else name[:100] + "..."
        return (f"Refused: host {shown!r} is not one this dashboard answers ({allowed}); to "
                f"allow it, start the dashboard with --allowed-host {shown}.\n")  # fmt: skip


# --------------------------------------------------------------------------- JSON values


def _plain(value: Any) -> Any:
    """A JSON-safe Python value: NaN, infinities and pandas' NA become None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """JSON with NaN/inf as null (standard JSON has neither)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(_plain(content), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))  # fmt: skip
        return text.encode("utf-8")


def _summary(record: Mapping[str, Any], health: RunHealth) -> dict[str, Any]:
    """The JSON form of a run (a :meth:`Store.runs` row or a :meth:`Store.run` dict) with what
    :mod:`learnscope.health` says about it: ``status_label`` (``finished (chance-level)``),
    ``chance_level``, ``test_accuracy`` (final), ``chance`` (1 / classes), ``note`` (one line on
    what is wrong) and ``error_short`` (the last line of the stored error)."""
    out = {key: _plain(record.get(key)) for key in _SUMMARY_KEYS}
    out["updated_unix"] = parse_time(record.get("updated_at"))
    out.update(status_label=health.label, chance_level=health.chance_level,
               test_accuracy=_plain(health.test_accuracy), chance=_plain(health.chance),
               note=health.note, error_short=short_error(health.error))
    return out


def _catalog(series: pd.DataFrame) -> dict[str, Any]:
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


def _wide(frame: pd.DataFrame) -> dict[str, Any]:
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
            values[position[int(step)]] = _plain(float(value))
        series.append({"probe": str(probe), "layer": str(layer), "layer_index": int(index),
                       "values": values})  # fmt: skip
    return {"steps": steps, "epochs": epochs, "series": series}


def _separation_probe(series: pd.DataFrame) -> str | None:
    """The probe whose fuzziness rows the run page draws (``separation`` first), or None."""
    probes = sorted({str(p) for p in series.loc[series["measure"] == SEPARATION_MEASURE, "probe"]})
    if SEPARATION_PROBE in probes:
        return SEPARATION_PROBE
    return probes[0] if probes else None


def _separation(frame: pd.DataFrame) -> dict[str, Any]:
    """Fuzziness per layer (as :func:`_wide`) and the fit values at the same steps."""
    fuzz = frame[(frame["measure"] == SEPARATION_MEASURE) & (frame["layer_index"] >= 0)]
    content = _wide(fuzz)
    laws = frame[(frame["layer_index"] < 0) & frame["measure"].isin(LAW_MEASURES)]
    found = {
        (int(step), str(m)): float(v)
        for step, m, v in zip(laws["step"], laws["measure"], laws["value"], strict=True)
    }
    content["law"] = {
        m.removeprefix("law_"): [_plain(found.get((step, m))) for step in content["steps"]]
        for m in LAW_MEASURES
    }
    return content


def _trajectories(tmap: TrajectoryMap) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- HTML


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _fmt_duration(seconds: Any) -> str:
    """``42 s``, ``3 min 12 s``, ``2 h 05 min``, ``3 d 4 h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _or_dash(value: Any) -> Any:
    return "-" if value is None else value


def _fmt_progress(progress: Any) -> str:
    if progress is None or not math.isfinite(progress):
        return "-"
    return f"{100 * progress:.0f}%"


def _notice(title: str, detail: str, hint: str = "", kind: str = "info", ident: str = "") -> str:
    attr = f' id="{ident}"' if ident else ""
    hint_html = f'<p class="hint">{_e(hint)}</p>' if hint else ""
    return (f'<div class="notice {kind}"{attr} role="status"><h2>{_e(title)}</h2>'
            f'<p class="detail">{_e(detail)}</p>{hint_html}</div>')  # fmt: skip


def _status_badge(run: Mapping[str, Any]) -> str:
    """The status of a run as a badge: ``finished (chance-level)`` in warning colours."""
    kind = "chance" if run.get("chance_level") else run["status"]
    title = f' title="{_e(run["note"])}"' if run.get("note") else ""
    return (f'<span class="status status-{_e(kind)}"{title}>'
            f'{_e(run.get("status_label") or run["status"])}</span>')


def _error_line(run: Mapping[str, Any]) -> str:
    """The shortened stored error under a run's status (nothing when there is none)."""
    if not run.get("error_short"):
        return ""
    return (f'<div class="run-error small" title="{_e(run["error"])}">'
            f'{_e(run["error_short"])}</div>')


def _run_problem(run: Mapping[str, Any]) -> str:
    """The run page's box for a stored error or a chance-level result (an empty, hidden box
    otherwise, which the page script fills when the run changes)."""
    if run.get("error"):
        body = (f"<h2>Run {_e(run['status'])}: stored error</h2>"
                f'<pre class="detail">{_e(run["error"])}</pre>')
        return f'<div class="notice error" id="run-problem" role="alert">{body}</div>'
    if run.get("chance_level"):
        body = (f"<h2>Chance-level result</h2><p class=\"detail\">{_e(run['note'])}: the "
                "network learned nothing; do not average its measures with other runs.</p>")
        return f'<div class="notice warning" id="run-problem" role="alert">{body}</div>'
    return '<div class="notice" id="run-problem" role="alert" hidden></div>'


def _runs_rows(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        progress = run["progress"]
        width = 0 if progress is None else max(0.0, min(1.0, progress)) * 100
        rows.append(
            f'<tr data-run="{_e(run["id"])}">'
            f'<td><input type="checkbox" name="runs" value="{_e(run["id"])}" '
            f'aria-label="compare {_e(run["id"])}"></td>'
            f'<td><a href="/runs/{_e(run["id"])}">{_e(run["name"])}</a>'
            f'<div class="muted small">{_e(run["id"])}</div></td>'
            f"<td>{_e(run['experiment'] or '-')}</td>"
            f"<td>{_status_badge(run)}{_error_line(run)}</td>"
            f'<td><div class="bar"><div style="width:{width:.1f}%"></div></div>'
            f"{_e(_fmt_progress(progress))}</td>"
            f"<td>{_e(_fmt_duration(run['eta_seconds']))}</td>"
            f"<td>{_e(run['measurements'])}</td>"
            f'<td title="{_e(run["updated_at"])}">{_e(run["updated_at"])}</td></tr>'
        )
    return "".join(rows)


RUNS_HEADER = (
    "<tr><th></th><th>run</th><th>experiment</th><th>status</th><th>progress</th>"
    "<th>ETA</th><th>measurements</th><th>last update</th></tr>"
)


def _page(
    title: str,
    page: str,
    body: str,
    config: dict[str, Any],
    *,
    store: Path,
    status_code: int = 200,
    plotly: bool = False,
) -> HTMLResponse:
    """A complete HTML page: header, body, the page config and the scripts."""
    config = {"page": page, **config}
    data = json.dumps(_plain(config), allow_nan=False).replace("</", "<\\/")
    version = _e(learnscope.__version__)
    scripts = (
        f'<script src="/assets/plotly.min.js?v={_e(_plotly_version())}"></script>' if plotly else ""
    )
    text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} - learnscope</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css?v={version}">
</head>
<body data-page="{_e(page)}">
<header class="top">
<a class="brand" href="/">learnscope</a>
<nav><a href="/">Runs</a><a href="/compare">Compare</a></nav>
<span class="store" title="run store (read-only)">{_e(store)}</span>
</header>
<div id="ls-banner" class="banner" hidden></div>
<main>
{body}
</main>
<script type="application/json" id="ls-config">{data}</script>
{scripts}
<script src="/static/dashboard.js?v={version}"></script>
</body>
</html>
"""
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store"})


def _plotly_js() -> Any:
    """The ``plotly.min.js`` that ships inside the installed plotly package."""
    return resources.files("plotly") / "package_data" / "plotly.min.js"


def _plotly_version() -> str:
    try:
        import plotly

        return str(plotly.__version__)
    except ImportError:  # pragma: no cover - checked by create_app
        return "0"


# --------------------------------------------------------------------------- the app


def create_app(
    store_path: str | Path, *, poll_seconds: float = 2.0, allowed_hosts: Iterable[str] = ()
) -> FastAPI:
    """The dashboard for the run store at ``store_path``, refreshing every ``poll_seconds``.

    The store may be missing, empty or being written when the app starts or at any later
    time: pages and endpoints then answer with a clear message (and pages keep checking).
    Requests must be addressed (``Host`` header, any port) to 127.0.0.1, localhost, ::1 or one
    of ``allowed_hosts`` (``"*"``: any host); others get 400.
    """
    if not isinstance(poll_seconds, (int, float)) or not poll_seconds > 0:
        raise ValueError(f"poll_seconds must be a positive number, got {poll_seconds!r}")
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    allowed_hosts = list(allowed_hosts)
    for host in allowed_hosts:
        if not isinstance(host, str) or not host.strip() or ("*" in host and host != "*"):
            raise ValueError(
                f"allowed hosts must be host names or addresses (or '*' for any), got {host!r}"
            )
    plotly_js = _plotly_js()
    if not plotly_js.is_file():
        raise RuntimeError(
            f"plotly.min.js is missing from the installed plotly package ({plotly_js}); "
            "reinstall it with: pip install 'learnscope[dashboard]'"
        )
    path = Path(store_path).expanduser().resolve()
    poll = float(poll_seconds)
    poll_ms = int(round(poll * 1000))
    app = FastAPI(
        title="learnscope dashboard",
        version=learnscope.__version__,
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        default_response_class=SafeJSONResponse,
    )
    app.state.store_path = path
    app.state.poll_seconds = poll
    app.add_middleware(AllowedHosts, hosts=allowed_hosts)

    # ---------------------------------------------------------------- reading the store

    @contextmanager
    def reader() -> Iterator[Store]:
        if not path.exists():
            raise DashboardError(
                503,
                "No run store yet",
                f"There is no learnscope run store at {path}.",
                "Start a run that writes to it (e.g. `learnscope run quickstart --store "
                f"{path}`), or restart the dashboard with --store pointing at an existing "
                "store. This page checks again by itself.",
            )
        try:
            store = Store(path, read_only=True)
        except StoreError as exc:
            raise DashboardError(
                503,
                "Cannot read the run store",
                str(exc),
                "This page checks again by itself; if the problem persists, restart the "
                "dashboard with --store pointing at a learnscope store.",
            ) from exc
        try:
            yield store
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise DashboardError(
                503,
                "Reading the run store failed",
                f"{path}: {exc}",
                "The store may be busy (being written) or on a slow disk; this page tries "
                "again by itself.",
            ) from exc
        finally:
            store.close()

    def resolve(store: Store, ref: str) -> dict[str, Any]:
        try:
            return store.run(ref)
        except StoreError as exc:
            raise DashboardError(
                404, "Unknown run", str(exc), "Pick a run from the run list at /."
            ) from exc

    def runs_json(store: Store) -> list[dict[str, Any]]:
        frame = store.runs()
        health = assess_runs(store, frame)
        records = frame.iloc[::-1].to_dict("records")  # newest first
        return [_summary(record, health[record["id"]]) for record in records]

    def run_json(store: Store, ref: str) -> dict[str, Any]:
        record = resolve(store, ref)
        run = _summary(record, assess_run(store, record))
        run["config"] = _plain(record.get("config") or {})
        for key in ("version", "git_rev"):
            run[key] = _plain(record.get(key))
        series = store.series(record["id"])
        return {"run": run, **_catalog(series), "separation_probe": _separation_probe(series),
                "trajectory_map": has_map(store, record["id"])}  # fmt: skip

    # ---------------------------------------------------------------- errors

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error_response(request: Request, error: DashboardError) -> Response:
        if wants_json(request):
            return SafeJSONResponse(error.as_json(), status_code=error.status,
                                    headers={"Cache-Control": "no-store"})  # fmt: skip
        retry = error.status == 503
        body = _notice(error.title, error.detail, error.hint, "error", "ls-error")
        body += '<p><a href="/">Back to the run list</a></p>'
        return _page(error.title, "error", body, {"poll_ms": poll_ms, "retry": retry},
                     store=path, status_code=error.status)  # fmt: skip

    @app.exception_handler(DashboardError)
    async def on_dashboard_error(request: Request, error: DashboardError) -> Response:
        return error_response(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            what = DashboardError(
                404, "Not found", f"There is no page or endpoint at {request.url.path}.",
                "Pages: /, /runs/RUN, /compare. Endpoints: /api/runs, /api/runs/RUN, "
                "/api/runs/RUN/metrics?measure=M&since_step=S, "
                "/api/runs/RUN/separation?since_step=S, /api/runs/RUN/trajectories.",
            )  # fmt: skip
        else:
            what = DashboardError(error.status_code, "Request failed", str(error.detail))
        return error_response(request, what)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Response:
        problems, names = [], []
        for item in error.errors():
            name = str(item.get("loc", ("", "?"))[-1])
            given = repr(item.get("input"))
            given = given if len(given) <= 60 else given[:60] + "..."
            problems.append(f"{name} = {given}: {item.get('msg', 'invalid')}")
            names.append(name)
        allowed = [QUERY_RULES[n] for n in dict.fromkeys(names) if n in QUERY_RULES]
        return error_response(
            request,
            DashboardError(422, "Invalid request", "; ".join(problems),
                           "Allowed: " + "; ".join(allowed) + "." if allowed else
                           "Fix the request's parameters."),
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> Response:
        return error_response(
            request,
            DashboardError(
                500,
                "Unexpected error",
                f"{type(error).__name__}: {error}",
                "Reload the page; if it happens again, please report it with the dashboard's "
                "console output.",
            ),
        )

    # ---------------------------------------------------------------- assets

    @app.get("/assets/plotly.min.js", include_in_schema=False)
    def plotly_asset() -> Response:
        headers = {"Cache-Control": "public, max-age=86400"}
        if isinstance(plotly_js, Path):
            return FileResponse(plotly_js, media_type="text/javascript", headers=headers)
        return Response(plotly_js.read_bytes(), media_type="text/javascript", headers=headers)

    app.mount(
        "/static",
        StaticFiles(packages=[("learnscope.dashboard", "static")]),
        name="static",
    )

    # ---------------------------------------------------------------- JSON API

    @app.get("/api/runs")
    def api_runs() -> SafeJSONResponse:
        """All runs of the store, newest first."""
        with reader() as store:
            runs = runs_json(store)
        return SafeJSONResponse({"store": str(path), "poll_seconds": poll, "now": time.time(),
                                 "runs": runs}, headers={"Cache-Control": "no-store"})  # fmt: skip

    @app.get("/api/runs/{ref}")
    def api_run(ref: str) -> SafeJSONResponse:
        """One run (by id, unique id prefix or name) with its config, measures and layers."""
        with reader() as store:
            content = run_json(store, ref)
        return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})

    @app.get("/api/runs/{ref}/metrics")
    def api_metrics(
        ref: str, measure: MeasureQuery = None, since_step: SinceStepQuery = None
    ) -> SafeJSONResponse:
        """One measure of a run: steps, and per (probe, layer) the values at those steps."""
        with reader() as store:
            record = resolve(store, ref)
            run_id = record["id"]
            if measure is None:
                measure = _catalog(store.series(run_id))["default_measure"]
                if measure is None:
                    raise DashboardError(
                        404, "No measurements yet", f"Run {run_id} has no measurements yet.",
                        "Wait for its first measurement; the run page updates by itself.",
                    )  # fmt: skip
            try:
                frame = store.metrics(run_id, measure=measure, since_step=since_step)
            except ValueError as exc:
                raise DashboardError(
                    404, "Unknown measure", str(exc),
                    f"Choose one of the run's measures (GET /api/runs/{run_id} lists them).",
                ) from exc  # fmt: skip
            summary = _summary(record, assess_run(store, record))
        content = {"run": summary, "measure": measure, "since_step": since_step,
                   **_wide(frame)}  # fmt: skip
        return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})

    @app.get("/api/runs/{ref}/separation")
    def api_separation(
        ref: str, probe: ProbeQuery = None, since_step: SinceStepQuery = None
    ) -> SafeJSONResponse:
        """Fuzziness D_l per layer and the equi-separation fit per step, steps > since_step."""
        with reader() as store:
            record = resolve(store, ref)
            run_id = record["id"]
            series = store.series(run_id)
            if probe is None:
                probe = _separation_probe(series)
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
            summary = _summary(record, assess_run(store, record))
        content = {"run": summary, "probe": probe, "since_step": since_step,
                   **_separation(frame)}  # fmt: skip
        return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})

    @app.get("/api/runs/{ref}/trajectories")
    def api_trajectories(ref: str) -> SafeJSONResponse:
        """The run's weight-trajectory map: per network its steps, 2-D points and scores."""
        with reader() as store:
            record = resolve(store, ref)
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
            summary = _summary(record, assess_run(store, record))
        content = {"run": summary, **_trajectories(tmap)}
        return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})

    # ---------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def runs_page() -> HTMLResponse:
        runs: list[dict[str, Any]] = []
        problem: DashboardError | None = None
        try:
            with reader() as store:
                runs = runs_json(store)
        except DashboardError as exc:
            problem = exc
        if problem is not None:
            notice = _notice(problem.title, problem.detail, problem.hint, "error", "ls-error")
        elif not runs:
            notice = _notice(
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
        body = f"""<h1>Runs</h1>
{notice}
<form id="runs-form" action="/compare" method="get">
<table id="runs-table" class="runs"{" hidden" if not runs else ""}>
<thead>{RUNS_HEADER}</thead>
<tbody>{_runs_rows(runs)}</tbody>
</table>
<p class="actions"><button type="submit" id="compare-button"{" hidden" if not runs else ""}>
Compare selected runs</button>
<span class="muted small" id="runs-live">updates every {poll:g} s</span></p>
</form>"""
        return _page("Runs", "runs", body, {"poll_ms": poll_ms}, store=path,
                     status_code=problem.status if problem else 200)  # fmt: skip

    @app.get("/runs/{ref}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(ref: str, measure: PageMeasureQuery = None) -> HTMLResponse:
        with reader() as store:
            content = run_json(store, ref)
        run = content["run"]
        names = [m["name"] for m in content["measures"]]
        notice = ""
        chosen = content["default_measure"]
        if measure is not None and measure in names:
            chosen = measure
        elif measure is not None:
            notice = _notice(
                "Unknown measure", f"Run {run['id']} has no measure {measure!r}.",
                f"Showing {chosen!r} instead; pick another from the list.", "info",
            )  # fmt: skip
        mapped = content["trajectory_map"]
        if not names and run["status"] in ("failed", "diverged"):
            notice = _notice(
                f"Run {run['status']} before its first measurement",
                f"Run {run['id']} {run['status']} and has no measurements.",
                "Its stored error is shown above; fix the cause and start the run again.",
                "error", "ls-notice",
            )  # fmt: skip
        elif not names:
            notice = _notice(
                "No measurements yet", f"Run {run['id']} has no measurements yet"
                + (" (it holds a weight-trajectory map, shown below)." if mapped else "."),
                "This page shows them as soon as the run writes its first one.", "info",
                "ls-notice",
            )  # fmt: skip
        else:
            notice += '<div id="ls-notice" hidden></div>'  # for the page script's messages
        problem = _run_problem(run)
        options = "".join(
            f'<option value="{_e(m["name"])}"{" selected" if m["name"] == chosen else ""}>'
            f"{_e(m['name'])}{'' if m['per_layer'] else ' (model)'}</option>"
            for m in content["measures"]
        )
        config_text = json.dumps(run["config"], indent=2, sort_keys=True, default=str)
        separation = content["separation_probe"]
        body = f"""<h1 id="run-title">{_e(run["name"])}</h1>
<p class="muted" id="run-id">{_e(run["id"])}</p>
<dl class="summary" id="run-summary">
<div><dt>status</dt><dd data-key="status">{_status_badge(run)}</dd></div>
<div><dt>experiment</dt><dd data-key="experiment">{_e(run["experiment"] or "-")}</dd></div>
<div><dt>progress</dt><dd data-key="progress">{_e(_fmt_progress(run["progress"]))}</dd></div>
<div><dt>ETA</dt><dd data-key="eta">{_e(_fmt_duration(run["eta_seconds"]))}</dd></div>
<div><dt>last step</dt><dd data-key="last_step">{_e(_or_dash(run["last_step"]))}</dd></div>
<div><dt>measurements</dt><dd data-key="measurements">{_e(run["measurements"])}</dd></div>
<div><dt>last update</dt><dd data-key="updated">{_e(run["updated_at"])}</dd></div>
</dl>
{problem}
{notice}
<div id="trajectories"{"" if mapped else " hidden"}>
<section><h2 class="plot-title">weight trajectories</h2>
<div class="controls" id="trajectory-controls">
<span class="muted small" id="trajectory-about"></span>
<label id="trajectory-score-label" hidden>score <select id="trajectory-score"></select></label>
</div>
<div id="trajectory-notice" hidden></div>
<div id="trajectory-map" class="plot"></div></section>
</div>
<div class="controls">
<label>measure <select id="measure">{options}</select></label>
<label title="each layer's colours span its own minimum to maximum">
<input type="checkbox" id="per-layer-scale"> colour each layer on its own scale</label>
<a id="compare-link" href="/compare?runs={_e(run["id"])}">compare with other runs</a>
<span class="muted small" id="run-live">updates every {poll:g} s</span>
</div>
<section><h2 class="plot-title">layer x step</h2><div id="heatmap" class="plot"></div></section>
<section><h2 class="plot-title">per layer</h2><div id="lines" class="plot"></div></section>
<div id="separation"{"" if separation else " hidden"}>
<section><h2 class="plot-title">equi-separation: fuzziness D<sub>l</sub> per layer at the latest
step</h2><div id="equisep" class="plot"></div></section>
<section><h2 class="plot-title">separation dynamics</h2><div id="equisep-dynamics" class="plot">
</div></section>
</div>
<details><summary>config</summary><pre id="run-config">{_e(config_text)}</pre></details>"""
        config = {"poll_ms": poll_ms, "run_id": run["id"], "measure": chosen,
                  "separation_probe": separation, "trajectory_map": mapped}  # fmt: skip
        return _page(run["name"], "run", body, config, store=path, plotly=True)

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(
        runs: Annotated[list[str] | None, Query(description=QUERY_RULES["runs"])] = None,
        measure: PageMeasureQuery = None,
    ) -> HTMLResponse:
        refs = [part.strip() for item in runs or [] for part in item.split(",") if part.strip()]
        refs = list(dict.fromkeys(refs))
        if len(refs) > MAX_COMPARED_RUNS:
            raise DashboardError(
                422, "Too many runs", f"runs: {len(refs)} runs were asked to be compared.",
                f"Allowed: {QUERY_RULES['runs']}; pick fewer runs.",
            )  # fmt: skip
        with reader() as store:
            every = runs_json(store)
            chosen = [run_json(store, ref) for ref in refs]
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
        options = "".join(
            f'<option value="{_e(n)}"{" selected" if n == selected else ""}>{_e(n)}'
            f"{'' if counts[n] == len(chosen) else f' ({counts[n]} of {len(chosen)} runs)'}"
            "</option>"
            for n in names
        )
        boxes = "".join(
            f'<label class="pick"><input type="checkbox" name="runs" value="{_e(r["id"])}"'
            f"{' checked' if r['id'] in ids else ''}> {_e(r['name'])} "
            f'<span class="muted small">{_e(r["id"])}</span></label>'
            for r in every
        )
        if not every:
            notice = _notice("No runs yet", f"The store {path} has no runs yet.",
                             "Start a run; then pick runs to compare here.", "info")  # fmt: skip
        elif len(ids) < 2:
            notice = _notice(
                "Pick runs to compare",
                "Choose two or more runs below and press Compare.",
                "",
                "info",
            )
        else:
            notice = ""
        body = f"""<h1>Compare runs</h1>
{notice}
<form id="compare-form" action="/compare" method="get">
<div class="controls">
<label>measure <select id="measure" name="measure">{options}</select></label>
<label>layer (lines) <select id="layer"></select></label>
<span class="muted small" id="compare-live">updates every {poll:g} s</span>
</div>
<div id="compare-grid" class="grid"></div>
<section><h2 class="plot-title">one layer, all runs</h2><div id="compare-lines" class="plot">
</div></section>
<details{" open" if len(ids) < 2 else ""}><summary>runs to compare</summary>
<div class="picks">{boxes}</div>
<p><button type="submit">Compare</button></p>
</details>
</form>"""
        config = {
            "poll_ms": poll_ms,
            "runs": [{"id": c["run"]["id"], "name": c["run"]["name"]} for c in chosen],
            "measure": selected,
        }
        return _page("Compare runs", "compare", body, config, store=path, plotly=True)

    return app
