"""Runs as long-form tables: a pandas frame, CSV and Parquet files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from learnscope.exports._common import (
    RunsLike,
    StoreLike,
    atomic_file,
    opened,
    require,
    resolve_runs,
)
from learnscope.store import Store

if TYPE_CHECKING:
    import pandas as pd

#: Columns of every exported table, in this order.
COLUMNS = [
    "run", "run_name", "experiment", "step", "epoch", "probe", "layer", "layer_index",
    "measure", "value",
]  # fmt: skip


def _names(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else (None if value is None else list(value))


def frame_of(
    store: Store,
    records: list[dict],
    measures: list[str] | None,
    layers: list[str] | None,
    probe: str | None,
) -> pd.DataFrame:
    """The long-form table of the runs `records` (see `to_frame`)."""
    import pandas as pd

    if not records:
        return pd.DataFrame({column: [] for column in COLUMNS})
    frames = []
    for record in records:
        try:
            frame = store.metrics(record["id"], layer=layers, measure=measures, probe=probe)
        except ValueError:
            if len(records) == 1:
                raise  # the store's message lists what the run has
            # several runs: a name only needs to occur in one of them (checked below)
            frame = _filtered(store.metrics(record["id"]), measures, layers, probe)
        frame.insert(1, "run_name", record["name"])
        frame.insert(2, "experiment", record["experiment"])
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    if len(records) > 1:
        _check_present(store, records, frame, measures, layers, probe)
    return frame[COLUMNS]


def _filtered(frame, measures, layers, probe):
    if measures is not None:
        frame = frame[frame["measure"].isin(measures)]
    if layers is not None:
        frame = frame[frame["layer"].isin(layers)]
    if probe is not None:
        frame = frame[frame["probe"] == probe]
    return frame.reset_index(drop=True)


def _check_present(store, records, frame, measures, layers, probe) -> None:
    """Raise ValueError for a requested name that occurs in none of the runs."""
    wanted = {"measure": measures, "layer": layers, "probe": [probe] if probe else None}
    everything = None
    for column, names in wanted.items():
        if names is None:
            continue
        if everything is None:
            import pandas as pd

            everything = pd.concat([store.metrics(r["id"]) for r in records])
        available = sorted(set(everything[column]))
        missing = [name for name in names if name not in set(available)]
        if missing:
            runs = ", ".join(r["id"] for r in records)
            raise ValueError(
                f"Unknown {column} {', '.join(map(repr, missing))} in runs {runs}. "
                f"Available {column}s: {', '.join(available)}."
            )


def to_frame(
    store: StoreLike,
    run: RunsLike,
    measures: str | list[str] | None = None,
    layers: str | list[str] | None = None,
    probe: str | None = None,
) -> pd.DataFrame:
    """The values of one run (or several) in long form, one row per value.

    Columns: run (id), run_name, experiment, step, epoch, probe, layer, layer_index, measure,
    value; rows ordered by run (in the order given), step, probe, layer_index, measure.

    Args:
        store: an open `Store`, or the path of an existing store.
        run: run id, unique id prefix or name; a list of them; or None for every run.
        measures, layers: keep only these names (a name unknown to every selected run raises
            ValueError listing the available ones).
        probe: keep only this probe's values (e.g. "patterns", or "train" for logged scalars).

    Model-level scalars logged with `Scope.log` (loss, accuracy, ...) have layer "model" and
    layer_index -1. NaN values (e.g. `*_since_last` at the first measurement) are kept as NaN.
    """
    with opened(store) as s:
        return frame_of(s, resolve_runs(s, run), _names(measures), _names(layers), probe)


def write_frame(frame: pd.DataFrame, path: str | os.PathLike, fmt: str, overwrite: bool) -> Path:
    """Write `frame` as CSV or Parquet to `path`, atomically (see `atomic_file`)."""
    if fmt == "parquet":
        require("pyarrow", "Parquet export", "parquet")
    elif fmt != "csv":
        raise ValueError(f"unknown table format {fmt!r}; use 'csv' or 'parquet'")
    path = Path(path).expanduser()
    with atomic_file(path, overwrite) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, engine="pyarrow", index=False)
    return path


def to_csv(
    store: StoreLike,
    run: RunsLike,
    path: str | os.PathLike,
    measures: str | list[str] | None = None,
    layers: str | list[str] | None = None,
    probe: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write `to_frame(store, run, ...)` to a CSV file and return its path.

    NaN is written as an empty field. The file is written under a temporary name and renamed
    into place, so `path` never holds a partial file; an existing `path` raises
    FileExistsError unless `overwrite=True`. A `.gz`/`.bz2`/`.zip`/`.xz` suffix compresses.
    """
    return write_frame(to_frame(store, run, measures, layers, probe), path, "csv", overwrite)


def to_parquet(
    store: StoreLike,
    run: RunsLike,
    path: str | os.PathLike,
    measures: str | list[str] | None = None,
    layers: str | list[str] | None = None,
    probe: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write `to_frame(store, run, ...)` to a Parquet file (pyarrow) and return its path.

    Needs pyarrow (`pip install 'learnscope[parquet]'`; MissingExtraError otherwise). Written
    atomically like `to_csv`; an existing `path` raises FileExistsError unless `overwrite=True`.
    """
    require("pyarrow", "Parquet export", "parquet")
    return write_frame(to_frame(store, run, measures, layers, probe), path, "parquet", overwrite)
