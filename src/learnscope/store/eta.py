"""Estimated time to completion of running runs (``eta_seconds``; see "Estimated time to
completion" in :mod:`learnscope.store.db`)."""

from __future__ import annotations

import math
import sqlite3

from .provenance import parse_time

#: Number of recent measurements (per probe) that ``eta_seconds`` is estimated from.
ETA_WINDOW = 20

#: An interval between measurements this many times slower per step than the median of the
#: others counts as dead time (a resume after the process was gone) for ``eta_seconds``.
ETA_GAP_FACTOR = 10.0


def _seconds_per_step(points: list[tuple[int, float]]) -> float:
    """Seconds per step from ``(step, time)`` points sorted by step, dead time left out.

    NaN when there is no interval with a positive step difference and a non-negative time
    difference.
    """
    intervals = [
        (s2 - s1, t2 - t1)
        for (s1, t1), (s2, t2) in zip(points, points[1:], strict=False)
        if s2 > s1 and t2 >= t1
    ]
    if not intervals:
        return math.nan
    rates = [dt / ds for ds, dt in intervals]
    kept = []
    for i, interval in enumerate(intervals):
        others = rates[:i] + rates[i + 1 :]
        if others:
            others.sort()
            mid = len(others) // 2
            median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
            if rates[i] > ETA_GAP_FACTOR * median and median > 0:
                continue  # dead time: the process was gone before a resume
        kept.append(interval)
    steps = sum(ds for ds, _ in kept)
    return sum(dt for _, dt in kept) / steps


_RECENT_SQL = """
SELECT run, probe, step, completed_at FROM (
    SELECT run, probe, step, completed_at,
           row_number() OVER (PARTITION BY run, probe ORDER BY step DESC) AS k
    FROM measurements WHERE run IN ({marks})
) WHERE k <= ? ORDER BY run, probe, step
"""


def _eta_seconds(
    conn: sqlite3.Connection, runs: list[tuple[str, str, int | None, int | None]]
) -> dict[str, float]:
    """``eta_seconds`` (see the module docstring) for ``(id, status, total, last_step)`` rows."""
    result: dict[str, float] = {}
    estimate = []
    for run_id, status, total, last in runs:
        if status == "finished":
            result[run_id] = 0.0
        elif status != "running" or total is None or total <= 0:
            result[run_id] = math.nan
        elif last is not None and last >= total:
            result[run_id] = 0.0
        else:
            result[run_id] = math.nan
            estimate.append((run_id, total, last))
    if not estimate:
        return result
    windows: dict[str, dict[str, list[tuple[int, float]]]] = {}
    ids = [run_id for run_id, _, _ in estimate]
    sql = _RECENT_SQL.format(marks=", ".join("?" * len(ids)))
    for run_id, probe, step, completed_at in conn.execute(sql, (*ids, ETA_WINDOW)):
        moment = parse_time(completed_at)
        if moment is not None:
            windows.setdefault(run_id, {}).setdefault(probe, []).append((int(step), moment))
    for run_id, total, last in estimate:
        probes = windows.get(run_id, {})
        if not probes:
            continue
        # the window that spans the most steps (then: the most measurements; then: by name)
        _, _, _, points = max((p[-1][0] - p[0][0], len(p), name, p) for name, p in probes.items())
        rate = _seconds_per_step(points)
        if not math.isnan(rate):
            done = last if last is not None else 0
            result[run_id] = max(total - done, 0) * rate
    return result
