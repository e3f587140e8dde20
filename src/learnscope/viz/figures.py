"""The figures of the activation-pattern paper, and heatmaps / curves of any measure.

Every function reads a run store (an open ``Store`` or the path of one) and returns a
``matplotlib.figure.Figure``; :func:`save` writes it as PNG or PDF. See docs/figures.md.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from learnscope.store import Store
from learnscope.viz import style
from learnscope.viz.data import (
    FigureError,
    RunInfo,
    epochs_by_step,
    open_runs,
    read_measures,
    saturation,
    select_runs,
    turnover,
    wide_table,
    x_axis,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FIGURE1_PANELS", "curves", "figure1", "figure2", "figure3", "figure4", "heatmap",
           "save"]

T = TypeVar("T")
StoreLike = Store | str | os.PathLike

SUFFIXES = (".png", ".pdf")
#: Width of figures that must fit an A4 page (inches).
A4_WIDTH = 8.27


@dataclass(frozen=True)
class Panel:
    """One of the five measures of Figures 1 and 4."""

    key: str
    title: str
    measure: str
    ylabel: str
    bounded: bool  # a share in [0, 1]: drawn on a fixed [0, 1] axis


#: The five panels of Figures 1 and 4, left to right.
FIGURE1_PANELS = (
    Panel("A", "(A) pattern-set size", "distinct", "|A| / max |A|", True),
    Panel("B", "(B) pattern turnover", "distinct", "(added + removed) / |A|", False),
    Panel("C", "(C) top pattern share", "max_frac", "max c(a) / E", True),
    Panel("D", "(D) relative entropy", "rel_entropy", "H / Hmax", True),
    Panel("E", "(E) w. Jaccard to init", "weighted_jaccard_since_init", "Ruzicka(init)", True),
)
#: Measures of panel B besides ``distinct``: patterns added and removed since the last
#: measurement.
TURNOVER_MEASURES = ("added_since_last", "removed_since_last")
_FIGURE1_MEASURES = list(dict.fromkeys([*(p.measure for p in FIGURE1_PANELS),
                                        *TURNOVER_MEASURES]))
#: Measures that are shares in [0, 1]; their axes and colour scales are fixed to [0, 1].
BOUNDED_MEASURES = ("rel_entropy", "max_frac", "distinct_frac", "occupancy", "jaccard_since_init",
                    "jaccard_since_last", "jaccard_since_final", "jaccard_t_since_init",
                    "jaccard_t_since_last", "jaccard_t_since_final",
                    "weighted_jaccard_since_init", "weighted_jaccard_since_last",
                    "weighted_jaccard_since_final")
#: How saturated cells are marked, and the legend note that explains it.
SATURATED_MARKER = {"marker": "x", "color": "red", "linestyle": "none"}
SATURATED_NOTE = "saturated: distinct/E > 0.95 (entropy and similarity say little)"
#: Colour of the chance-level warnings.
WARNING_COLOUR = "#c0392b"


# --------------------------------------------------------------------------- helpers


@contextmanager
def _reporter() -> Iterator[Any]:
    """The active progress display, or a new one for the duration of the block."""
    from learnscope import progress as display

    active = getattr(display, "current", lambda: None)()
    if active is not None:
        yield active
        return
    with display.progress() as report:
        yield report


def _track(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate over ``items`` reporting progress (learnscope.progress) when there are several."""
    if len(items) < 2:
        yield from items
        return
    with _reporter() as report:
        try:
            task = report.task(description, total=len(items), transient=True)
        except TypeError:  # a progress module without transient tasks
            task = report.task(description, total=len(items))
        for item in items:
            yield item
            task.advance()
        task.finish()


def _read_runs(
    store: Store, runs: Sequence[str] | str | None, experiment: str | None, measures: list[str],
    probe: str | None, what: str,
) -> tuple[list[tuple[RunInfo, pd.DataFrame]], str]:
    if isinstance(runs, str):
        runs = [runs]
    infos, prefix = select_runs(store, runs, experiment=experiment)
    data = [(info, read_measures(store, info, measures, probe))
            for info in _track(infos, f"{what}: reading {len(infos)} runs")]
    return data, prefix


