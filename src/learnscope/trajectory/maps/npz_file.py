"""The map file on disk: one ``.npz`` with a JSON header, written atomically, read back checked.

:func:`write_map_file` and :func:`read_map_file` know the container (format name, version,
header, atomic replace); :meth:`TrajectoryMap.save` / :meth:`TrajectoryMap.load` know which
arrays and header fields a map has.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from learnscope.trajectory.maps.validation import TrajectoryMapError

_FORMAT = "learnscope.trajectory-map"
_VERSION = 1


def write_map_file(path: str | os.PathLike[str], header: dict[str, Any],
                   arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` (JSON, after the format name and version) and ``arrays`` to ``path`` as
    one compressed ``.npz``, atomically (a temporary file, fsync, ``os.replace``); parent folders
    are created. Returns the path."""
    path = Path(path)
    header = {"format": _FORMAT, "version": _VERSION, **header}
    arrays = {"header": np.array(json.dumps(header)), **arrays}
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


def read_map_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of a map file written by :func:`write_map_file`.

    A missing file raises :class:`FileNotFoundError`; a file that is not a trajectory map (or
    one written by a newer learnscope) raises :class:`TrajectoryMapError`.
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
    return header, arrays
