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
``/api/runs/{run}/training?since_step=S``           the run's training curves (loss, accuracy,
                                                    lr; ``format=csv``), see :mod:`.training`
``/api/run-table?q=&experiment=&status=&where=``    the run list as a table (filtered, sorted,
                                                    grouped, paged), see :mod:`.run_table`
``/api/compare?runs=a&runs=b&measure=M&layer=L``    runs lined up by layer index, seeds as
                                                    bands (``since=`` for live updates), see
                                                    :mod:`.compare`

It trusts no request: only those whose ``Host`` header names the loopback interface
(:data:`.hosts.LOCAL_HOSTS`) or a host given to :func:`create_app` are answered (others get
400, so a DNS-rebinding web page cannot read the API), and every query parameter has bounds (a
value outside them gets 422 with what is allowed, see :data:`.params.QUERY_RULES`).

This module only assembles the app. Where the rest is: :mod:`.hosts` (the ``Host`` check),
:mod:`.params` (query parameters and their bounds), :mod:`.settings` (what the app was started
with, handed to routes as a dependency), :mod:`.store_reader` (opening the store for one
request), :mod:`.payloads` (the JSON), :mod:`.templates` (the HTML), :mod:`.routes_api` and
:mod:`.routes_pages` (the endpoints and pages), :mod:`.error_handlers` (how failures are
answered), :mod:`.assets` (scripts and style sheets).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI

import learnscope

from .assets import add_asset_routes, plotly_js
from .error_handlers import install_error_handlers
from .errors import DashboardError
from .hosts import LOCAL_HOSTS, AllowedHosts, checked_allowed_hosts, host_name
from .payloads import SafeJSONResponse
from .routes_api import add_api_routes
from .routes_pages import add_page_routes
from .settings import DashboardSettings

__all__ = ["LOCAL_HOSTS", "DashboardError", "create_app", "host_name"]


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
    allowed_hosts = checked_allowed_hosts(allowed_hosts)
    script = plotly_js()
    if not script.is_file():
        raise RuntimeError(
            f"plotly.min.js is missing from the installed plotly package ({script}); "
            "reinstall it with: pip install 'learnscope[dashboard]'"
        )
    settings = DashboardSettings(Path(store_path).expanduser().resolve(), float(poll_seconds))
    app = FastAPI(
        title="learnscope dashboard",
        version=learnscope.__version__,
        docs_url=None,  # the interactive docs load their scripts from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.store_path = settings.store_path
    app.state.poll_seconds = settings.poll_seconds
    app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    install_error_handlers(app)
    add_asset_routes(app)
    add_api_routes(app)
    add_page_routes(app)
    return app
