"""viz.trajectory_figure and `learnscope plot trajectories`: the drawn arrays (lines, points,
start/end markers, landscape image) are compared with the TrajectoryMap they come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from typer.testing import CliRunner

import learnscope.store as store_mod
from learnscope import viz
from learnscope.cli import app
from learnscope.trajectory.maps import TrajectoryMap, save_map, score_landscape
from learnscope.viz.runs import FigureError
from learnscope.viz.trajectories import trajectory_colours


def make_map(landscape: bool = True, groups: tuple[str, ...] = ("scratch", "scratch", "tuned"),
             scores: bool = True) -> TrajectoryMap:
    rng = np.random.default_rng(4)
    sizes = (6, 8, 5)[: len(groups)]
    coords = [rng.normal(size=(n, 2)).cumsum(axis=0) for n in sizes]
    accuracy = [rng.uniform(0.2, 0.95, n) for n in sizes]
    accuracy[0][1] = np.nan  # a snapshot without a score is still drawn
    loss = [rng.uniform(0.1, 2.0, n) for n in sizes]
    land = score_landscape(coords, accuracy, resolution=15, score="test_accuracy") \
        if landscape else None
    return TrajectoryMap(
        networks=[f"net-{k}" for k in range(len(sizes))], runs=[""] * len(sizes),
        groups=list(groups), steps=[np.arange(n) * 10 for n in sizes], coords=coords,
        scores={"test_accuracy": accuracy, "loss": loss} if scores else {},
        trajectory="all", projection="PCA (fit on all)", landscape=land,
        meta={"axis_labels": ["PC1 (40%)", "PC2 (21%)"]},
    )


def by_gid(ax, gid: str):
    found = [a for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, (gid, found)
    return found[0]


def colorbar_labels(fig: Figure) -> list[str]:
    return sorted(a.get_ylabel() for a in fig.axes if a.get_label() == "<colorbar>")


def test_drawn_arrays_equal_the_map() -> None:
    tmap = make_map()
    fig = viz.trajectory_figure(tmap)
    (ax,) = viz.panels(fig)
    for i, coords in enumerate(tmap.coords):
        line = by_gid(ax, f"line:{i}")
        np.testing.assert_array_equal(line.get_xydata(), coords)
        points = by_gid(ax, f"points:{i}")
        np.testing.assert_array_equal(np.ma.getdata(points.get_offsets()), coords)
        assert not np.ma.is_masked(points.get_offsets())  # NaN-scored points are drawn too
        shaded = np.ma.filled(np.ma.asarray(points.get_array(), dtype=float), np.nan)
        np.testing.assert_array_equal(shaded, tmap.scores["test_accuracy"][i])
        start, end = by_gid(ax, f"start:{i}"), by_gid(ax, f"end:{i}")
        np.testing.assert_array_equal(start.get_xydata(), coords[:1])
        np.testing.assert_array_equal(end.get_xydata(), coords[-1:])
        assert (start.get_marker(), end.get_marker()) == ("o", "*")
    image = by_gid(ax, "landscape")
    values = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
    supported = supported_by_snapshots(tmap)
    np.testing.assert_array_equal(values, np.where(supported, tmap.landscape.values, np.nan))
    assert np.isnan(values).any()  # outside the hull: transparent, not extrapolated
    assert image.get_zorder() < by_gid(ax, "line:0").get_zorder()  # under the trajectories
    # one colour bar per shaded thing, labelled with the score
    assert colorbar_labels(fig) == ["test_accuracy", "test_accuracy (landscape, interpolated)"]
    # same score: the points and the landscape share the colour range
    assert by_gid(ax, "points:0").norm.vmin == image.norm.vmin
    assert by_gid(ax, "points:0").norm.vmax == image.norm.vmax
    finite = np.concatenate([*tmap.scores["test_accuracy"], values.ravel()])
    assert image.norm.vmin == np.nanmin(finite) and image.norm.vmax == np.nanmax(finite)
    (xmin, xmax), (ymin, ymax) = ax.get_xlim(), ax.get_ylim()
    assert xmin < tmap.landscape.x[0] < tmap.landscape.x[-1] < xmax
    assert ymin < tmap.landscape.y[0] < tmap.landscape.y[-1] < ymax
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1 (40%)", "PC2 (21%)")
    lengths, distances = path_measures(tmap)
    assert ax.panel_info == {
        "figure": "trajectories", "networks": tmap.networks, "runs": tmap.runs,
        "groups": tmap.groups, "score": "test_accuracy", "landscape": "test_accuracy",
        "trajectory": "all", "projection": "PCA (fit on all)", "path_lengths": lengths,
        "start_to_end": distances, "support_radius": support_radius_by_hand(tmap),
    }
    # each network's path length and start-to-end distance are printed in the legend
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, length, distance in zip(tmap.networks, lengths, distances, strict=True):
        (text,) = [t for t in texts if t.startswith(name)]
        assert text.endswith(f"path {length:.3g}, start-end {distance:.3g}")
    assert any(t.startswith("landscape drawn within") for t in texts)
    # the start marker is a ring: the first point's score colour shows through it
    assert by_gid(ax, "start:0").get_markerfacecolor() == "none"


def path_measures(tmap: TrajectoryMap) -> tuple[list[float], list[float]]:
    """Per network: summed segment lengths and first-to-last distance, by hand."""
    lengths = [float(sum(np.hypot(*(b - a)) for a, b in zip(c[:-1], c[1:], strict=True)))
               for c in tmap.coords]
    distances = [float(np.hypot(*(c[-1] - c[0]))) for c in tmap.coords]
    return lengths, distances


def support_radius_by_hand(tmap: TrajectoryMap) -> float:
    """Twice the median distance between consecutive snapshots of the same network."""
    steps = [np.hypot(*(b - a)) for c in tmap.coords for a, b in zip(c[:-1], c[1:], strict=True)]
    return 2.0 * float(np.median([s for s in steps if s > 0]))


def supported_by_snapshots(tmap: TrajectoryMap) -> np.ndarray:
    """Grid cells within the support radius of at least one snapshot (brute force)."""
    radius = support_radius_by_hand(tmap)
    points = np.concatenate(tmap.coords)
    land = tmap.landscape
    out = np.zeros(land.values.shape, dtype=bool)
    for j, y in enumerate(land.y):
        for i, x in enumerate(land.x):
            out[j, i] = min(np.hypot(x - px, y - py) for px, py in points) <= radius
    return out


def test_path_measures_and_landscape_support_of_the_map() -> None:
    from learnscope.trajectory.maps import map_rows, support_mask, support_radius

    tmap = make_map()
    lengths, distances = path_measures(tmap)
    np.testing.assert_allclose(tmap.path_lengths(), lengths, rtol=1e-12)
    np.testing.assert_allclose(tmap.start_to_end(), distances, rtol=1e-12)
    assert all(d <= length for d, length in zip(distances, lengths, strict=True))
    rows = map_rows(tmap)
    assert rows == [row for i, name in enumerate(tmap.networks)
                    for row in ((name, i, "path_length", tmap.path_lengths()[i]),
                                (name, i, "start_to_end", tmap.start_to_end()[i]))]
    assert support_radius(tmap.coords) == pytest.approx(support_radius_by_hand(tmap), rel=1e-12)
    supported = support_mask(tmap.landscape, tmap.coords)
    np.testing.assert_array_equal(supported, supported_by_snapshots(tmap))
    assert supported.any()
    # two networks far apart: the interpolation's hull bridges the gap, no snapshot supports it
    rng = np.random.default_rng(0)
    coords = [rng.normal(size=(6, 2)).cumsum(axis=0) * 0.3 + offset
              for offset in ((0.0, 0.0), (20.0, 5.0))]
    scores = [rng.uniform(0.2, 0.9, 6) for _ in coords]
    apart = TrajectoryMap(
        networks=["near", "far"], runs=["", ""], groups=["", ""],
        steps=[np.arange(6)] * 2, coords=coords, scores={"test_accuracy": scores},
        trajectory="all", projection="PCA",
        landscape=score_landscape(coords, scores, resolution=30, score="test_accuracy"))
    supported = support_mask(apart.landscape, apart.coords)
    np.testing.assert_array_equal(supported, supported_by_snapshots(apart))
    inside = np.isfinite(apart.landscape.values)
    assert (inside & ~supported).sum() > 0.3 * inside.sum()  # the gap is masked
    assert (inside & supported).any()
    fig = viz.trajectory_figure(apart)
    drawn = by_gid(viz.panels(fig)[0], "landscape").get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(drawn), ~(supported & inside))
    # a still network (all snapshots equal) falls back to 5% of the points' extent
    still = [np.zeros((3, 2)), np.array([[0.0, 0.0], [2.0, 0.0]])]
    assert support_radius(still) == pytest.approx(2 * 2.0)
    assert support_radius([np.zeros((3, 2)), np.ones((2, 2))]) == pytest.approx(0.05)


def test_colours_per_network_and_group() -> None:
    tmap = make_map(groups=("scratch", "scratch", "tuned"))
    fig = viz.trajectory_figure(tmap)
    (ax,) = viz.panels(fig)
    lines = [by_gid(ax, f"line:{i}") for i in range(3)]
    colours = [to_rgba(line.get_color()) for line in lines]
    assert len(set(colours)) == 3  # one colour per network
    assert colours == [to_rgba(c) for c in trajectory_colours(tmap)[0]]
    styles = [line.get_linestyle() for line in lines]
    assert styles[0] == styles[1] != styles[2]  # a line style per group
    blue, orange = colours[0], colours[2]
    assert blue[2] > blue[0] and orange[0] > orange[2]  # colour families: blues, oranges
    for i, colour in enumerate(colours):  # the markers carry the network's colour
        assert to_rgba(by_gid(ax, f"start:{i}").get_markeredgecolor()) == colour
        assert to_rgba(by_gid(ax, f"end:{i}").get_markerfacecolor()) == colour
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    paths = [f": path {length:.3g}, start-end {distance:.3g}"
             for length, distance in zip(*path_measures(tmap), strict=True)]
    assert legend[:-1] == [f"net-0 (scratch){paths[0]}", f"net-1 (scratch){paths[1]}",
                           f"net-2 (tuned){paths[2]}", "group: scratch", "group: tuned",
                           "start", "end"]
    assert legend[-1].startswith("landscape drawn within")
    single = make_map(groups=("", "", ""))
    (ax,) = viz.panels(viz.trajectory_figure(single))
    lines = [by_gid(ax, f"line:{i}") for i in range(3)]
    assert len({to_rgba(line.get_color()) for line in lines}) == 3
    assert {line.get_linestyle() for line in lines} == {"-"}
    paths = [f": path {length:.3g}, start-end {distance:.3g}"
             for length, distance in zip(*path_measures(single), strict=True)]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:-1] == [
        f"net-0{paths[0]}", f"net-1{paths[1]}", f"net-2{paths[2]}", "start", "end"]


def test_score_choice_and_landscape_switch() -> None:
    tmap = make_map()
    fig = viz.trajectory_figure(tmap, score="loss", landscape=False)
    (ax,) = viz.panels(fig)
    assert [a for a in ax.get_children() if a.get_gid() == "landscape"] == []
    assert colorbar_labels(fig) == ["loss"]
    for i in range(len(tmap)):
        np.testing.assert_array_equal(by_gid(ax, f"points:{i}").get_array(), tmap.scores["loss"][i])
    assert ax.panel_info["score"] == "loss" and ax.panel_info["landscape"] is None
    # a landscape of another score keeps its own range
    fig = viz.trajectory_figure(tmap, score="loss")
    (ax,) = viz.panels(fig)
    assert colorbar_labels(fig) == ["loss", "test_accuracy (landscape, interpolated)"]
    assert by_gid(ax, "landscape").norm.vmax == pytest.approx(np.nanmax(tmap.landscape.values))
    # the score the map was made for comes first, then the landscape's
    tmap.meta["score"] = "loss"
    (ax,) = viz.panels(viz.trajectory_figure(tmap))
    assert ax.panel_info["score"] == "loss"
    tmap.meta["score"] = "gone"
    (ax,) = viz.panels(viz.trajectory_figure(tmap))
    assert ax.panel_info["score"] == "test_accuracy"
    with pytest.raises(FigureError, match="no score 'bogus' .*test_accuracy, loss"):
        viz.trajectory_figure(tmap, score="bogus")
    # a map without landscape and without scores: plain coloured points, no colour bar
    bare = make_map(landscape=False, scores=False)
    fig = viz.trajectory_figure(bare)
    (ax,) = viz.panels(fig)
    assert colorbar_labels(fig) == [] and ax.panel_info["score"] is None
    colour = to_rgba(by_gid(ax, "line:1").get_color())
    assert [tuple(c) for c in by_gid(ax, "points:1").get_facecolors()] == [colour]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1 (40%)", "PC2 (21%)")


def test_draws_into_a_given_axes() -> None:
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert viz.trajectory_figure(make_map(), ax=right) is fig
    assert viz.panels(fig) == [right] and left.get_label() != "panel"


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, str, TrajectoryMap]:
    path = tmp_path_factory.mktemp("trajectories") / "runs.db"
    tmap = make_map()
    with store_mod.open(path) as s:
        run = s.create_run("traj-run", {})
        s.create_run("no-map", {})
        save_map(s, run, tmap)
    return path, run, tmap


def test_from_store_and_saving(stored, tmp_path: Path) -> None:
    path, run, tmap = stored
    fig = viz.trajectory_figure_from_store(path, "traj-run")
    (ax,) = viz.panels(fig)
    assert ax.panel_info["run"] == run
    np.testing.assert_array_equal(by_gid(ax, "line:2").get_xydata(), tmap.coords[2])
    with pytest.raises(FigureError, match="has no trajectory map.*learnscope run trajectories"):
        viz.trajectory_figure_from_store(path, "no-map")
    with pytest.raises(FigureError, match="No run matches 'nope'"):
        viz.trajectory_figure_from_store(path, "nope")
    out = viz.save_trajectory_figure(tmap, tmp_path / "t.png", score="loss")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_cli_writes_the_figure_and_fails_clearly(stored, tmp_path: Path) -> None:
    path, run, _ = stored
    runner = CliRunner()
    out = tmp_path / "figs" / "traj.png"
    result = runner.invoke(app, ["plot", "trajectories", "traj-run", "--store", str(path),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and str(out) in result.output
    result = runner.invoke(app, ["plot", "trajectories", run[:-2], "-s", str(path), "-o",
                                 str(tmp_path / "t2"), "--format", "png,pdf", "--score", "loss",
                                 "--no-landscape"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t2.png").is_file()
    assert (tmp_path / "t2.pdf").read_bytes().startswith(b"%PDF-1.")
    for args, expected in (
        (["no-map"], "has no trajectory map"),
        (["no-map"], "learnscope project RUN..."),
        (["nope"], "No run matches 'nope'"),
        (["traj-run", "--score", "bogus"], "no score 'bogus'"),
    ):
        result = runner.invoke(app, ["plot", "trajectories", *args, "-s", str(path), "-o",
                                     str(tmp_path / "x.png")])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and expected in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()
    result = runner.invoke(app, ["plot", "trajectories", "traj-run", "-s",
                                 str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no run store" in result.output
