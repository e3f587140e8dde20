"""Figures of the activation-pattern paper and plots of any measure, from a run store.

    from learnscope import viz
    fig = viz.figure1("runs/learnscope.db", experiment="early")   # a matplotlib Figure
    viz.save(fig, "figure1.pdf")                                   # .png or .pdf

Functions (each returns a ``matplotlib.figure.Figure``; runs are ids, id prefixes or names):
`figure1` (early phase, first and last layer), `figure2` (mean relative entropy per layer over
seeds), `figure3` (layer x epoch heatmaps per method), `figure4` (the five measures over the
whole training), `heatmap` and `curves` (any measure of one run), `equisep` (separation
fuzziness per layer and the equi-separation fit at one step), `equisep_dynamics` (both over
training), `trajectory_figure` (the weight trajectories of a ``TrajectoryMap`` in the projected
plane, over its score landscape), `trajectory_figure_from_store` (the same for a run's stored
map), `save_trajectory_figure`, `save`. Data panels are
marked: ``ax.get_label() == "panel"`` and ``ax.panel_info``; see `learnscope.viz.style`.
matplotlib is imported only when one of them is first used. Command line: `learnscope plot`.
"""

from __future__ import annotations

from typing import Any

from learnscope.viz.runs import FigureError

__all__ = ["FigureError", "curves", "equisep", "equisep_dynamics", "figure1", "figure2",
           "figure3", "figure4", "heatmap", "panels", "save", "save_trajectory_figure",
           "trajectory_figure", "trajectory_figure_from_store"]

_LAZY = {"curves", "figure1", "figure2", "figure3", "figure4", "heatmap", "save"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from learnscope.viz import figures

        return getattr(figures, name)
    if name in ("equisep", "equisep_dynamics"):
        # in `separation`, not `equisep`: a submodule named like the function would replace it
        # as the package attribute `viz.equisep` once imported
        from learnscope.viz import separation

        return getattr(separation, name)
    if name in ("save_trajectory_figure", "trajectory_figure", "trajectory_figure_from_store"):
        from learnscope.viz import trajectories

        return getattr(trajectories, name)
    if name == "panels":
        from learnscope.viz.style import panels

        return panels
    raise AttributeError(f"module 'learnscope.viz' has no attribute {name!r}")
