"""A local, read-only web dashboard over a learnscope run store.

``learnscope dashboard --store runs/learnscope.db`` serves it at http://127.0.0.1:8765/;
:func:`create_app` builds the FastAPI application for use in other servers or tests. It needs
the ``dashboard`` extra (``pip install 'learnscope[dashboard]'``: FastAPI, uvicorn, Plotly),
which is imported only when the dashboard is used. See docs/dashboard.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
