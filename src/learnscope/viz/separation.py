"""Figures of the equi-separation law: separation fuzziness D_l per layer, and its fit.

Data: the rows the ``Separation`` probe (probe name ``separation``) writes per measured step:
``(layer, layer_index, "fuzziness", D_l)`` with ``"input"`` at index 0 and the layers at 1..L in
forward order, and the fit of ``log D_l = a + l * log(rho)`` as rows of layer ``"law"`` (index -1):
``law_slope``, ``law_rho``, ``law_pearson_r``, ``law_r2``, ``law_first``, ``law_last`` (the layer
range of the fit, inclusive). See docs/figures.md.

The fitted line is drawn from the stored slope; its intercept is not stored, so it is the least
squares intercept for that slope over the stored D_l in the fitted range:
``a = mean(ln D_l) - slope * mean(l)`` (the line passes through the centroid of the fitted
points, which is exactly the least squares line when the slope is the least squares slope).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from learnscope.defaults import LAW_MEASURES
from learnscope.store import Store
from learnscope.viz import style
from learnscope.viz.runs import FigureError, RunInfo, StoreLike, open_runs, select_runs, x_axis

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LAW_MEASURES", "equisep", "equisep_dynamics", "fit_line", "law_label"]


#: The measure of the per-layer rows, and the layer of the fit rows.
FUZZINESS = "fuzziness"
LAW_LAYER = "law"
#: The fit measures, as stored.

_HOW_TO_RECORD = ("record them with the equi-separation preset (`learnscope run equisep`) or add "
         "ls.Separation(...) to the Scope's probes")


def law_label(rho: float, r: float) -> str:
    """The legend text of a fit: ``"fit: ρ = 0.812, r = -0.995"``."""
    return f"fit: ρ = {rho:.3f}, r = {r:.3f}"


def fit_line(layers: Sequence[float], values: Sequence[float], law: dict[str, float]):
    """(x, y) of the fitted line over layers ``law_first..law_last`` (integers, inclusive).

    ``y = exp(a + law_slope * x)`` with ``a = mean(ln D_l) - law_slope * mean(l)`` over the
    stored ``D_l > 0`` with ``l`` in the fitted range (the intercept is not stored). None when
    the range holds no positive value.
    """
    layers = np.asarray(layers, dtype=float)
    values = np.asarray(values, dtype=float)
    first, last, slope = law["law_first"], law["law_last"], law["law_slope"]
    if not all(math.isfinite(v) for v in (first, last, slope)):
        return None
    inside = (layers >= first) & (layers <= last) & np.isfinite(values) & (values > 0)
    if not inside.any():
        return None
    intercept = float(np.mean(np.log(values[inside])) - slope * np.mean(layers[inside]))
    xs = np.arange(int(round(first)), int(round(last)) + 1, dtype=float)
    return xs, np.exp(intercept + slope * xs)


class _PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (``0.5``, ``3``, ``2e+04``), not ``3 x 10^0``."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:.3g}"


def _log_y(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                    minor_thresholds=(1, 0.4)))


# --------------------------------------------------------------------------- reading


def _read(store: Store, info: RunInfo, probe: str) -> pd.DataFrame:
    """All rows of ``probe`` for ``info``; a FigureError when it has no fuzziness rows."""
    try:
        frame = store.metrics(run=info.id, probe=probe)
    except ValueError:
        frame = None
    if frame is None or not (frame["measure"] == FUZZINESS).any():
        probes = sorted(store.latest(info.id)["probe"].unique())
        has = f"its probes: {', '.join(probes)}" if probes else "it has no measurements yet"
        raise FigureError(
            f"run {info.id} ({info.name}) has no separation measurements (measure "
            f"{FUZZINESS!r} of probe {probe!r}; {has}); {_HOW_TO_RECORD}"
        )
    return frame


def _fuzziness(frame: pd.DataFrame) -> pd.DataFrame:
    """Steps (rows) x layer indexes (columns) of D_l."""
    rows = frame[(frame["measure"] == FUZZINESS) & (frame["layer_index"] >= 0)]
    table = rows.pivot_table(index="step", columns="layer_index", values="value",
                             aggfunc="first", dropna=False)
    return table.sort_index().sort_index(axis=1)


def _laws(frame: pd.DataFrame) -> pd.DataFrame:
    """Steps (rows) x the law measures (columns, NaN where missing)."""
    rows = frame[(frame["layer"] == LAW_LAYER) & frame["measure"].isin(LAW_MEASURES)]
    table = rows.pivot_table(index="step", columns="measure", values="value", aggfunc="first",
                             dropna=False)
    return table.reindex(columns=list(LAW_MEASURES)).sort_index()


def _names(frame: pd.DataFrame) -> dict[int, str]:
    rows = frame[(frame["measure"] == FUZZINESS) & (frame["layer_index"] >= 0)]
    pairs = rows.drop_duplicates("layer_index").sort_values("layer_index")
    return dict(zip(pairs["layer_index"].astype(int), pairs["layer"], strict=True))


def _pick_step(info: RunInfo, table: pd.DataFrame, step: int | None) -> int:
    steps = [int(s) for s in table.index]
    if step is None:
        return steps[-1]
    if int(step) not in steps:
        shown = ", ".join(map(str, steps[:8])) + (f", ... {steps[-1]}" if len(steps) > 8 else "")
        raise FigureError(f"run {info.id} has no separation measurement at step {step} "
                          f"(measured steps: {shown}); pass one of them (--step S) or none for "
                          "the last")
    return int(step)


def _law_at(laws: pd.DataFrame, step: int) -> dict[str, float] | None:
    if step not in laws.index:
        return None
    law = {m: float(v) for m, v in laws.loc[step].items()}
    needed = ("law_slope", "law_first", "law_last")
    return law if all(math.isfinite(law[m]) for m in needed) else None


def _refit(layers: np.ndarray, values: np.ndarray, first: int) -> dict[str, float] | None:
    """The law fitted over layers first..L of one step's D_l, as stored fit rows would hold it."""
    from learnscope.separation import fit_law

    order = np.argsort(layers)
    if not np.array_equal(layers[order], np.arange(layers.size)):
        raise FigureError(f"the stored layer indexes {layers.tolist()} are not 0..L; cannot refit")
    try:
        fit = fit_law(values[order], first=first)
    except ValueError:  # too few layers, or D <= 0 / NaN: no line, like a NaN stored fit
        return None
    return {"law_slope": fit.slope, "law_rho": fit.rho, "law_pearson_r": fit.pearson_r,
            "law_r2": fit.r2, "law_first": float(fit.first), "law_last": float(fit.last)}


