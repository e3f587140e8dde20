"""The figures of the activation-pattern paper, and heatmaps / curves of any measure.

Every function reads a run store (an open ``Store`` or the path of one) and returns a
``matplotlib.figure.Figure``; :func:`save` writes it as PNG or PDF. See docs/figures.md.

The figures live in modules by family: :mod:`learnscope.viz.paper_figures` (Figures 1-4),
:mod:`learnscope.viz.measure_figures` (``heatmap``, ``curves``), built from
:mod:`learnscope.viz.pattern_panels` (what the panels show and read) and
:mod:`learnscope.viz.drawing` (shared marks and colour scales). This module collects them and
writes figures to files (:func:`save`).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from learnscope.viz import style
from learnscope.viz.drawing import (
    A4_WIDTH,
    SATURATED_MARKER,
    SATURATED_NOTE,
    WARNING_COLOUR,
)
from learnscope.viz.measure_figures import curves, heatmap
from learnscope.viz.paper_figures import figure1, figure2, figure3, figure4
from learnscope.viz.pattern_panels import (
    BOUNDED_MEASURES,
    FIGURE1_PANELS,
    TURNOVER_MEASURES,
    Panel,
)
from learnscope.viz.runs import FigureError, StoreLike

__all__ = ["A4_WIDTH", "BOUNDED_MEASURES", "FIGURE1_PANELS", "SATURATED_MARKER", "SATURATED_NOTE",
           "SUFFIXES", "TURNOVER_MEASURES", "WARNING_COLOUR", "Panel", "StoreLike", "curves",
           "figure1", "figure2", "figure3", "figure4", "heatmap", "save"]

SUFFIXES = (".png", ".pdf")


def save(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` as PNG or PDF (by the suffix); returns the path.

    Parent folders are created. Any other suffix raises :class:`FigureError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FigureError(
            f"cannot write {path}: unknown suffix {path.suffix or '(none)'!r}; use a path "
            "ending in .png or .pdf"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with style.styled():
        figure.savefig(path, format=suffix[1:], dpi=style.PNG_DPI)
    return path
