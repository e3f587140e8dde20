"""Measures of projected paths (points in the plane): length, start-to-end distance, and how far
from the snapshots a landscape is supported."""

from __future__ import annotations

from typing import Any

import numpy as np


def _points(coords: Any) -> np.ndarray:
    """``coords`` (an (n, 2) array or a list of them) as one (n, 2) float64 array."""
    if isinstance(coords, (list, tuple)) and coords and all(np.ndim(c) == 2 for c in coords):
        parts = list(coords)
    else:
        parts = [coords]
    try:
        points = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"coords must be an (n, 2) array of points or a list of them ({exc})") \
            from None
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(
            f"coords must be an (n, 2) array of points (or a list of them), got shape "
            f"{points.shape}"
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("coords has non-finite values (NaN or inf); every point must be finite")
    return points


def path_length(coords: Any) -> float:
    """Length of a projected path: the sum of the distances between consecutive points."""
    points = _points(coords)
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def start_to_end(coords: Any) -> float:
    """Straight (Euclidean) distance from the first to the last point of a projected path."""
    points = _points(coords)
    return float(np.linalg.norm(points[-1] - points[0]))


#: The support radius is this many times the typical distance between consecutive snapshots.
SUPPORT_STEPS = 2.0


def support_radius(coords: Any) -> float:
    """How far from a snapshot a landscape is drawn: :data:`SUPPORT_STEPS` (2) times the median
    distance between consecutive snapshots of the same network (over all networks); when
    every network stands still, 5% of the points' extent (1.0 when they have none)."""
    parts = list(coords) if isinstance(coords, (list, tuple)) else [coords]
    steps = np.concatenate([np.linalg.norm(np.diff(_points(p), axis=0), axis=1)
                            for p in parts])
    steps = steps[steps > 0]
    if steps.size:
        return SUPPORT_STEPS * float(np.median(steps))
    points = _points(parts)
    extent = float(np.max(points.max(axis=0) - points.min(axis=0)))
    return 0.05 * extent if extent > 0 else 1.0
