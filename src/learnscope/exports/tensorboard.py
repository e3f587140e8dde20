"""Runs as TensorBoard event files: one scalar series per (probe, layer, measure)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from learnscope.exports._common import RunsLike, StoreLike, opened, require, resolve_runs
from learnscope.exports.tables import _names, frame_of

if TYPE_CHECKING:
    import pandas as pd

EVENT_PREFIX = "events.out.tfevents."


def tensorboard_tags(frame: pd.DataFrame) -> pd.Series:
    """The TensorBoard tag of every row of one run's long-form table.

    - a layer's value (layer_index >= 0): ``{measure}/{layer}``, e.g. ``entropy/features.1``,
      so TensorBoard groups the layers of one measure; when the run has layer values from
      more than one probe, ``{measure}/{probe}/{layer}``;
    - a model-level scalar (layer ``"model"``, logged with ``Scope.log``): ``{probe}/{measure}``,
      e.g. ``train/loss``; other negative-index layers: ``{probe}/{measure}/{layer}``.

    Should two different (probe, layer, measure) keys still share a tag, every tag becomes
    ``{probe}/{measure}/{layer}``.
    """
    import pandas as pd

    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    probe, layer, measure = (frame[c].astype(str) for c in ("probe", "layer", "measure"))
    is_layer = frame["layer_index"] >= 0
    several = frame.loc[is_layer, "probe"].nunique() > 1
    layer_tag = (measure + "/" + probe + "/" + layer) if several else (measure + "/" + layer)
    model_tag = (probe + "/" + measure).where(layer == "model", probe + "/" + measure + "/" + layer)
    tags = layer_tag.where(is_layer, model_tag)
    keys = frame[["probe", "layer", "measure"]].assign(tag=tags).drop_duplicates()
    if keys["tag"].duplicated().any():
        tags = probe + "/" + measure + "/" + layer
    return tags


def _run_text(record: dict[str, Any]) -> str:
    """The run's identity and config as Markdown, for TensorBoard's Text tab."""
    fields = ("id", "name", "experiment", "status", "created_at", "finished_at", "total_steps",
              "version", "git_rev")
    lines = ["| field | value |", "| --- | --- |"]
    lines += [f"| {key} | {record.get(key)} |" for key in fields if record.get(key) is not None]
    config = json.dumps(record.get("config") or {}, indent=2, sort_keys=True, default=str)
    code = "\n".join("    " + line for line in config.splitlines())
    return "\n".join(lines) + "\n\n**config**\n\n" + code


def _check_dir_destination(path: Path, overwrite: bool) -> list[Path]:
    """The event files to replace in `path` (empty when it is absent or empty); else raise."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; TensorBoard logs need a folder")
    if not path.exists():
        return []
    entries = list(path.iterdir())
    if not entries:
        return []
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists and is not empty; replace the TensorBoard logs in it "
            "with --force (overwrite=True in Python), or choose another folder"
        )
    foreign = [e.name for e in entries if not (e.is_file() and e.name.startswith(EVENT_PREFIX))]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5])
        raise FileExistsError(
            f"{path} holds files other than TensorBoard event files ({shown}); refusing to "
            "replace it - choose a new or empty folder"
        )
    return entries


def _text_value(tag: str, text: str) -> Any:
    """A Summary value that TensorBoard's Text tab shows (Markdown)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_STRING

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    tensor = TensorProto(
        dtype=DT_STRING,
        string_val=[text.encode("utf-8")],
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
    )
    return Summary.Value(tag=tag, metadata=metadata, tensor=tensor)


def write_run(frame: pd.DataFrame, record: dict[str, Any], logdir: Path, overwrite: bool) -> int:
    """Write one run's table as TensorBoard event files in `logdir`; returns the series count.

    The events are written into a temporary folder beside `logdir` and moved in when complete.
    One event per step holds the values of every series at that step.
    """
    require("tensorboard", "TensorBoard export", "tensorboard")
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    _check_dir_destination(logdir, overwrite)  # fail before writing anything
    logdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = logdir.with_name(f".{logdir.name}.partial-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        frame = frame[frame["value"].notna()]  # NaN: no point (TensorBoard cannot draw it)
        frame = frame.assign(tag=tensorboard_tags(frame)).sort_values("step", kind="stable")
        writer = EventFileWriter(str(tmp), max_queue_size=1024, flush_secs=3600)
        try:
            now = time.time()
            text = Summary(value=[_text_value("run", _run_text(record))])
            writer.add_event(Event(wall_time=now, step=0, summary=text))
            steps = frame["step"].to_numpy()
            tags, values = frame["tag"].tolist(), frame["value"].tolist()
            bounds = np.flatnonzero(np.diff(steps)) + 1
            starts = np.r_[0, bounds] if len(steps) else np.zeros(0, dtype=int)
            for start, stop in zip(starts, np.r_[bounds, len(steps)][: len(starts)], strict=True):
                summary = Summary(value=[
                    Summary.Value(tag=tags[i], simple_value=values[i]) for i in range(start, stop)
                ])  # fmt: skip
                writer.add_event(Event(wall_time=now, step=int(steps[start]), summary=summary))
        finally:
            writer.close()
        series = frame["tag"].nunique()
        _publish(tmp, logdir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return int(series)


def _publish(tmp: Path, logdir: Path, overwrite: bool) -> None:
    """Move the finished event files of `tmp` to `logdir`, replacing those of an old export."""
    if not logdir.exists():
        try:
            os.rename(tmp, logdir)  # the common case: the folder appears complete, at once
            return
        except OSError:
            if not logdir.is_dir():
                raise
    for path in _check_dir_destination(logdir, overwrite):
        path.unlink(missing_ok=True)
    for path in tmp.iterdir():
        os.replace(path, logdir / path.name)


def to_tensorboard(
    store: StoreLike,
    run: RunsLike,
    logdir: str | os.PathLike,
    measures: str | list[str] | None = None,
    layers: str | list[str] | None = None,
    probe: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write runs as TensorBoard event files; view them with ``tensorboard --logdir LOGDIR``.

    Every (probe, layer, measure) becomes one scalar series named by `tensorboard_tags`, with
    the training step (optimizer updates) as its step. NaN values are skipped (TensorBoard
    cannot draw them; a series that is NaN everywhere is absent); infinities are kept. The
    run's identity and config are added as text (TensorBoard's Text tab, tag ``run``).

    Args:
        store: an open `Store`, or the path of an existing store.
        run: one run ref (its events go straight into `logdir`), or a list of refs / None for
            every run (each run's events go into ``logdir/<run id>``, so TensorBoard shows
            the runs side by side).
        measures, layers, probe: filters, as in `to_frame`.
        overwrite: replace the event files of a folder that already holds an export; without
            it a non-empty folder raises FileExistsError. A folder holding anything other than
            event files is never touched.

    Needs TensorBoard (`pip install 'learnscope[tensorboard]'`; MissingExtraError otherwise).
    Returns `logdir`.
    """
    require("tensorboard", "TensorBoard export", "tensorboard")
    logdir = Path(logdir).expanduser()
    with opened(store) as s:
        records = resolve_runs(s, run)
        single = isinstance(run, str)
        targets = [logdir if single else logdir / record["id"] for record in records]
        for target in targets:  # fail before writing anything
            _check_dir_destination(target, overwrite)
        frame = frame_of(s, records, _names(measures), _names(layers), probe)
        for record, target in zip(records, targets, strict=True):
            write_run(frame[frame["run"] == record["id"]], record, target, overwrite)
    return logdir
