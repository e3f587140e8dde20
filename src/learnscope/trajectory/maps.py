"""The drawable result of a weight-trajectory projection: a :class:`TrajectoryMap`.

A map holds, for each of several networks, the 2-D points that a projection (PCA, an
autoencoder, a SOM, t-SNE, ...) gives its parameter snapshots, the training steps of those
snapshots and any scores measured at them (accuracy, loss, ...), plus optionally a score
*landscape*: a score over a regular grid of the projected plane (:class:`Landscape`, made by
:func:`score_landscape`). Everything needed to draw the trajectories is in the map; the
projection itself is not (the map is plain arrays and JSON, no pickle).

File format
    :meth:`TrajectoryMap.save` writes one ``.npz`` file (``numpy.savez_compressed``, no pickled
    objects): the arrays ``steps_<i>`` (int64), ``coords_<i>`` (float64, shape (n_i, 2)) per
    network i, ``score_<k>_<i>`` (float64) per score k and network i, ``landscape_x``,
    ``landscape_y`` and ``landscape_values`` when there is a landscape, and ``header``: JSON
    text (a 0-d unicode array) with the format name and version, the network names, run ids,
    groups, the score names in order, ``trajectory``, ``projection``, the landscape's method and
    score, and ``meta``. The file is written to a temporary file next to the target and moved
    into place (``os.replace``), so a reader never sees half a map.

In a run store
    A map belongs to a run (usually the run that trained or projected the networks) and lives
    in that run's artifact folder of the probe :data:`MAP_PROBE` at step 0, as
    :data:`MAP_FILE`: :func:`save_map`, :func:`load_map`, :func:`has_map`, :func:`map_folder`.
    The folder may hold other files of the projection (e.g. ``projection.joblib``); this
    module never reads them.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from learnscope.store import StoreError

if TYPE_CHECKING:
    from learnscope.store import Store

__all__ = [
    "LANDSCAPE_METHODS",
    "MAP_FILE",
    "MAP_PROBE",
    "PATH_MEASURES",
    "SUPPORT_STEPS",
    "Landscape",
    "MapNotFoundError",
    "TrajectoryMap",
    "TrajectoryMapError",
    "has_map",
    "load_map",
    "map_file",
    "map_folder",
    "map_rows",
    "path_length",
    "save_map",
    "score_landscape",
    "start_to_end",
    "support_mask",
    "support_radius",
]

#: Probe name of the artifact folder that holds a run's trajectory map.
MAP_PROBE = "trajectory-map"
#: File name of the map inside that folder.
MAP_FILE = "map.npz"
#: The ways :func:`score_landscape` can fill a landscape.
LANDSCAPE_METHODS = ("interpolate", "evaluate")

_FORMAT = "learnscope.trajectory-map"
_VERSION = 1
#: Decoded weights held in memory at once by ``score_landscape(method="evaluate")`` (floats).
_DECODE_BUDGET = 2**24

_HOW_TO_MAKE = (
    "Make one with `learnscope run trajectories` (trains networks and projects their weight "
    "trajectories) or `learnscope project RUN...` (projects the weight snapshots "
    "of existing runs)."
)


class TrajectoryMapError(ValueError):
    """A trajectory map (or a landscape) is inconsistent, or a map file cannot be read."""


class MapNotFoundError(StoreError, FileNotFoundError):
    """A run has no trajectory map (a :class:`StoreError` and a :class:`FileNotFoundError`)."""


# --------------------------------------------------------------------------- validation helpers


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TrajectoryMapError(f"{what} must be a string, got {value!r}")
    return value


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TrajectoryMapError(f"{what} must be a list of strings, got {values!r}")
    return [_text(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _float_array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)  # a copy: the map owns its arrays
    except (TypeError, ValueError) as exc:
        raise TrajectoryMapError(f"{what} must be an array of numbers ({exc})") from None
    return array


def _step_array(value: Any, what: str) -> np.ndarray:
    raw = np.asarray(value)
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer)
                                 or np.issubdtype(raw.dtype, np.floating)):
        raise TrajectoryMapError(f"{what} must be integer training steps, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise TrajectoryMapError(f"{what} must be whole numbers (training steps), got {raw}")
    return np.array(raw, dtype=np.int64)


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types (checked)."""
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TrajectoryMapError(
                    f"meta{where} has the key {key!r}; meta keys must be strings (JSON)"
                )
            out[key] = _jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TrajectoryMapError(
        f"meta{where} is {type(value).__name__} {value!r}, which cannot be stored as JSON; "
        "use strings, numbers, booleans, None, lists and dicts"
    )