_wide = wide_table  # steps (rows) x layer indexes (columns) of one measure


def _layer_names(frame: pd.DataFrame) -> dict[int, str]:
    pairs = frame.drop_duplicates("layer_index").sort_values("layer_index")
    return dict(zip(pairs["layer_index"].astype(int), pairs["layer"], strict=True))


def _panel_values(wide: dict[str, pd.DataFrame], panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values of shape steps x layers) that ``panel`` draws."""
    table = wide[panel.measure]
    steps = table.index.to_numpy()
    values = table.to_numpy(dtype=float)
    if panel.key == "A":
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.nanmax(np.where(np.isfinite(values), values, np.nan), axis=0)
            return steps, values / np.where(peak > 0, peak, np.nan)
    if panel.key == "B":
        added, removed = (wide[m].reindex(index=table.index, columns=table.columns)
                          .to_numpy(dtype=float) for m in TURNOVER_MEASURES)
        return steps, turnover(added, removed, values)
    return steps, values


def _bounded(measure: str) -> bool:
    return measure in BOUNDED_MEASURES


def _saturation_grid(store: Store, info: RunInfo, probe: str | None,
                     steps: Iterable[int], layers: Iterable[int]) -> np.ndarray | None:
    """Booleans, layers x steps: saturated cells of ``info`` (None when it cannot be told)."""
    table = saturation(store, info, probe)
    if table is None:
        return None
    grid = table.reindex(index=list(steps), columns=list(layers)).fillna(False)
    return grid.to_numpy(dtype=bool).T


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


def _title_prefix(fig: Figure, title: str, prefix: str, width: float | None = None) -> None:
    """The figure's title, wrapped to ``width`` inches when given (so it is never clipped)."""
    text = f"{title}: {prefix}" if prefix else title
    if width is not None:
        # bold 11 pt DejaVu Sans: about 0.62 em per character on average
        per_line = max(20, int(width * 72 / (11 * 0.62)))
        text = textwrap.fill(text, per_line)
    fig.suptitle(text)


# --------------------------------------------------------------------------- figures


def figure1(
    store: StoreLike, runs: Sequence[str] | str | None = None, *, experiment: str | None = None,
    probe: str | None = None,
) -> Figure:
    """Figure 1: the early phase of training, per run the last and the first activation layer.

    One row per run, five panels over training steps, each with a line for the last and one for
    the first activation layer: (A) the number of distinct patterns relative to its maximum over
    the run, (B) pattern turnover: (patterns added + patterns removed since the last
    measurement) / distinct patterns, (C) the share of the most frequent pattern, (D) the
    relative entropy, (E) the weighted Jaccard similarity to the initial network. Shares (A, C,
    D, E) are drawn on a fixed [0, 1] axis. Red crosses mark saturated measurements (distinct /
    E > 0.95); a run whose final test accuracy is at chance level says so in its row title.
    Data: the ``early`` preset (any run with the patterns probe's default measures works). The
    figure is A4 wide (8.3 in).
    """
    with open_runs(store) as s, style.styled():
        data, prefix = _read_runs(s, runs, experiment, _FIGURE1_MEASURES, probe, "figure1")
        n = len(data)
        fig = style.new_figure(A4_WIDTH, n * (style.PANEL_HEIGHT + 0.35) + 1.0)
        _title_prefix(fig, "Activation patterns in the early phase of training", prefix)
        subfigs = fig.subfigures(n, 1, squeeze=False)[:, 0]
        colours = dict(zip(("last", "first"), style.line_colours(style.LAYER_CMAP, 2)[::-1],
                           strict=True))
        any_saturated = False
        for sub, (info, frame) in zip(subfigs, data, strict=True):
            names = _layer_names(frame)
            first, last = min(names), max(names)
            model = f" ({info.model})" if info.model not in info.label else ""
            sub.suptitle(f"{info.label}{model}: last layer {names[last]}, first layer "
                         f"{names[first]}{_chance_note(info)}", fontsize=9, fontweight="bold",
                         color=WARNING_COLOUR if info.chance_level else "black")
            axes = sub.subplots(1, 5, sharex=True, squeeze=False)[0]
            wide = {m: _wide(frame, m) for m in _FIGURE1_MEASURES}
            steps_all = wide["distinct"].index
            saturated = _saturation_grid(s, info, probe, steps_all, (last, first))
            for col, panel in enumerate(FIGURE1_PANELS):
                ax = axes[col]
                steps, values = _panel_values(wide, panel)
                position = [list(wide[panel.measure].columns).index(i) for i in (last, first)]
                marked = {}
                for where, j in zip(("last", "first"), position, strict=True):
                    ys = values[:, j]
                    xs = np.asarray(steps, dtype=float)
                    ax.plot(xs, ys, color=colours[where], gid=where,
                            label=f"{where} layer")
                    mask = None if saturated is None else saturated[0 if where == "last" else 1]
                    marked[where] = [int(steps[i]) for i in
                                     _mark_saturated(ax, xs, ys, mask, f"saturated:{where}")]
                    any_saturated = any_saturated or bool(marked[where])
                if panel.bounded:
                    ax.set_ylim(0.0, 1.0)
                elif panel.key == "B":
                    ax.set_ylim(bottom=0.0)
                style.mark_panel(ax, figure="figure1", run=info.id, panel=panel.key,
                                 measure=panel.measure, layers={"last": names[last],
                                                                "first": names[first]},
                                 layer_indexes={"last": last, "first": first},
                                 saturated=marked, chance_level=info.chance_level)
                ax.set_title(panel.title, fontsize=8)
                ax.set_ylabel(panel.ylabel)
                ax.set_xlabel("step")
        handles = [Line2D([], [], color=colours[w], label=f"{w} activation layer")
                   for w in ("last", "first")]
        if any_saturated:
            handles.append(_saturated_handle())
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
        return fig


