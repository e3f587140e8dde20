"""Any activation-pattern measure of one run, as a layer x step heatmap or as curves per layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from learnscope.store import Store
from learnscope.viz import style
from learnscope.viz.drawing import (
    _figure_notes,
    _layer_norm,
    _layer_ticks,
    _mark_saturated_cells,
    _mesh,
    _norm,
)
from learnscope.viz.pattern_panels import (
    _bounded,
    _layer_names,
    _measure_title,
    _read_runs,
    _saturation_grid,
    _wide,
)
from learnscope.viz.runs import FigureError, RunInfo, StoreLike, open_runs, x_axis

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["curves", "heatmap"]


def heatmap(
    store: StoreLike, run: str, measure: str, *, x: str = "step", probe: str | None = None,
) -> Figure:
    """Any measure of any run as a layer (y, index 0 at the bottom) x step heatmap.

    ``x="epoch"`` puts epochs on the x axis (an error when the run has none recorded).
    """
    _check_x(x)
    with open_runs(store) as s, style.styled():
        info, table, xs, xlabel, names = _one_run_measure(s, run, measure, probe, x, "heatmap")
        values = table.to_numpy(dtype=float).T
        fig = style.new_figure(6.4, max(2.6, 0.16 * len(names) + 1.6))
        ax = fig.subplots()
        layers = table.columns.to_numpy()
        mesh = _mesh(ax, xs, layers, values, _norm([values]))
        steps = [int(v) for v in table.index]
        cells = _mark_saturated_cells(ax, xs, layers,
                                      _saturation_grid(s, info, probe, steps, layers))
        _layer_ticks(ax, names)
        style.mark_panel(ax, figure="heatmap", run=info.id, measure=measure, x=xlabel,
                         steps=steps, saturated=[(layer, steps[c]) for layer, c in cells],
                         chance_level=info.chance_level)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{_measure_title(measure)}: {info.name}")
        fig.colorbar(mesh, ax=ax, label=_measure_title(measure))
        _figure_notes(fig, bool(cells), [info])
        return fig


def curves(
    store: StoreLike, run: str, measure: str, *, x: str = "step", probe: str | None = None,
) -> Figure:
    """Any measure of any run over steps, one line per layer coloured by depth (colour bar)."""
    _check_x(x)
    with open_runs(store) as s, style.styled():
        info, table, xs, xlabel, names = _one_run_measure(s, run, measure, probe, x, "curves")
        norm = _layer_norm(names)
        cmap = style.truncated_cmap(style.LAYER_CMAP)
        fig = style.new_figure(6.4, 3.6)
        ax = fig.subplots()
        for index in table.columns:
            ax.plot(xs, table[index].to_numpy(dtype=float), color=cmap(norm(index)),
                    label=names[index])
        if len(table.columns) <= 10:
            ax.legend(loc="best", title="layer")
        if _bounded(measure):
            ax.set_ylim(0.0, 1.0)
        style.mark_panel(ax, figure="curves", run=info.id, measure=measure, x=xlabel,
                         chance_level=info.chance_level)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_measure_title(measure))
        ax.set_title(f"{_measure_title(measure)}: {info.name}")
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _figure_notes(fig, False, [info])
        return fig


def _one_run_measure(
    s: Store, run: str, measure: str, probe: str | None, x: str, what: str
) -> tuple[RunInfo, pd.DataFrame, np.ndarray, str, dict[int, str]]:
    """(run, its ``measure`` as steps x layer indexes, x values, x label, layer names)."""
    data, _ = _read_runs(s, [run], None, [measure], probe, what)
    info, frame = data[0]
    table = _wide(frame, measure)
    xs, xlabel = x_axis(s, info, frame, table.index, x)
    return info, table, xs, xlabel, _layer_names(frame)


def _check_x(x: str) -> None:
    if x not in ("step", "epoch"):
        raise FigureError(f"x must be 'step' or 'epoch', got {x!r}")
