"""Figures 1-4 of the activation-pattern paper, each from a run store (see docs/figures.md)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from learnscope.viz import style
from learnscope.viz.drawing import (
    A4_WIDTH,
    WARNING_COLOUR,
    _chance_note,
    _figure_notes,
    _layer_norm,
    _mark_saturated,
    _mark_saturated_cells,
    _mesh,
    _norm,
    _saturated_handle,
    _title_prefix,
)
from learnscope.viz.pattern_panels import (
    _FIGURE1_MEASURES,
    FIGURE1_PANELS,
    _bounded,
    _layer_names,
    _measure_title,
    _panel_values,
    _read_runs,
    _saturation_grid,
    _wide,
)
from learnscope.viz.runs import (
    FigureError,
    StoreLike,
    epochs_by_step,
    open_runs,
    read_measures,
    saturation,
    x_axis,
)

__all__ = ["figure1", "figure2", "figure3", "figure4"]


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
            norm = _layer_norm(names)
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
