"""Weight snapshots in the store: chunked, appendable binary files indexed in the database.

Layout
    The snapshots of one trajectory of one probe of one run live in
    ``<artifacts_root>/<run>/<probe>/snapshots/<trajectory>/chunk_00000.bin``, ``chunk_00001.bin``,
    ...: raw little-endian float32 or float16 values, one snapshot (``size`` values) per row,
    rows in the order they were written. A chunk holds at most :func:`rows_per_chunk` rows
    (about :data:`CHUNK_BYTES` bytes), so files stay a manageable size however long the run.
    The database table ``snapshots`` maps every ``(run, probe, trajectory, step)`` to its
    ``(chunk, row)``; the files carry no header and nothing else.

Appending and interruptions
    The values are written (and fsync'ed) first, at the position after the last *indexed* row,
    truncating whatever an interrupted write left beyond it; the index rows follow in the same
    database transaction as the measurement's metric rows. A process killed at any point
    therefore leaves either a complete, indexed snapshot or bytes that no index row points to
    and that the next append overwrites. Measuring a step again (a resumed run re-measures the
    step it was killed in) appends a new row and points the index at it: readers never see
    the same step twice.

Memory
    Nothing is kept in memory between measurements; :meth:`SnapshotSeries.array` reads the rows
    asked for through ``numpy.memmap`` and :meth:`SnapshotSeries.batches` yields them a batch
    at a time, for projections that fit incrementally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StoreError
from .layout import chunk_file, trajectory_folder_name

#: Storage types of snapshot values and their on-disk (little-endian) numpy dtypes.
DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}

#: Target size of one chunk file; a chunk holds at least one snapshot however large.
CHUNK_BYTES = 64 * 2**20


def check_dtype(dtype: str) -> np.dtype:
    """The on-disk dtype of `dtype` ("float32" or "float16"), or a ValueError saying so."""
    if dtype not in DTYPES:
        raise ValueError(
            f"snapshot dtype must be one of {sorted(DTYPES)}, got {dtype!r}; float16 halves the "
            "disk use at about 3 significant digits"
        )
    return DTYPES[dtype]


def rows_per_chunk(size: int, dtype: str) -> int:
    """How many snapshots of `size` values one chunk file holds."""
    return max(1, CHUNK_BYTES // (size * DTYPES[dtype].itemsize))


#: The folder name of a trajectory (see :mod:`learnscope.store.layout`).
folder_name = trajectory_folder_name

#: The path of a chunk file (see :mod:`learnscope.store.layout`).
chunk_path = chunk_file


def write_row(folder: Path, chunk: int, row: int, values: np.ndarray) -> None:
    """Write one snapshot at (`chunk`, `row`), dropping anything after that row, and fsync."""
    folder.mkdir(parents=True, exist_ok=True)
    path = chunk_path(folder, chunk)
    data = np.ascontiguousarray(values).tobytes()
    offset = row * len(data)
    with open(path, "r+b" if path.exists() else "w+b") as file:
        file.truncate(offset)  # whatever an interrupted append left after the indexed rows
        file.seek(offset)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def as_snapshot(values: object, dtype: str, what: str) -> np.ndarray:
    """`values` as a flat array of the on-disk dtype; clear errors for anything else."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"snapshot {what!r} must be a non-empty 1-D array of parameter values, got shape "
            f"{array.shape}; flatten the parameters first (torch.nn.utils.parameters_to_vector)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"snapshot {what!r} must hold floating-point values, got {array.dtype}")
    return array.astype(check_dtype(dtype), copy=False)


@dataclass
class SnapshotSeries:
    """The stored snapshots of one trajectory of one run, in step order (values on disk).

    Attributes:
        run, probe, trajectory: what they are snapshots of.
        steps: (n,) int64 training steps, increasing.
        size: values per snapshot.
        dtype: storage type, "float32" or "float16".
        folder: the trajectory's folder of chunk files.
        chunks, rows: (n,) position of each snapshot.
    """

    run: str
    probe: str
    trajectory: str
    steps: np.ndarray
    size: int
    dtype: str
    folder: Path
    chunks: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return (
            f"SnapshotSeries(run={self.run!r}, trajectory={self.trajectory!r}, "
            f"{len(self)} snapshots x {self.size} {self.dtype})"
        )

    def _select(self, steps: Sequence[int] | None) -> np.ndarray:
        if steps is None:
            return np.arange(len(self.steps))
        wanted = np.asarray(list(steps), dtype=np.int64)
        if not len(self):
            found = np.zeros(len(wanted), dtype=bool)
            where = np.zeros(len(wanted), dtype=np.int64)
        else:
            where = np.minimum(np.searchsorted(self.steps, wanted), len(self) - 1)
            found = self.steps[where] == wanted
        if not found.all():
            raise KeyError(
                f"no snapshot of {self.trajectory!r} at step(s) {wanted[~found].tolist()[:20]}; "
                f"stored steps: {self.steps.tolist()[:20]}{' ...' if len(self) > 20 else ''}"
            )
        return where

    def array(self, steps: Sequence[int] | None = None, dtype: str = "float32") -> np.ndarray:
        """The snapshots (all, or those at `steps`) as an (n, size) array in memory."""
        index = self._select(steps)
        out = np.empty((len(index), self.size), dtype=np.dtype(dtype))
        itemsize = DTYPES[self.dtype].itemsize
        for chunk in np.unique(self.chunks[index]):
            path = chunk_path(self.folder, int(chunk))
            mine = np.flatnonzero(self.chunks[index] == chunk)
            needed = (int(self.rows[index][mine].max()) + 1) * self.size * itemsize
            try:
                length = path.stat().st_size
            except FileNotFoundError:
                length = -1
            if length < needed:
                found = "is missing" if length < 0 else f"has {length} bytes, {needed} needed"
                raise StoreError(
                    f"The snapshot file {path} {found}: the artifact folder was changed or "
                    "copied incompletely. Restore it from the original store folder."
                )
            values = np.memmap(path, dtype=DTYPES[self.dtype], mode="r",
                               shape=(length // (self.size * itemsize), self.size))
            out[mine] = values[self.rows[index][mine]]
            del values
        return out

    def batches(self, batch_size: int = 256, dtype: str = "float32"
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (steps, values) batches of at most `batch_size` snapshots, in step order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            steps = self.steps[start:start + batch_size]
            yield steps, self.array(steps.tolist(), dtype=dtype)
