"""Weight trajectories in the projected plane: the figure of a :class:`TrajectoryMap`.

    from learnscope.trajectory.maps import load_map
    from learnscope import viz
    fig = viz.trajectory_figure(tmap, score="test_accuracy")       # a matplotlib Figure
    fig = viz.trajectory_figure_from_store("runs/learnscope.db", "trajectories-mnist")
    viz.save(fig, "trajectories.png")

What is drawn (one panel, ``ax.get_label() == "panel"``):

- one line per network through its projected snapshots in training order (``gid
  "line:<i>"``), coloured per network: with several groups, the networks of a group share a
  colour family (blues, oranges, greens, ...) and a line style; with one group, every network
  has its own colour (matplotlib's tab10);
- the snapshots as points shaded by a score (``gid "points:<i>"``, a sequential colour map,
  colour bar labelled with the score's name; snapshots without a value in grey), edged in the
  network's colour;
- the first snapshot ringed by a hollow circle (``"start:<i>"``, its score colour shows inside)
  and the last as a star (``"end:<i>"``);
- under them, when the map has one, the score landscape as a grey-scale heatmap (``gid
  "landscape"``, its own colour bar; transparent where the score is unknown, e.g. outside the
  snapshots' convex hull for an interpolated landscape, and where no snapshot supports it:
  farther than ``maps.support_radius`` (twice the median step between consecutive snapshots)
  from every snapshot). When the landscape shows the same score as the points, both colour bars
  span the same range.

The legend lists the networks with their path length and start-to-end distance in the plane,
the groups (by line style), the start/end markers and the landscape's support radius. Axis
labels come from ``tmap.meta["axis_labels"]`` (two strings, e.g. ``["PC1 (41%)", "PC2
(17%)"]``) when present, else "projected axis 1/2".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from learnscope.store import StoreError
from learnscope.trajectory.maps import (
    SUPPORT_STEPS,
    Landscape,
    TrajectoryMap,
    TrajectoryMapError,
    load_map,
    support_mask,
    support_radius,
)
from learnscope.viz import style
from learnscope.viz.drawing import _edges, _norm  # cell edges; one colour range for several
from learnscope.viz.runs import FigureError, StoreLike, open_runs

__all__ = [
    "GROUP_FAMILIES",
    "LANDSCAPE_COLOURS",
    "save_trajectory_figure",
    "trajectory_colours",
    "trajectory_figure",
    "trajectory_figure_from_store",
]


#: Colour families of the groups, in order of their first network (then repeated).
GROUP_FAMILIES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
#: Line styles of the groups, in the same order.
GROUP_STYLES = ("-", "--", ":", "-.")
#: The landscape's colour map: light grey (low) to dark grey (high); unknown is transparent.
LANDSCAPE_COLOURS = ("#ececec", "#5f5f5f")
#: Colour of snapshots that have no value of the drawn score.
MISSING_COLOUR = "#bdbdbd"


# --------------------------------------------------------------------------- colours


def _groups(tmap: TrajectoryMap) -> list[str]:
    """The distinct groups, in order of their first network."""
    return list(dict.fromkeys(tmap.groups))


def trajectory_colours(tmap: TrajectoryMap) -> tuple[list[Any], list[str]]:
    """(colour, line style) per network, as the figure draws them (see the module docstring)."""
    groups = _groups(tmap)
    if len(groups) < 2:
        cmap = colormaps["tab10"]
        return [cmap(i % 10) for i in range(len(tmap))], ["-"] * len(tmap)
    colours: list[Any] = []
    styles: list[str] = []
    members = {g: [i for i, h in enumerate(tmap.groups) if h == g] for g in groups}
    for i, group in enumerate(tmap.groups):
        g = groups.index(group)
        family = colormaps[GROUP_FAMILIES[g % len(GROUP_FAMILIES)]]
        k, count = members[group].index(i), len(members[group])
        colours.append(family(0.75 if count == 1 else 0.9 - 0.45 * k / (count - 1)))
        styles.append(GROUP_STYLES[g % len(GROUP_STYLES)])
    return colours, styles


def _landscape_cmap():
    return LinearSegmentedColormap.from_list("learnscope-landscape", LANDSCAPE_COLOURS) \
        .with_extremes(bad=(1.0, 1.0, 1.0, 0.0))


def _score_cmap():
    return colormaps[style.VALUE_CMAP].with_extremes(bad=MISSING_COLOUR)



# --------------------------------------------------------------------------- the figure


def _pick_score(tmap: TrajectoryMap, score: str | None) -> str | None:
    if score is not None:
        if score not in tmap.scores:
            known = ", ".join(tmap.scores) or "none"
            raise FigureError(f"the trajectory map has no score {score!r} (its scores: {known}); "
                              "pass one of them (--score NAME) or none for the default")
        return score
    preferred = tmap.meta.get("score")
    if isinstance(preferred, str) and preferred in tmap.scores:
        return preferred
    if tmap.landscape is not None and tmap.landscape.score in tmap.scores:
        return tmap.landscape.score
    return next(iter(tmap.scores), None)


def _axis_labels(tmap: TrajectoryMap) -> tuple[str, str]:
    labels = tmap.meta.get("axis_labels")
    if isinstance(labels, list) and len(labels) == 2 and all(isinstance(x, str) for x in labels):
        return labels[0], labels[1]
    return "projected axis 1", "projected axis 2"


def _draw_landscape(fig, ax, land: Landscape, norm: Normalize, supported: np.ndarray):
    values = np.ma.masked_array(land.values, mask=~supported | ~np.isfinite(land.values))
    mesh = ax.pcolormesh(_edges(land.x), _edges(land.y), values,
                         cmap=_landscape_cmap(), norm=norm, shading="flat", zorder=0,
                         rasterized=True)
    mesh.set_gid("landscape")
    how = "interpolated" if land.method == "interpolate" else "evaluated"
    fig.colorbar(mesh, ax=ax, label=f"{land.score} (landscape, {how})", pad=0.02)
    return mesh


def trajectory_figure(
    tmap: TrajectoryMap, *, score: str | None = None, landscape: bool = True, ax=None,
) -> Figure:
    """Draw the trajectories of ``tmap`` in the projected plane (see the module docstring).

    ``score``: the score that shades the points (default: ``tmap.meta["score"]`` when the map
    has that score, else the landscape's score when the map has it, else the map's first score;
    a map without scores shades nothing). ``landscape``:
    draw the map's landscape under the trajectories (when it has one). ``ax``: draw into this
    axes (colour bars are added to its figure) instead of a new figure. Returns the figure.
    """
    if not isinstance(tmap, TrajectoryMap):
        raise TypeError(f"trajectory_figure needs a TrajectoryMap, got {type(tmap).__name__}")
    chosen = _pick_score(tmap, score)
    land = tmap.landscape if landscape else None
    colours, styles = trajectory_colours(tmap)
    groups = _groups(tmap)
    with style.styled():
        if ax is None:
            # the legend under the panel: networks, groups, start, end, landscape note
            entries = len(tmap) + (len(groups) if len(groups) > 1 else 0) + 3
            fig = style.new_figure(7.4, 4.4 + 0.17 * entries)
            ax = fig.subplots()
        else:
            fig = ax.figure
        values = [] if chosen is None else tmap.scores[chosen]
        shared = land is not None and chosen is not None and land.score == chosen
        point_norm = _norm(values + ([land.values] if shared else []))
        radius = support_radius(tmap.coords)
        if land is not None:
            supported = support_mask(land, tmap.coords, radius)
            land_norm = point_norm if shared else _norm([land.values[supported]])
            _draw_landscape(fig, ax, land, land_norm, supported)
            ax.grid(False)
        lengths, distances = tmap.path_lengths(), tmap.start_to_end()
        cmap = _score_cmap()
        mappable = None
        for i, (name, coords) in enumerate(zip(tmap.networks, tmap.coords, strict=True)):
            colour, line_style = colours[i], styles[i]
            ax.plot(coords[:, 0], coords[:, 1], color=colour, linestyle=line_style,
                    linewidth=1.3, zorder=2, gid=f"line:{i}", label=name)
            if chosen is not None:
                points = ax.scatter(coords[:, 0], coords[:, 1], c=tmap.scores[chosen][i],
                                    cmap=cmap, norm=point_norm, s=16, edgecolors=[colour],
                                    linewidths=0.7, zorder=3, plotnonfinite=True,
                                    gid=f"points:{i}")
                if mappable is None:
                    mappable = points
            else:
                ax.scatter(coords[:, 0], coords[:, 1], color=[colour], s=10, zorder=3,
                           gid=f"points:{i}")
            ax.plot(coords[:1, 0], coords[:1, 1], linestyle="none", marker="o", markersize=10,
                    markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.5,
                    zorder=4, gid=f"start:{i}")  # a ring around the first point: its score shows
            ax.plot(coords[-1:, 0], coords[-1:, 1], linestyle="none", marker="*",
                    markersize=12, markerfacecolor=colour, markeredgecolor="black",
                    markeredgewidth=0.6, zorder=4, gid=f"end:{i}")
        if mappable is not None:
            fig.colorbar(mappable, ax=ax, label=chosen, pad=0.02)
        if land is not None:
            ax.set_xlim(_edges(land.x)[[0, -1]])
            ax.set_ylim(_edges(land.y)[[0, -1]])
        else:
            ax.margins(0.08)
        xlabel, ylabel = _axis_labels(tmap)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"Weight trajectories ({tmap.trajectory}): {tmap.projection}")
        handles = [Line2D([], [], color=c, linestyle=s, linewidth=1.3,
                          label=(f"{name} ({g})" if len(groups) > 1 and g else name)
                          + f": path {length:.3g}, start-end {distance:.3g}")
                   for name, c, s, g, length, distance in zip(
                       tmap.networks, colours, styles, tmap.groups, lengths, distances,
                       strict=True)]
        if len(groups) > 1:
            handles += [Line2D([], [], color="0.35", linestyle=GROUP_STYLES[k % len(GROUP_STYLES)],
                               label=f"group: {g or '(none)'}") for k, g in enumerate(groups)]
        handles += [
            Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                   markeredgecolor="black", label="start"),
            Line2D([], [], linestyle="none", marker="*", markersize=11, markerfacecolor="0.4",
                   markeredgecolor="black", markeredgewidth=0.6, label="end"),
        ]
        if land is not None:
            handles.append(Line2D([], [], linestyle="none", label=(
                f"landscape drawn within {radius:.3g} of a snapshot "
                f"({SUPPORT_STEPS:g} x the median step between snapshots)")))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncols=1, frameon=False)
        style.mark_panel(ax, figure="trajectories", networks=list(tmap.networks),
                         path_lengths=lengths, start_to_end=distances, support_radius=radius,
                         runs=list(tmap.runs), groups=list(tmap.groups), score=chosen,
                         landscape=None if land is None else land.score,
                         trajectory=tmap.trajectory, projection=tmap.projection)
        return fig


def trajectory_figure_from_store(
    store: StoreLike, run: str, *, score: str | None = None, landscape: bool = True,
) -> Figure:
    """:func:`trajectory_figure` of the trajectory map of ``run`` (id, id prefix or name).

    ``store`` is an open store or the path of one (opened read-only). A missing store or run, a
    run without a trajectory map, an unreadable map or an unknown score raise
    :class:`FigureError` saying what to do.
    """
    with open_runs(store) as s:
        try:
            tmap = load_map(s, run)
        except (StoreError, TrajectoryMapError) as error:
            raise FigureError(str(error)) from None
        fig = trajectory_figure(tmap, score=score, landscape=landscape)
        (ax,) = style.panels(fig)
        ax.panel_info["run"] = str(s.run(run)["id"])
        return fig


def save_trajectory_figure(
    tmap: TrajectoryMap, path: str | os.PathLike, *, score: str | None = None,
    landscape: bool = True,
) -> Path:
    """Draw ``tmap`` (see :func:`trajectory_figure`) and write it to ``path`` (.png or .pdf)."""
    from learnscope.viz.figures import save

    return save(trajectory_figure(tmap, score=score, landscape=landscape), path)
