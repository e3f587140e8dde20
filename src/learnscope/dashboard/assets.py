"""The files the pages load, all served by the dashboard itself (no CDN): Plotly's script from
the installed plotly package and the dashboard's own script and style sheet (``static/``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["add_asset_routes", "plotly_js", "plotly_version"]


def plotly_js() -> Any:
    """The ``plotly.min.js`` that ships inside the installed plotly package."""
    return resources.files("plotly") / "package_data" / "plotly.min.js"


def plotly_version() -> str:
    """The installed plotly's version (pages ask for its script with it, to bust caches)."""
    try:
        import plotly

        return str(plotly.__version__)
    except ImportError:  # pragma: no cover - checked by create_app
        return "0"


def plotly_asset() -> Response:
    """Plotly's script, cached by browsers for a day (its URL carries the version)."""
    script = plotly_js()
    headers = {"Cache-Control": "public, max-age=86400"}
    if isinstance(script, Path):
        return FileResponse(script, media_type="text/javascript", headers=headers)
    return Response(script.read_bytes(), media_type="text/javascript", headers=headers)


def add_asset_routes(app: FastAPI) -> None:
    """Serve Plotly's script at ``/assets/plotly.min.js`` and ``static/`` at ``/static``."""
    app.add_api_route("/assets/plotly.min.js", plotly_asset, methods=["GET"],
                      include_in_schema=False)  # fmt: skip
    app.mount(
        "/static",
        StaticFiles(packages=[("learnscope.dashboard", "static")]),
        name="static",
    )
