"""One run of a sweep in this process: what every local worker and Ray task calls."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from learnscope.threads import use_threads

from .results import SweepResult, describe_error


def _mark_failed(store: str, name: str, error: str, *, pid: int | None) -> str | None:
    """Mark the latest run ``name`` failed if it is still ``running``; its id (or None).

    With ``pid``, only a run last written by that process of this host is touched (the
    worker's own run). Never raises: the failure being reported matters more.
    """
    from learnscope.store import open as open_store

    try:
        with open_store(store) as s:
            runs = s.runs()
            if runs.empty:
                return None
            mine = runs[runs["name"] == name]
            if pid is not None:
                same = (mine["pid"] == pid).fillna(False) & (mine["host"] == socket.gethostname())
                mine = mine[same.astype(bool)]
            if mine.empty:
                return None
            row = mine.iloc[-1]
            if row["status"] in ("running", "interrupted"):
                s.set_status(str(row["id"]), "failed", error=error)
            return str(row["id"])
    except Exception:  # noqa: BLE001 - best effort while reporting another failure
        return None


def run_spec(spec: Mapping[str, Any] | Any, store: str | os.PathLike[str], *,
             device: str | None = None, threads: int | None = None,
             rerun: bool = False) -> SweepResult:
    """Execute one run in this process (what every sweep worker and Ray task calls).

    ``spec``: a RunSpec or its fields as a dict (``dataclasses.asdict``); ``device`` replaces
    the spec's device when given; ``threads`` sets torch's intra-op threads. A run that raises
    is returned as ``failed`` (and marked failed in the store when it had started) instead of
    raising, so one bad run never stops a sweep.
    """
    from learnscope.experiments.presets import RunSpec, execute

    if threads is not None:
        use_threads(int(threads))
    if isinstance(spec, Mapping):
        spec = RunSpec(**spec)
    if device is not None:
        spec = replace(spec, device=device)
    start = time.monotonic()
    notes: list[str] = []
    try:
        run_id, status = execute(spec, store, rerun=rerun, notify=notes.append)
    except Exception as error:  # noqa: BLE001 - reported as the run's outcome
        text = describe_error(error)
        run_id = _mark_failed(str(store), spec.name, text, pid=os.getpid())
        return SweepResult(spec.name, run_id, "failed", text, spec.device,
                           time.monotonic() - start, traceback.format_exc())
    if status == "busy":  # another live process trains it
        return SweepResult(spec.name, run_id, "skipped", notes[-1] if notes else None,
                           spec.device, time.monotonic() - start)
    return SweepResult(spec.name, run_id, status, None, spec.device, time.monotonic() - start)


# --------------------------------------------------------------------------- local workers
#
# The local pool is a handful of spawned processes, each fed one run at a time over its own pipe.
# Whatever happens to the sweep's process, no worker outlives it by more than a few seconds:
# - the sweep ends every worker in a `finally` (SIGTERM to the worker's process group, SIGKILL
#   after WORKER_STOP_SECONDS), and turns SIGTERM / SIGHUP into the same KeyboardInterrupt as
#   Ctrl-C while it runs;
# - every worker watches its parent (PARENT_POLL_SECONDS): once the sweep's process is gone
#   (even SIGKILLed, when no `finally` runs) it stops its run as Ctrl-C would and exits;
# - a run is handed to a worker only when that worker is free: nothing is queued ahead, so
#   nothing is left to start after the sweep stopped.
# A worker stopped this way raises KeyboardInterrupt in its run, so the run is left interrupted
# in the store and the next sweep resumes it.
