"""Kept for old imports: this module is now :mod:`learnscope.viz.runs`."""

from learnscope.viz.runs import (
    CLIP_PERCENTILES,
    FigureError,
    RunInfo,
    StoreLike,
    clipped_change,
    epochs_by_step,
    model_of,
    open_runs,
    read_measures,
    saturation,
    select_runs,
    turnover,
    wide_table,
    x_axis,
)

__all__ = [
    "CLIP_PERCENTILES",
    "FigureError",
    "RunInfo",
    "StoreLike",
    "clipped_change",
    "epochs_by_step",
    "model_of",
    "open_runs",
    "read_measures",
    "saturation",
    "select_runs",
    "turnover",
    "wide_table",
    "x_axis",
]
