"""A run's trajectory map in a run store: where it lives, saving, finding and loading it, and the
metric rows a map run stores (:func:`map_rows`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from learnscope.store import StoreError
from learnscope.trajectory.maps.trajectory_map import TrajectoryMap

if TYPE_CHECKING:
    from learnscope.store import Store

#: Probe name of the artifact folder that holds a run's trajectory map.
MAP_PROBE = "trajectory-map"
#: File name of the map inside that folder.
MAP_FILE = "map.npz"

_HOW_TO_MAKE = (
    "Make one with `learnscope run trajectories` (trains networks and projects their weight "
    "trajectories) or `learnscope project RUN...` (projects the weight snapshots "
    "of existing runs)."
)


class MapNotFoundError(StoreError, FileNotFoundError):
    """A run has no trajectory map (a :class:`StoreError` and a :class:`FileNotFoundError`)."""


def map_folder(store: Store, run_id: str) -> Path:
    """The folder of ``run_id``'s trajectory map: ``store.artifact_dir(run_id, 0, MAP_PROBE)``.

    Created on demand in a writable store (as every artifact folder); a read-only store only
    returns the path. ``run_id`` must be an exact run id.
    """
    return store.artifact_dir(run_id, 0, MAP_PROBE)


def map_file(store: Store, run_id: str) -> Path:
    """The path of ``run_id``'s map file (it may not exist); creates no folder."""
    return store.artifact_path(run_id, 0, MAP_PROBE) / MAP_FILE


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