# --------------------------------------------------------------------------- figures


def equisep(
    store: StoreLike, run: str | Sequence[str], *, step: int | None = None,
    probe: str = "separation", fit_first: int | None = None,
) -> Figure:
    """The equi-separation law at one measured step: D_l (log scale) against the layer index l.

    Markers: the stored fuzziness of every layer (``input`` = 0, then 1..L in forward order) at
    ``step`` (default: the last measured step of each run). Line: the stored fit over
    ``law_first..law_last`` (slope ``law_slope``; intercept, not stored, by least squares for
    that slope over the stored D_l, see :func:`fit_line`), labelled with the stored decay ratio
    ρ and Pearson r. ``run`` may be a list of runs: one colour each.

    ``fit_first``: refit the law over layers ``fit_first..L`` of the drawn D_l instead of drawing
    the stored fit (``fit_first=0`` includes the input, as the reference's code does:
    ``learnscope.separation.fit_law(values, first=0)``).
    """
    refs = [run] if isinstance(run, str) else list(run)
    with open_runs(store) as s, style.styled():
        infos, prefix = select_runs(s, refs)
        data = [(info, _read(s, info, probe)) for info in infos]
        several = len(data) > 1
        colours = style.line_colours(style.DEPTH_CMAP, len(data)) if several else ["C0"]
        fig = style.new_figure(5.4, 3.8)
        ax = fig.subplots()
        chosen: dict[str, int] = {}
        layer_names: dict[int, str] = {}
        for (info, frame), colour in zip(data, colours, strict=True):
            table = _fuzziness(frame)
            at = _pick_step(info, table, step)
            chosen[info.id] = at
            layers = table.columns.to_numpy(dtype=float)
            values = table.loc[at].to_numpy(dtype=float)
            names = _names(frame)
            layer_names.update(names)
            epoch = frame.loc[frame["step"] == at, "epoch"].iloc[0]
            when = f"step {at}" + ("" if math.isnan(epoch) else f", epoch {epoch:g}")
            ax.plot(layers, values, linestyle="none", marker="o", markersize=4, color=colour,
                    gid=f"{info.id}:points",
                    label=f"{info.label}: D_l ({when})" if several else f"D_l ({when})")
            law = (_law_at(_laws(frame), at) if fit_first is None
                   else _refit(layers, values, fit_first))
            if law is None:
                continue
            line = fit_line(layers, values, law)
            if line is None:
                continue
            text = law_label(law["law_rho"], law["law_pearson_r"])
            if fit_first is not None:
                text += f", l ≥ {fit_first}"
            ax.plot(*line, color=colour, linestyle="--", linewidth=1.2, gid=f"{info.id}:fit",
                    label=f"{info.label}: {text}" if several else text)
        _log_y(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer l (0 = input)")
        ax.set_ylabel("separation fuzziness D_l (log scale)")
        if several:
            title = f"Equi-separation: {prefix}" if prefix else "Equi-separation"
        else:
            info = data[0][0]
            title = f"Equi-separation: {info.name} (step {chosen[info.id]})"
        ax.set_title(title)
        ax.legend(loc="best")
        style.mark_panel(ax, figure="equisep", runs=[i.id for i, _ in data], steps=chosen,
                         probe=probe, measure=FUZZINESS, y="D_l (log axis)",
                         layers=dict(sorted(layer_names.items())))
        return fig


def equisep_dynamics(
    store: StoreLike, run: str, *, probe: str = "separation", x: str = "auto",
) -> Figure:
    """How the separation of every layer and the law's fit evolve during training.

    Panels: (A) D_l per layer over training (log y, one line per layer coloured by depth,
    colour bar), (B) Pearson r of the fit, (C) the decay ratio ρ. Every panel marks each
    measured point (and nothing else: the lines only join measurements). x is the epoch where the
    store knows increasing epochs (``x="auto"``, the default), else the step; ``x="step"`` or
    ``x="epoch"`` force one (epoch fails when unknown).
    """
    if x not in ("auto", "step", "epoch"):
        raise FigureError(f"x must be 'auto', 'step' or 'epoch', got {x!r}")
    with open_runs(store) as s, style.styled():
        (info,), _ = select_runs(s, [run])
        frame = _read(s, info, probe)
        table = _fuzziness(frame)
        laws = _laws(frame).reindex(table.index)
        xs, xlabel = x_axis(s, info, frame, table.index, x)
        names = _names(frame)
        indexes = sorted(names)
        norm = Normalize(min(indexes), max(max(indexes), min(indexes) + 1))
        cmap = style.truncated_cmap(style.LAYER_CMAP)
        fig = style.new_figure(3 * style.PANEL_WIDTH * 1.25 + 0.8, style.PANEL_HEIGHT * 1.5 + 0.6)
        fig.suptitle(f"Separation during training: {info.name}")
        axes = fig.subplots(1, 3, sharex=True)
        steps = [int(v) for v in table.index]

        # a marker on every measured point and only there: lines merely join measurements
        marker = {"marker": "o", "markersize": 2.5 if len(xs) <= 40 else 1.2}
        ax = axes[0]
        for index in table.columns:
            ax.plot(xs, table[index].to_numpy(dtype=float), color=cmap(norm(index)),
                    gid=names[int(index)], label=names[int(index)], **marker)
        _log_y(ax)
        ax.set_title("(A) fuzziness per layer")
        ax.set_ylabel("D_l (log scale)")
        style.mark_panel(ax, figure="equisep_dynamics", run=info.id, panel="A",
                         measure=FUZZINESS, x=xlabel, steps=steps, probe=probe)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer l")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))

        for ax, key, measure, title, ylabel in (
            (axes[1], "B", "law_pearson_r", "(B) Pearson r of the fit", "r(l, ln D_l)"),
            (axes[2], "C", "law_rho", "(C) decay ratio ρ", "ρ = exp(slope)"),
        ):
            values = laws[measure].to_numpy(dtype=float)
            ax.plot(xs, values, color="C0", gid=measure, **marker)
            if not np.isfinite(values).any():
                ax.text(0.5, 0.5, "no fit stored", transform=ax.transAxes, ha="center",
                        va="center", color="0.4")
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            style.mark_panel(ax, figure="equisep_dynamics", run=info.id, panel=key,
                             measure=measure, x=xlabel, steps=steps, probe=probe)
        for ax in axes:
            ax.set_xlabel(xlabel)
        return fig