def figure2(
    store: StoreLike, runs: Sequence[str] | str | None = None, *, experiment: str | None = None,
    measure: str = "rel_entropy", probe: str | None = None,
) -> Figure:
    """Figure 2: mean relative entropy per layer over seeds, for nets of several depths.

    Columns: model families (``resnet``, ``convnet``, ``toynet``, from each run's model name);
    rows: measure points (the k-th measured step of every run, labelled with its step and
    epoch); one line per depth (``resnet8``, ``resnet14``, ...) with the mean over the runs of
    that model (seeds) and a band of +-1 standard deviation (``numpy.std``, ddof 0). Runs whose
    final test accuracy is at chance level are left out of the mean (the legend says how many;
    when every run of a model is, their mean is drawn dashed and labelled so). Red crosses
    mark layers saturated (distinct / E > 0.95) in any of the averaged runs at that point.
    Shares (relative entropy, ...) use a fixed [0, 1] axis. Data: the ``entropycurve`` preset.
    """
    with open_runs(store) as s, style.styled():
        data, prefix = _read_runs(s, runs, experiment, [measure], probe, "figure2")
        families: dict[str, dict[str, list]] = {}
        depths: set[int] = set()
        for info, frame in data:
            families.setdefault(info.family, {}).setdefault(info.model, []).append(
                (info, _wide(frame, measure), epochs_by_step(s, info, frame),
                 saturation(s, info, probe)))
            depths.add(info.depth if info.depth is not None else 0)
        depth_order = sorted(depths)
        colours = dict(zip(depth_order, style.line_colours(style.DEPTH_CMAP, len(depth_order)),
                           strict=True))
        points = max(len(wide.index) for models in families.values()
                     for members in models.values() for _, wide, _, _ in members)
        ncols = len(families)
        width = max(ncols * 1.5 * style.PANEL_WIDTH + 0.6, 5.0)
        fig = style.new_figure(width, points * style.PANEL_HEIGHT + 1.2)
        title = f"Mean {_measure_title(measure)} per layer over seeds (±1 s.d.)"
        _title_prefix(fig, title, prefix, width)
        axes = fig.subplots(points, ncols, squeeze=False, sharex="col", sharey=True)
        any_saturated = False
        for col, (family, models) in enumerate(families.items()):
            ordered = sorted(models.items(), key=lambda item: (item[1][0][0].depth or 0, item[0]))
            for k in range(points):
                ax = axes[k, col]
                steps_here: list[int] = []
                epochs_here: list[float] = []
                marked: dict[str, list[int]] = {}
                left_out: dict[str, list[str]] = {}
                for model, members in ordered:
                    healthy = [m for m in members if not m[0].chance_level]
                    averaged = healthy or members
                    columns, flags = [], []
                    for info, wide, epochs, saturated in averaged:
                        if len(wide.index) <= k:
                            continue
                        step = int(wide.index[k])
                        steps_here.append(step)
                        if epochs is not None and step in epochs:
                            epochs_here.append(epochs[step])
                        columns.append(wide.iloc[k].rename(info.id))
                        if saturated is not None:
                            flags.append(saturated.reindex(index=[step], columns=wide.columns)
                                         .fillna(False).to_numpy(dtype=bool)[0])
                    if not columns:
                        continue
                    table = np.vstack([c.to_numpy(dtype=float) for c in columns])  # seeds x L
                    layers = columns[0].index.to_numpy()
                    mean = np.nanmean(table, axis=0)
                    spread = np.nanstd(table, axis=0)
                    colour = colours[members[0][0].depth or 0]
                    band = ax.fill_between(layers, mean - spread, mean + spread, color=colour,
                                           alpha=0.25, linewidth=0)
                    band.set_gid(model)
                    dropped = [m[0].id for m in members if m[0].chance_level and healthy]
                    left_out[model] = dropped
                    if not healthy and any(m[0].chance_level for m in members):
                        label = f"{model} (n={len(columns)}, all at CHANCE LEVEL)"
                    elif dropped:
                        label = f"{model} (n={len(columns)}; {len(dropped)} at chance level " \
                                "left out)"
                    else:
                        label = f"{model} (n={len(columns)})"
                    ax.plot(layers, mean, color=colour, marker="o", markersize=2.2, gid=model,
                            label=label, linestyle="--" if not healthy else "-")
                    if flags:
                        mask = np.any(np.vstack(flags), axis=0)
                        chosen = _mark_saturated(ax, layers.astype(float), mean, mask,
                                                 f"saturated:{model}")
                        marked[model] = [int(layers[i]) for i in chosen]
                        any_saturated = any_saturated or bool(chosen)
                style.mark_panel(ax, figure="figure2", family=family, point=k,
                                 steps=sorted(set(steps_here)), measure=measure,
                                 saturated=marked, left_out=left_out)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if _bounded(measure):
                    ax.set_ylim(0.0, 1.0)
                if k == 0:
                    ax.set_title(family)
                    if ax.get_legend_handles_labels()[0]:
                        ax.legend(loc="best")
                if k == points - 1:
                    ax.set_xlabel("activation layer (index)")
                if col == 0:
                    ax.set_ylabel(f"{_point_label(steps_here, epochs_here)}\n"
                                  f"{_measure_title(measure)}")
        if any_saturated:
            fig.legend(handles=[_saturated_handle()], loc="outside lower center")
        return fig


