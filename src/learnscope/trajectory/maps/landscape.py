"""Computing score landscapes over the projected plane (:func:`score_landscape`) and where they
are supported by snapshots (:func:`support_mask`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from learnscope.trajectory.maps.geometry import _points, support_radius
from learnscope.trajectory.maps.trajectory_map import LANDSCAPE_METHODS, Landscape

#: Decoded weights held in memory at once by ``score_landscape(method="evaluate")`` (floats).
_DECODE_BUDGET = 2**24


def support_mask(landscape: Landscape, coords: Any, radius: float | None = None) -> np.ndarray:
    """Booleans shaped like ``landscape.values``: grid points within ``radius`` (default
    :func:`support_radius` of ``coords``) of at least one snapshot. The landscape is drawn
    only there: farther away no snapshot supports it (an interpolation bridges the gaps of
    the convex hull, a decoder extrapolates)."""
    from scipy.spatial import cKDTree

    points = _points(coords)
    radius = support_radius(coords) if radius is None else float(radius)
    mesh_x, mesh_y = np.meshgrid(landscape.x, landscape.y)
    grid = np.column_stack([mesh_x.ravel(), mesh_y.ravel()])
    distance, _ = cKDTree(points).query(grid)
    return (distance <= radius).reshape(landscape.values.shape)


def _grid_axis(low: float, high: float, span: float, margin: float, resolution: int) -> np.ndarray:
    extra = margin * span
    return np.linspace(low - extra, high + extra, resolution)


def _grid(points: np.ndarray, resolution: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Regular grid axes over the bounding box of ``points`` plus ``margin`` of its extent.

    An axis without extent (all points share that coordinate) borrows the other axis's extent,
    or 1.0 when both have none, so the grid never collapses.
    """
    low, high = points.min(axis=0), points.max(axis=0)
    extent = high - low
    fallback = float(extent.max()) if extent.max() > 0 else 1.0
    spans = [float(e) if e > 0 else fallback for e in extent]
    axes = []
    for d in range(2):
        if extent[d] > 0:
            axes.append(_grid_axis(low[d], high[d], spans[d], margin, resolution))
        else:  # no extent: centre a window of the fallback size on the points
            half = 0.5 * spans[d] * (1 + 2 * margin)
            axes.append(np.linspace(low[d] - half, high[d] + half, resolution))
    return axes[0], axes[1]


