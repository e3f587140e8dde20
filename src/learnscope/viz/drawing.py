"""Drawing pieces shared by the activation-pattern figures: heatmap meshes and colour ranges,
saturation and chance-level marks, titles and notes, layer ticks."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from learnscope.viz import style
from learnscope.viz.runs import RunInfo

#: Width of figures that must fit an A4 page (inches).
A4_WIDTH = 8.27
#: How saturated cells are marked, and the legend note that explains it.
SATURATED_MARKER = {"marker": "x", "color": "red", "linestyle": "none"}
SATURATED_NOTE = "saturated: distinct/E > 0.95 (entropy and similarity say little)"
#: Colour of the chance-level warnings.
WARNING_COLOUR = "#c0392b"


def _mark_saturated(ax, xs: np.ndarray, ys: np.ndarray, mask: np.ndarray | None,
                    gid: str) -> list[int]:
    """Red crosses on the points of a line where ``mask`` (where the line has a value); the
    indexes of every saturated point."""
    if mask is None:
        return []
    drawn = np.flatnonzero(mask & np.isfinite(ys))
    if drawn.size:
        ax.plot(xs[drawn], ys[drawn], markersize=4, zorder=3, gid=gid, **SATURATED_MARKER)
    return [int(i) for i in np.flatnonzero(mask)]


def _mark_saturated_cells(ax, xs: np.ndarray, layers: np.ndarray,
                          mask: np.ndarray | None) -> list[tuple[int, int]]:
    """Red crosses on the heatmap cells (layers x steps) where ``mask``; (layer, column) pairs."""
    if mask is None:
        return []
    rows, cols = np.nonzero(mask)
    if rows.size:
        ax.plot(np.asarray(xs, dtype=float)[cols], np.asarray(layers, dtype=float)[rows],
                markersize=3.5, markeredgewidth=0.8, zorder=3, gid="saturated",
                **SATURATED_MARKER)
    return [(int(layers[r]), int(c)) for r, c in zip(rows, cols, strict=True)]


def _saturated_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], markersize=4, label=SATURATED_NOTE, **SATURATED_MARKER)


def _chance_note(info: RunInfo) -> str:
    """' - CHANCE LEVEL (test acc 0.098, 1/10 = 0.100)' for a chance-level run, else ''."""
    if not info.chance_level:
        return ""
    health = info.health
    return (f" - CHANCE LEVEL (test acc. {health.test_accuracy:.3f}, 1/{health.classes} = "
            f"{health.chance:.3f})")


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (half-way between neighbours)."""
    centres = np.asarray(centres, dtype=float)
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    first = centres[0] - (middle[0] - centres[0])
    last = centres[-1] + (centres[-1] - middle[-1])
    return np.concatenate([[first], middle, [last]])


def _mesh(ax, xs: np.ndarray, layers: np.ndarray, values: np.ndarray, norm: Normalize):
    """Heatmap of ``values`` (layers x measurements); y = layer index, 0 at the bottom."""
    mesh = ax.pcolormesh(_edges(xs), _edges(layers), np.ma.masked_invalid(values), norm=norm,
                         cmap=style.VALUE_CMAP, shading="flat", rasterized=True)
    ax.grid(False)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return mesh


def _norm(arrays: Iterable[np.ndarray]) -> Normalize:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return Normalize(0.0, 1.0)
    low = float(min(a.min() for a in finite))
    high = float(max(a.max() for a in finite))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return Normalize(low, high)


def _layer_norm(layer_indexes: Iterable[int]) -> Normalize:
    """Colour range of lines coloured by layer depth: the smallest to the largest layer index
    (at least one apart)."""
    indexes = sorted(layer_indexes)
    return Normalize(min(indexes), max(max(indexes), min(indexes) + 1))


def _title_prefix(fig: Figure, title: str, prefix: str, width: float | None = None) -> None:
    """The figure's title, wrapped to ``width`` inches when given (so it is never clipped)."""
    text = f"{title}: {prefix}" if prefix else title
    if width is not None:
        # bold 11 pt DejaVu Sans: about 0.62 em per character on average
        per_line = max(20, int(width * 72 / (11 * 0.62)))
        text = textwrap.fill(text, per_line)
    fig.suptitle(text)



def _figure_notes(fig: Figure, saturated: bool, infos: Sequence[RunInfo]) -> None:
    """A legend under the figure: the saturation mark and the chance-level runs, if any."""
    handles = [_saturated_handle()] if saturated else []
    chance = [info for info in infos if info.chance_level]
    if chance:
        text = "at chance level: " + ", ".join(
            f"{info.label} (test acc. {info.health.test_accuracy:.3f})" for info in chance)
        handles.append(Line2D([], [], linestyle="none", label=text))
    if handles:
        legend = fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
        for text in legend.get_texts()[1 if saturated else 0:]:
            text.set_color(WARNING_COLOUR)


def _layer_ticks(ax, names: dict[int, str]) -> None:
    """Layer names on the y axis when they fit, else indexes."""
    if len(names) <= 40:
        ax.set_yticks(sorted(names), [f"{i} {names[i]}" for i in sorted(names)], fontsize=6.5)
    ax.set_ylabel("activation layer")