def _point_label(steps: list[int], epochs: list[float]) -> str:
    if not steps:
        return "(no runs)"
    low, high = min(steps), max(steps)
    text = f"step {low}" if low == high else f"steps {low}-{high}"
    if epochs:
        elow, ehigh = min(epochs), max(epochs)
        text += f", epoch {elow:.3g}" if elow == ehigh else f", epochs {elow:.3g}-{ehigh:.3g}"
    return text


_MEASURE_TITLES = {
    "rel_entropy": "relative entropy",
    "entropy": "entropy (bits)",
    "distinct": "distinct patterns",
    "distinct_frac": "patterns per evaluation",
    "max_frac": "most frequent pattern share",
    "occupancy": "hash-list occupancy",
    "weighted_jaccard_since_final": "weighted Jaccard to final",
    "weighted_jaccard_since_init": "weighted Jaccard to init",
    "weighted_jaccard_since_last": "weighted Jaccard to previous",
    "jaccard_since_final": "Jaccard to final",
    "jaccard_since_init": "Jaccard to init",
    "jaccard_since_last": "Jaccard to previous",
    "mutual_information": "MI(patterns; labels)",
}


def _measure_title(measure: str) -> str:
    return _MEASURE_TITLES.get(measure, measure)


def figure3(
    store: StoreLike, runs: Sequence[str] | str | None = None, *, experiment: str | None = None,
    probe: str | None = None,
) -> Figure:
    """Figure 3: per run (method), layer x epoch heatmaps over the whole training.

    Rows: relative entropy, weighted Jaccard similarity to the final network
    (``weighted_jaccard_since_final``, written by the since-final pass), and the hash-list
    occupancy when every run was counted in hash-list mode, else patterns per evaluation
    (``distinct_frac``). Each row has one colour scale and colour bar; layers (by index, 0 at
    the bottom) line up across columns. x is the epoch where known, else the step. Data: the
    ``methods`` preset.
    """
    import pandas as pd

    rows = ["rel_entropy", "weighted_jaccard_since_final"]
    with open_runs(store) as s, style.styled():
        data, prefix = _read_runs(s, runs, experiment, rows, probe, "figure3")
        third = "occupancy"
        extra = []
        for info, _ in data:
            try:
                extra.append(read_measures(s, info, [third], probe))
            except FigureError:
                extra = []
                break
        if not extra:
            third = "distinct_frac"
            extra = [read_measures(s, info, [third], probe) for info, _ in data]
        measures = [*rows, third]
        n = len(data)
        fig = style.new_figure(n * style.PANEL_WIDTH + 1.0, 3 * style.PANEL_HEIGHT + 0.9)
        _title_prefix(fig, "Activation patterns over the whole training", prefix)
        axes = fig.subplots(3, n, squeeze=False, sharey=True)
        layer_count = 1
        grids = []
        for (info, frame), more in zip(data, extra, strict=True):
            frame = pd.concat([frame, more], ignore_index=True)
            tables = {m: _wide(frame, m) for m in measures}
            steps = sorted(set().union(*(t.index for t in tables.values())))
            xs, xlabel = x_axis(s, info, frame, steps, "auto")
            layers = sorted(set().union(*(t.columns for t in tables.values())))
            saturated = _saturation_grid(s, info, probe, steps, layers)
            grids.append((info, tables, steps, xs, xlabel, saturated))
            layer_count = max(layer_count, max(len(t.columns) for t in tables.values()))
        any_saturated = False
        for row, measure in enumerate(measures):
            arrays = []
            for _info, tables, steps, _, _, _ in grids:
                table = tables[measure].reindex(steps)
                arrays.append(table.to_numpy(dtype=float).T)  # layers x steps
            norm = _norm(arrays)
            for col, ((info, tables, steps, xs, xlabel, saturated), values) in enumerate(
                    zip(grids, arrays, strict=True)):
                ax = axes[row, col]
                layers = tables[measure].columns.to_numpy()
                _mesh(ax, xs, layers, values, norm)
                mask = None
                if saturated is not None:  # rows of this measure's layers
                    every = sorted(set().union(*(t.columns for t in tables.values())))
                    mask = saturated[[every.index(i) for i in layers]]
                cells = _mark_saturated_cells(ax, xs, layers, mask)
                any_saturated = any_saturated or bool(cells)
                ax.set_ylim(-0.5, layer_count - 0.5)
                style.mark_panel(ax, figure="figure3", run=info.id, measure=measure,
                                 x=xlabel, steps=list(steps),
                                 saturated=[(layer, int(steps[c])) for layer, c in cells],
                                 chance_level=info.chance_level)
                if row == 0:
                    note = "\nCHANCE LEVEL" if info.chance_level else ""
                    ax.set_title(info.label + note,
                                 color=WARNING_COLOUR if info.chance_level else "black")
                if row == 2:
                    ax.set_xlabel(xlabel)
                if col == 0:
                    ax.set_ylabel(f"{_measure_title(measure)}\nactivation layer")
            fig.colorbar(ScalarMappable(norm=norm, cmap=style.VALUE_CMAP), ax=list(axes[row, :]),
                         label=_measure_title(measure), shrink=0.9, aspect=15)
        _figure_notes(fig, any_saturated, [info for info, _ in data])
        return fig


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


