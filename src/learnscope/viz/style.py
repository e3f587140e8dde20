"""The one style of every learnscope figure: fonts, sizes, colour maps, panel marking.

Figures are built and saved inside :func:`styled` (a ``matplotlib.rc_context``), so the global
matplotlib settings of the caller are never changed, and always on ``matplotlib.figure.Figure``
objects (never ``pyplot``), so no global figure state is left behind.

Every axes that shows data is a *panel*: its label is :data:`PANEL` (``ax.get_label() ==
"panel"``) and ``ax.panel_info`` is a dict saying what it shows (figure, run, measure, layer,
...). Colour-bar axes keep matplotlib's label ``"<colorbar>"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Label of every data axes (colour bars are labelled "<colorbar>" by matplotlib).
PANEL = "panel"

#: Inches per panel.
PANEL_WIDTH = 2.3
PANEL_HEIGHT = 1.75

#: Colour map of heatmaps (values), and of lines coloured by layer depth or network depth.
VALUE_CMAP = "viridis"
LAYER_CMAP = "viridis"
DEPTH_CMAP = "plasma"
#: Part of the line colour maps used (their light end is hard to see on white).
LINE_CMAP_RANGE = (0.0, 0.85)

#: Resolution of PNG files.
PNG_DPI = 150

STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "figure.titleweight": "bold",
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.1,
    "image.cmap": VALUE_CMAP,
    "savefig.dpi": PNG_DPI,
    "savefig.facecolor": "white",
    "savefig.bbox": None,  # constrained layout already fits everything (tight = 2nd draw)
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text (searchable, editable)
    "ps.fonttype": 42,
    "axes.formatter.limits": (-3, 4),
}


@contextmanager
def styled() -> Iterator[None]:
    """Apply :data:`STYLE` (and the Agg backend's defaults) for the duration of a block."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float):
    """A constrained-layout ``Figure`` of ``width`` x ``height`` inches (call inside styled())."""
    from matplotlib.figure import Figure

    return Figure(figsize=(max(width, 3.0), max(height, 2.0)), layout="constrained")


def mark_panel(ax, **info: Any) -> None:
    """Mark ``ax`` as a data panel and record what it shows in ``ax.panel_info``."""
    ax.set_label(PANEL)
    ax.panel_info = info


def panels(figure) -> list:
    """The data panels of ``figure`` (every axes marked by :func:`mark_panel`), in order."""
    return [ax for ax in figure.axes if ax.get_label() == PANEL]


def line_colours(cmap_name: str, count: int) -> list:
    """``count`` distinct colours from the usable part of a colour map."""
    import numpy as np
    from matplotlib import colormaps

    cmap = colormaps[cmap_name]
    low, high = LINE_CMAP_RANGE
    if count <= 1:
        return [cmap(low)]
    return [cmap(v) for v in np.linspace(low, high, count)]


def truncated_cmap(cmap_name: str):
    """The part of a colour map that :func:`line_colours` uses, as a colour map (colour bars)."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    low, high = LINE_CMAP_RANGE
    return ListedColormap(colormaps[cmap_name](np.linspace(low, high, 256)), name=cmap_name)
