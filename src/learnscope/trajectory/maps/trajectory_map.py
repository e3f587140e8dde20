"""The drawable result of a projection: :class:`TrajectoryMap` and its score :class:`Landscape`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from learnscope.trajectory.maps.geometry import path_length, start_to_end
from learnscope.trajectory.maps.npz_file import read_map_file, write_map_file
from learnscope.trajectory.maps.validation import (
    TrajectoryMapError,
    _float_array,
    _jsonable,
    _step_array,
    _text,
    _texts,
)

#: The ways :func:`score_landscape` can fill a landscape.
LANDSCAPE_METHODS = ("interpolate", "evaluate")


@dataclass
class Landscape:
    """A score over a regular grid of the projected plane (see :func:`score_landscape`).

    ``values[j, i]`` is the score at ``(x[i], y[j])``; NaN where it is unknown (outside the
    convex hull of the snapshots for ``method="interpolate"``).
    """

    x: np.ndarray  # (gx,) grid coordinates along projected axis 1 (increasing)
    y: np.ndarray  # (gy,) along axis 2
    values: np.ndarray  # (gy, gx) score at each grid point, NaN where unknown
    method: str  # "interpolate" or "evaluate"
    score: str  # name of the score, e.g. "test_accuracy"

    def __post_init__(self) -> None:
        """Convert to float64 arrays and check shapes, order and names."""
        self.x = _float_array(self.x, "Landscape.x")
        self.y = _float_array(self.y, "Landscape.y")
        self.values = _float_array(self.values, "Landscape.values")
        for name, axis in (("x", self.x), ("y", self.y)):
            if axis.ndim != 1 or axis.size < 2:
                raise TrajectoryMapError(
                    f"Landscape.{name} must be a 1-D array of at least 2 grid coordinates, got "
                    f"shape {axis.shape}"
                )
            if not np.all(np.isfinite(axis)) or not np.all(np.diff(axis) > 0):
                raise TrajectoryMapError(
                    f"Landscape.{name} must be finite and strictly increasing, got {axis}"
                )
        want = (self.y.size, self.x.size)
        if self.values.shape != want:
            raise TrajectoryMapError(
                f"Landscape.values must have shape (len(y), len(x)) = {want}, got "
                f"{self.values.shape} (rows follow y, columns follow x)"
            )
        self.method = _text(self.method, "Landscape.method")
        if self.method not in LANDSCAPE_METHODS:
            raise TrajectoryMapError(
                f"Landscape.method must be one of {', '.join(LANDSCAPE_METHODS)}, got "
                f"{self.method!r}"
            )
        self.score = _text(self.score, "Landscape.score")

    def __eq__(self, other: object) -> bool:
        """Equal names and equal arrays (NaN equal to NaN)."""
        if not isinstance(other, Landscape):
            return NotImplemented
        return (self.method == other.method and self.score == other.score
                and all(np.array_equal(a, b, equal_nan=True) for a, b in
                        ((self.x, other.x), (self.y, other.y), (self.values, other.values))))


@dataclass
class TrajectoryMap:
    """2-D projection of several networks' weight trajectories, ready to draw.

    Per network i: ``steps[i]`` (n_i,) the training steps of its snapshots, ``coords[i]``
    (n_i, 2) their projected points, ``scores[name][i]`` (n_i,) a score per snapshot (NaN where
    missing). ``groups`` sorts networks into families drawn alike (e.g. ``"scratch"`` /
    ``"pretrained"``; all ``""`` for none). ``runs`` holds each network's run id (``""`` when it
    is not from a store). Arrays are converted to int64 / float64 copies and checked on
    construction; an inconsistent map raises :class:`TrajectoryMapError` saying what is wrong.
    ``meta`` must be JSON-able; numpy values and tuples in it are turned into JSON types.
    """

    networks: list[str]  # display name per network (e.g. run names)
    runs: list[str]  # run id per network ("" when not from a store)
    groups: list[str]  # group per network, e.g. "scratch" / "pretrained" (or all "")
    steps: list[np.ndarray]  # per network, (n_i,) int64 training steps of the snapshots
    coords: list[np.ndarray]  # per network, (n_i, 2) float64 projected points
    scores: dict[str, list[np.ndarray]]  # score name -> per network (n_i,) float64, NaN if missing
    trajectory: str  # which parameters ("all", a layer name, "hidden_mean", ...)
    projection: str  # description of the projection, e.g. "autoencoder (fit on first)"
    landscape: Landscape | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (config, fit_on, ...)

    def __post_init__(self) -> None:
        """Convert and check every field (see the class docstring)."""
        self.networks = _texts(self.networks, "networks")
        count = len(self.networks)
        if count == 0:
            raise TrajectoryMapError("a trajectory map needs at least one network, got none")
        for name in ("runs", "groups"):
            values = _texts(getattr(self, name), name)
            if len(values) != count:
                raise TrajectoryMapError(
                    f"{name} has {len(values)} entries but there are {count} networks "
                    f"({', '.join(self.networks)}); give one per network"
                    + (" ('' when not from a store)" if name == "runs" else " (or all '')")
                )
            setattr(self, name, values)
        for name in ("steps", "coords"):
            values = getattr(self, name)
            if isinstance(values, np.ndarray) or not isinstance(values, Sequence) \
                    or len(values) != count:
                found = f"{len(values)} entries" if isinstance(values, Sequence) else repr(values)
                raise TrajectoryMapError(
                    f"{name} must be a list with one array per network ({count}), got {found}"
                )
        self.steps = [_step_array(s, f"steps[{i}] ({self.networks[i]})")
                      for i, s in enumerate(self.steps)]
        self.coords = [_float_array(c, f"coords[{i}] ({self.networks[i]})")
                       for i, c in enumerate(self.coords)]
        for i, (name, steps, coords) in enumerate(
                zip(self.networks, self.steps, self.coords, strict=True)):
            if steps.ndim != 1 or steps.size == 0:
                raise TrajectoryMapError(
                    f"steps[{i}] ({name}) must be a non-empty 1-D array, got shape {steps.shape}"
                )
            if coords.shape != (steps.size, 2):
                raise TrajectoryMapError(
                    f"coords[{i}] ({name}) must have shape (n_snapshots, 2) = ({steps.size}, 2) "
                    f"to match its {steps.size} steps, got {coords.shape}"
                )
            if not np.all(np.isfinite(coords)):
                raise TrajectoryMapError(
                    f"coords[{i}] ({name}) has non-finite values (NaN or inf); a projection "
                    "must map every snapshot to a finite point"
                )
        if not isinstance(self.scores, Mapping):
            raise TrajectoryMapError(
                f"scores must be a dict of score name -> list of arrays, got {self.scores!r}"
            )
        scores: dict[str, list[np.ndarray]] = {}
        for key, per_network in self.scores.items():
            if not isinstance(key, str) or not key:
                raise TrajectoryMapError(f"score names must be non-empty strings, got {key!r}")
            if isinstance(per_network, np.ndarray) or not isinstance(per_network, Sequence) \
                    or len(per_network) != count:
                raise TrajectoryMapError(
                    f"scores[{key!r}] must be a list with one array per network ({count})"
                )
            scores[key] = []
            for i, values in enumerate(per_network):
                array = _float_array(values, f"scores[{key!r}][{i}] ({self.networks[i]})")
                if array.shape != self.steps[i].shape:
                    raise TrajectoryMapError(
                        f"scores[{key!r}][{i}] ({self.networks[i]}) must have one value per "
                        f"snapshot, shape {self.steps[i].shape}, got {array.shape} (NaN where "
                        "a score is missing)"
                    )
                scores[key].append(array)
        self.scores = scores
        self.trajectory = _text(self.trajectory, "trajectory")
        self.projection = _text(self.projection, "projection")
        if self.landscape is not None and not isinstance(self.landscape, Landscape):
            raise TrajectoryMapError(
                f"landscape must be a Landscape or None, got {type(self.landscape).__name__}"
            )
        if not isinstance(self.meta, Mapping):
            raise TrajectoryMapError(f"meta must be a dict, got {type(self.meta).__name__}")
        self.meta = _jsonable(self.meta, "")

    # ---------------------------------------------------------------- conveniences

    def __len__(self) -> int:
        """The number of networks."""
        return len(self.networks)

    @property
    def score_names(self) -> list[str]:
        """The score names, in order."""
        return list(self.scores)

    def all_coords(self) -> np.ndarray:
        """Every projected point of every network, stacked: shape (sum n_i, 2)."""
        return np.concatenate(self.coords, axis=0)

    def path_lengths(self) -> list[float]:
        """Per network, the length of its projected path (:func:`path_length`)."""
        return [path_length(c) for c in self.coords]

    def start_to_end(self) -> list[float]:
        """Per network, the straight distance from its first to its last projected point."""
        return [start_to_end(c) for c in self.coords]

    def all_scores(self, score: str) -> np.ndarray:
        """The values of ``score`` for every point, in the order of :meth:`all_coords`."""
        if score not in self.scores:
            known = ", ".join(self.scores) or "none"
            raise KeyError(f"the map has no score {score!r} (its scores: {known})")
        return np.concatenate(self.scores[score])

    def __eq__(self, other: object) -> bool:
        """Equal names, meta and landscape, and equal arrays (NaN equal to NaN, also in meta)."""
        if not isinstance(other, TrajectoryMap):
            return NotImplemented
        same = (
            self.networks == other.networks and self.runs == other.runs
            and self.groups == other.groups and self.trajectory == other.trajectory
            and self.projection == other.projection
            and json.dumps(self.meta, sort_keys=True) == json.dumps(other.meta, sort_keys=True)
            and self.landscape == other.landscape and list(self.scores) == list(other.scores)
        )
        if not same:
            return False
        pairs = list(zip(self.steps, other.steps, strict=True))
        pairs += list(zip(self.coords, other.coords, strict=True))
        for key, values in self.scores.items():
            pairs += list(zip(values, other.scores[key], strict=True))
        return all(a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True) for a, b in pairs)

    # ---------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the map to ``path`` (exactly that name; ``.npz`` by convention), atomically.

        Parent folders are created. Returns the path. See the package docstring for the format.
        """
        header = {
            "networks": self.networks,
            "runs": self.runs,
            "groups": self.groups,
            "scores": list(self.scores),
            "trajectory": self.trajectory,
            "projection": self.projection,
            "landscape": None if self.landscape is None else {
                "method": self.landscape.method, "score": self.landscape.score},
            "meta": self.meta,
        }
        arrays: dict[str, np.ndarray] = {}
        for i in range(len(self.networks)):
            arrays[f"steps_{i}"] = self.steps[i]
            arrays[f"coords_{i}"] = self.coords[i]
            for k, values in enumerate(self.scores.values()):
                arrays[f"score_{k}_{i}"] = values[i]
        if self.landscape is not None:
            arrays["landscape_x"] = self.landscape.x
            arrays["landscape_y"] = self.landscape.y
            arrays["landscape_values"] = self.landscape.values
        return write_map_file(path, header, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrajectoryMap:
        """Read a map written by :meth:`save`.

        A missing file raises :class:`FileNotFoundError`; a file that is not a trajectory map
        (or one written by a newer learnscope) raises :class:`TrajectoryMapError`.
        """
        header, arrays = read_map_file(path)
        try:
            count = len(header["networks"])
            names = list(header["scores"])
            landscape = None
            if header["landscape"] is not None:
                landscape = Landscape(
                    arrays["landscape_x"], arrays["landscape_y"], arrays["landscape_values"],
                    method=header["landscape"]["method"], score=header["landscape"]["score"],
                )
            return cls(
                networks=header["networks"],
                runs=header["runs"],
                groups=header["groups"],
                steps=[arrays[f"steps_{i}"] for i in range(count)],
                coords=[arrays[f"coords_{i}"] for i in range(count)],
                scores={name: [arrays[f"score_{k}_{i}"] for i in range(count)]
                        for k, name in enumerate(names)},
                trajectory=header["trajectory"],
                projection=header["projection"],
                landscape=landscape,
                meta=header.get("meta") or {},
            )
        except (KeyError, TypeError) as exc:
            raise TrajectoryMapError(
                f"{path} is an incomplete trajectory map (missing {exc}); write it again"
            ) from exc
        except TrajectoryMapError as exc:
            raise TrajectoryMapError(f"{path} holds an inconsistent trajectory map: {exc}") \
                from exc