def figure4(
    store: StoreLike, runs: Sequence[str] | str | None = None, *, experiment: str | None = None,
    probe: str | None = None,
) -> Figure:
    """Figure 4: the five measures of Figure 1 over the whole training, every layer.

    One row per run; panels as in Figure 1 (A-E: panel B is the pattern turnover, shares on a
    fixed [0, 1] axis), one line per activation layer coloured by its depth (layer index, colour
    bar per row); x is the epoch where known, else the step. A run whose final test accuracy is
    at chance level says so in its row label and in a note under the figure. Data: the
    ``methods`` preset (any run with the default measures).
    """
    with open_runs(store) as s, style.styled():
        data, prefix = _read_runs(s, runs, experiment, _FIGURE1_MEASURES, probe, "figure4")
        n = len(data)
        fig = style.new_figure(5 * style.PANEL_WIDTH + 1.0, n * (style.PANEL_HEIGHT + 0.3) + 0.9)
        _title_prefix(fig, "Activation patterns over the whole training", prefix)
        axes = fig.subplots(n, 5, squeeze=False, sharex="row")
        cmap = style.truncated_cmap(style.LAYER_CMAP)
        for row, (info, frame) in enumerate(data):
            wide = {m: _wide(frame, m) for m in _FIGURE1_MEASURES}
            names = _layer_names(frame)
            indexes = sorted(names)
            norm = Normalize(min(indexes), max(max(indexes), min(indexes) + 1))
            all_steps = wide["distinct"].index
            xs_all, xlabel = x_axis(s, info, frame, all_steps, "auto")
            x_of = dict(zip(all_steps, xs_all, strict=True))
            for col, panel in enumerate(FIGURE1_PANELS):
                ax = axes[row, col]
                steps, values = _panel_values(wide, panel)
                xs = np.asarray([x_of.get(step, np.nan) for step in steps])
                for j, index in enumerate(wide[panel.measure].columns):
                    ax.plot(xs, values[:, j], color=cmap(norm(index)), label=names[index])
                if panel.bounded:
                    ax.set_ylim(0.0, 1.0)
                elif panel.key == "B":
                    ax.set_ylim(bottom=0.0)
                style.mark_panel(ax, figure="figure4", run=info.id, panel=panel.key,
                                 measure=panel.measure, x=xlabel, chance_level=info.chance_level)
                if row == 0:
                    ax.set_title(panel.title)
                ax.set_xlabel(xlabel if row == n - 1 else "")
                label = textwrap.fill(info.label, 24) + ("\n(CHANCE LEVEL)" if info.chance_level
                                                         else "")
                ax.set_ylabel(f"{label}\n{panel.ylabel}" if col == 0 else panel.ylabel)
                if col == 0 and info.chance_level:
                    ax.yaxis.label.set_color(WARNING_COLOUR)
            bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[row, :]),
                               label="layer", aspect=12)
            bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _figure_notes(fig, False, [info for info, _ in data])
        return fig