# --------------------------------------------------------------------------- the classes


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

        Parent folders are created. Returns the path. See the module docstring for the format.
        """
        path = Path(path)
        header = {
            "format": _FORMAT,
            "version": _VERSION,
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
        arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header))}
        for i in range(len(self.networks)):
            arrays[f"steps_{i}"] = self.steps[i]
            arrays[f"coords_{i}"] = self.coords[i]
            for k, values in enumerate(self.scores.values()):
                arrays[f"score_{k}_{i}"] = values[i]
        if self.landscape is not None:
            arrays["landscape_x"] = self.landscape.x
            arrays["landscape_y"] = self.landscape.y
            arrays["landscape_values"] = self.landscape.values
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, **arrays)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrajectoryMap:
        """Read a map written by :meth:`save`.

        A missing file raises :class:`FileNotFoundError`; a file that is not a trajectory map
        (or one written by a newer learnscope) raises :class:`TrajectoryMapError`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No trajectory map file at {path}.")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise TrajectoryMapError(
                f"{path} is not a readable trajectory map (.npz): {exc}"
            ) from exc
        if "header" not in arrays:
            raise TrajectoryMapError(
                f"{path} is an .npz file but not a learnscope trajectory map (no header)"
            )
        try:
            header = json.loads(str(arrays["header"]))
        except ValueError as exc:
            raise TrajectoryMapError(f"{path}: the map's header is not JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise TrajectoryMapError(f"{path} is an .npz file but not a learnscope trajectory map")
        version = header.get("version")
        if not isinstance(version, int) or version > _VERSION:
            raise TrajectoryMapError(
                f"{path} was written by a newer learnscope (trajectory map format version "
                f"{version}, this learnscope reads up to {_VERSION}); upgrade learnscope"
            )
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


# --------------------------------------------------------------------------- in a store


def map_folder(store: Store, run_id: str) -> Path:
    """The folder of ``run_id``'s trajectory map: ``store.artifact_dir(run_id, 0, MAP_PROBE)``.

    Created on demand in a writable store (as every artifact folder); a read-only store only
    returns the path. ``run_id`` must be an exact run id.
    """
    return store.artifact_dir(run_id, 0, MAP_PROBE)


def map_file(store: Store, run_id: str) -> Path:
    """The path of ``run_id``'s map file (it may not exist); creates no folder."""
    if store.read_only:
        return map_folder(store, run_id) / MAP_FILE
    from learnscope.store import Store as StoreClass

    # a writable store's artifact_dir creates the folder: ask a read-only view for the path
    store.run(run_id)  # an unknown run raises StoreError here, as artifact_dir would
    with StoreClass(store.path, read_only=True) as reader:
        return map_folder(reader, run_id) / MAP_FILE


def save_map(store: Store, run_id: str, tmap: TrajectoryMap) -> Path:
    """Write ``tmap`` as ``run_id``'s trajectory map (replacing an earlier one); returns its path.

    ``run_id`` must be an exact run id of ``store`` (:class:`StoreError` otherwise).
    """
    if not isinstance(tmap, TrajectoryMap):
        raise TypeError(f"save_map needs a TrajectoryMap, got {type(tmap).__name__}")
    return tmap.save(map_folder(store, run_id) / MAP_FILE)


def has_map(store: Store, run_id: str) -> bool:
    """Whether the run ``run_id`` (exact id) has a trajectory map; creates nothing."""
    return map_file(store, run_id).is_file()


def load_map(store: Store, run_ref: str) -> TrajectoryMap:
    """The trajectory map of the run ``run_ref`` (id, unique id prefix or name, as ``Store.run``).

    Raises :class:`StoreError` for an unknown run, :class:`MapNotFoundError` (a StoreError and a
    FileNotFoundError) when the run has no map, saying how to make one, and
    :class:`TrajectoryMapError` when the file is not a readable map.
    """
    record = store.run(run_ref)
    run_id = str(record["id"])
    path = map_file(store, run_id)
    if not path.is_file():
        raise MapNotFoundError(
            f"Run {run_id} ({record['name']}) has no trajectory map (no {MAP_FILE} in its "
            f"artifact folder {path.parent}). {_HOW_TO_MAKE}"
        )
    return TrajectoryMap.load(path)


# --------------------------------------------------------------------------- path measures


def path_length(coords: Any) -> float:
    """Length of a projected path: the sum of the distances between consecutive points."""
    points = _points(coords)
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def start_to_end(coords: Any) -> float:
    """Straight (Euclidean) distance from the first to the last point of a projected path."""
    points = _points(coords)
    return float(np.linalg.norm(points[-1] - points[0]))


#: Metric rows a map run stores per network (layer = network name, index = its position).
PATH_MEASURES = ("path_length", "start_to_end")


def map_rows(tmap: TrajectoryMap) -> list[tuple[str, int, str, float]]:
    """Metric rows ``(network, i, measure, value)`` of each network's :data:`PATH_MEASURES`,
    in the projected plane, for ``Store.write_measurement`` of the map run."""
    rows = []
    for i, (name, length, distance) in enumerate(
            zip(tmap.networks, tmap.path_lengths(), tmap.start_to_end(), strict=True)):
        rows += [(name, i, "path_length", length), (name, i, "start_to_end", distance)]
    return rows


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


# --------------------------------------------------------------------------- landscapes


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