def score_landscape(
    coords: Any,
    scores: Any = None,
    *,
    resolution: int = 60,
    margin: float = 0.1,
    method: str = "interpolate",
    decode: Callable[[np.ndarray], Any] | None = None,
    evaluate: Callable[[np.ndarray], float] | None = None,
    score: str = "score",
) -> Landscape:
    """A score over a regular grid of the projected plane, as a :class:`Landscape`.

    The grid covers the bounding box of all ``coords`` (an (n, 2) array, or a list of per-network
    arrays such as ``TrajectoryMap.coords``) widened by ``margin`` times its extent on each side,
    with ``resolution`` points per axis.

    ``method="interpolate"``: ``scores`` (n,) (or a list of per-network arrays, e.g.
    ``tmap.scores["test_accuracy"]``) are interpolated linearly (``scipy.interpolate.griddata``)
    inside the convex hull of the points; grid points outside it are NaN (no extrapolation:
    nothing is known there). NaN scores are left out. Needs at least 3 points with a score that
    do not lie on one line.

    ``method="evaluate"``: the true score of the network at every grid point:
    ``decode(points)`` maps an (m, 2) array of grid points back to weights, (m, n_params) (e.g. a
    projection's ``inverse_transform``), and ``evaluate(weights)`` returns the score of one
    weight vector (n_params,). This costs ``resolution**2`` evaluations (3,600 at the default
    resolution; each typically a pass over a test set), so start with a coarse grid. Grid points
    are decoded in batches (about 2**24 numbers at a time). Progress is reported into an active
    ``learnscope.progress`` display. ``scores`` is not used.

    ``score`` names the score (shown on colour bars). Raises :class:`ValueError` for bad inputs.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) \
            or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2 (grid points per axis), got "
                         f"{resolution!r}")
    resolution = int(resolution)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) \
            or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (a fraction of the points' "
                         f"extent), got {margin!r}")
    if method not in LANDSCAPE_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, LANDSCAPE_METHODS))}, got "
                         f"{method!r}")
    if not isinstance(score, str) or not score:
        raise ValueError(f"score must be a non-empty name, got {score!r}")
    points = _points(coords)
    gx, gy = _grid(points, resolution, float(margin))
    if method == "interpolate":
        if decode is not None or evaluate is not None:
            raise ValueError("decode and evaluate are only used by method='evaluate'; "
                             "method='interpolate' interpolates the given scores")
        values = _interpolate(points, scores, gx, gy)
    else:
        if decode is None or evaluate is None or not callable(decode) or not callable(evaluate):
            raise ValueError("method='evaluate' needs decode (grid points (m, 2) -> weights "
                             "(m, n_params), e.g. a projection's inverse_transform) and "
                             "evaluate (weights (n_params,) -> score) as functions")
        values = _evaluate(gx, gy, decode, evaluate, score)
    return Landscape(gx, gy, values, method=method, score=score)


def _interpolate(points: np.ndarray, scores: Any, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    from scipy.interpolate import griddata
    from scipy.spatial import QhullError

    if scores is None:
        raise ValueError("method='interpolate' needs scores: one value per point of coords")
    if isinstance(scores, (list, tuple)) and scores and all(np.ndim(s) == 1 for s in scores):
        values = np.concatenate([np.asarray(s, dtype=np.float64) for s in scores])
    else:
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape != (points.shape[0],):
        raise ValueError(f"scores must have one value per point: {points.shape[0]} points but "
                         f"{values.size} scores")
    known = np.isfinite(values)
    inside, known_values = points[known], values[known]
    unique = np.unique(inside, axis=0)
    if unique.shape[0] < 3:
        raise ValueError(
            f"interpolating a landscape needs at least 3 distinct points with a finite score, "
            f"got {unique.shape[0]} (of {points.shape[0]} points, {int((~known).sum())} without "
            "a score); record more snapshots or use method='evaluate'"
        )
    centred = unique - unique.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    if singular[1] <= 1e-12 * max(singular[0], 1e-300):
        raise ValueError(
            "interpolating a landscape needs points that span an area, but all points with a "
            "score lie on one line; use method='evaluate' to score a grid around them"
        )
    mesh_x, mesh_y = np.meshgrid(gx, gy)
    try:
        return griddata(inside, known_values, (mesh_x, mesh_y), method="linear",
                        fill_value=np.nan)
    except QhullError as exc:  # pragma: no cover - degenerate inputs are caught above
        raise ValueError(f"the points cannot be triangulated for interpolation ({exc})") from exc


def _evaluate(gx: np.ndarray, gy: np.ndarray, decode: Callable, evaluate: Callable,
              score: str) -> np.ndarray:
    mesh_x, mesh_y = np.meshgrid(gx, gy)
    grid = np.column_stack([mesh_x.ravel(), mesh_y.ravel()])
    total = grid.shape[0]
    out = np.full(total, np.nan)
    from learnscope import progress as display

    reporter = display.current()
    task = None
    if reporter is not None:
        task = reporter.task(f"landscape: {score} at {total} grid points", total=total,
                             transient=True)
    done = 0
    batch = 1  # the first batch tells the number of parameters
    while done < total:
        part = grid[done:done + batch]
        weights = np.asarray(decode(part))
        if weights.ndim != 2 or weights.shape[0] != part.shape[0]:
            raise ValueError(f"decode must return one weight vector per grid point, shape "
                             f"({part.shape[0]}, n_params), got {weights.shape}")
        for k, vector in enumerate(weights):
            try:
                out[done + k] = float(evaluate(vector))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"evaluate must return one number per weight vector ({exc})") \
                    from exc
        done += part.shape[0]
        if task is not None:
            task.update(completed=done)
        batch = max(1, _DECODE_BUDGET // max(1, weights.shape[1]))
    if task is not None:
        task.finish()
    return out.reshape(gy.size, gx.size)