def heatmap(
    store: StoreLike, run: str, measure: str, *, x: str = "step", probe: str | None = None,
) -> Figure:
    """Any measure of any run as a layer (y, index 0 at the bottom) x step heatmap.

    ``x="epoch"`` puts epochs on the x axis (an error when the run has none recorded).
    """
    _check_x(x)
    with open_runs(store) as s, style.styled():
        data, _ = _read_runs(s, [run], None, [measure], probe, "heatmap")
        info, frame = data[0]
        table = _wide(frame, measure)
        xs, xlabel = x_axis(s, info, frame, table.index, x)
        names = _layer_names(frame)
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
        data, _ = _read_runs(s, [run], None, [measure], probe, "curves")
        info, frame = data[0]
        table = _wide(frame, measure)
        xs, xlabel = x_axis(s, info, frame, table.index, x)
        names = _layer_names(frame)
        indexes = sorted(names)
        norm = Normalize(min(indexes), max(max(indexes), min(indexes) + 1))
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


def _check_x(x: str) -> None:
    if x not in ("step", "epoch"):
        raise FigureError(f"x must be 'step' or 'epoch', got {x!r}")


def _layer_ticks(ax, names: dict[int, str]) -> None:
    """Layer names on the y axis when they fit, else indexes."""
    if len(names) <= 40:
        ax.set_yticks(sorted(names), [f"{i} {names[i]}" for i in sorted(names)], fontsize=6.5)
    ax.set_ylabel("activation layer")


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

