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
    package never reads them.

One module per job: :mod:`.trajectory_map` (the map and its landscape),
:mod:`.validation` (field checks), :mod:`.npz_file` (the file container), :mod:`.geometry`
(path measures), :mod:`.landscape` (computing landscapes) and :mod:`.in_store` (maps in a run
store). Everything public is importable from this package.
"""

from learnscope.trajectory.maps.geometry import (
    SUPPORT_STEPS,
    path_length,
    start_to_end,
    support_radius,
)
from learnscope.trajectory.maps.in_store import (
    MAP_FILE,
    MAP_PROBE,
    PATH_MEASURES,
    MapNotFoundError,
    has_map,
    load_map,
    map_file,
    map_folder,
    map_rows,
    save_map,
)
from learnscope.trajectory.maps.landscape import score_landscape, support_mask
from learnscope.trajectory.maps.trajectory_map import LANDSCAPE_METHODS, Landscape, TrajectoryMap
from learnscope.trajectory.maps.validation import TrajectoryMapError

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
