"""Opening the run store for one request: read-only, anew each time, closed at its end, with
every way it can fail turned into a :class:`DashboardError` that says what to do."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from learnscope.store import Store, StoreError

from .errors import DashboardError

__all__ = ["find_run", "read_store"]


@contextmanager
def read_store(path: Path) -> Iterator[Store]:
    """The store at ``path`` opened read-only (SQLite ``mode=ro``) for one request; a missing,
    unreadable or busy store becomes a 503 :class:`DashboardError` (pages retry by themselves).
    """
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


def find_run(store: Store, ref: str) -> dict[str, Any]:
    """The run ``ref`` names (id, unique id prefix or name), or a 404 :class:`DashboardError`."""
    try:
        return store.run(ref)
    except StoreError as exc:
        raise DashboardError(
            404, "Unknown run", str(exc), "Pick a run from the run list at /."
        ) from exc
