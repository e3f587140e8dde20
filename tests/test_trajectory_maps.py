"""learnscope.trajectory.maps: the TrajectoryMap file round trip, its validation, the score
landscape (checked against scipy's Delaunay triangulation and closed-form functions) and the
helpers that keep a map in a run's artifact folder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import Delaunay

import learnscope.store as store_mod
from learnscope.store import StoreError
from learnscope.trajectory import maps
from learnscope.trajectory.maps import (
    MAP_FILE,
    MAP_PROBE,
    Landscape,
    MapNotFoundError,
    TrajectoryMap,
    TrajectoryMapError,
    has_map,
    load_map,
    map_folder,
    save_map,
    score_landscape,
)


def make_map(landscape: bool = False, seed: int = 0) -> TrajectoryMap:
    """Three networks with 5, 7 and 4 snapshots, two scores (with gaps), two groups."""
    rng = np.random.default_rng(seed)
    sizes = (5, 7, 4)
    coords = [rng.normal(size=(n, 2)).cumsum(axis=0) for n in sizes]
    steps = [np.arange(n) * 50 for n in sizes]
    accuracy = [rng.uniform(0.1, 0.9, n) for n in sizes]
    accuracy[1][2] = np.nan
    loss = [rng.uniform(0.1, 3.0, n) for n in sizes]
    land = None
    if landscape:
        land = score_landscape(coords, accuracy, resolution=12, score="test_accuracy")
    return TrajectoryMap(
        networks=["mlp-a", "mlp-b", "mlp-c"],
        runs=["run-a-1", "run-b-2", ""],
        groups=["scratch", "scratch", "pretrained"],
        steps=steps,
        coords=coords,
        scores={"test_accuracy": accuracy, "loss": loss},
        trajectory="all",
        projection="autoencoder (fit on first)",
        landscape=land,
        meta={"fit_on": "mlp-a", "config": {"lr": 0.1, "layers": [64, 32], "nan": float("nan")},
              "seed": 3},
    )


def assert_maps_equal(a: TrajectoryMap, b: TrajectoryMap) -> None:
    """Field by field (independent of TrajectoryMap.__eq__)."""
    assert (a.networks, a.runs, a.groups) == (b.networks, b.runs, b.groups)
    assert (a.trajectory, a.projection) == (b.trajectory, b.projection)
    assert json.dumps(a.meta, sort_keys=True) == json.dumps(b.meta, sort_keys=True)
    for x, y in zip(a.steps, b.steps, strict=True):
        assert x.dtype == y.dtype == np.int64 and np.array_equal(x, y)
    for x, y in zip(a.coords, b.coords, strict=True):
        assert x.dtype == y.dtype == np.float64 and np.array_equal(x, y)
    assert list(a.scores) == list(b.scores)
    for name in a.scores:
        for x, y in zip(a.scores[name], b.scores[name], strict=True):
            assert x.dtype == y.dtype == np.float64 and np.array_equal(x, y, equal_nan=True)
    assert (a.landscape is None) == (b.landscape is None)
    if a.landscape is not None:
        la, lb = a.landscape, b.landscape
        assert (la.method, la.score) == (lb.method, lb.score)
        assert np.array_equal(la.x, lb.x) and np.array_equal(la.y, lb.y)
        assert np.array_equal(la.values, lb.values, equal_nan=True)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("landscape", [False, True])
def test_save_load_round_trip(tmp_path: Path, landscape: bool) -> None:
    tmap = make_map(landscape)
    path = tmap.save(tmp_path / "sub" / "map.npz")
    assert path == tmp_path / "sub" / "map.npz"
    loaded = TrajectoryMap.load(path)
    assert_maps_equal(tmap, loaded)
    assert loaded == tmap
    assert np.isnan(loaded.meta["config"]["nan"])
    assert [p.name for p in path.parent.iterdir()] == ["map.npz"]  # no temporary file left
    with np.load(path, allow_pickle=False) as data:  # plain arrays only: no pickle needed
        names = set(data.files)
        assert all(data[name].dtype != object for name in names)
    assert ("landscape_values" in names) == landscape
    assert zipfile.is_zipfile(path)


def test_maps_own_their_arrays() -> None:
    coords = np.zeros((3, 2))
    tmap = TrajectoryMap(["n"], [""], [""], [[0, 1, 2]], [coords], {}, "all", "pca")
    coords[0, 0] = 5.0
    assert tmap.coords[0][0, 0] == 0.0
    assert tmap.steps[0].dtype == np.int64


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_map().save(tmp_path / "map.npz")
    before = path.read_bytes()

    def broken(stream, **arrays):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(maps.npz_file.np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        make_map(landscape=True).save(path)
    assert path.read_bytes() == before  # the old map is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["map.npz"]


def test_load_reports_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No trajectory map file"):
        TrajectoryMap.load(tmp_path / "none.npz")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(TrajectoryMapError, match="not a learnscope trajectory map"):
        TrajectoryMap.load(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(TrajectoryMapError, match="not a readable trajectory map"):
        TrajectoryMap.load(text)
    newer = tmp_path / "newer.npz"
    header = {"format": "learnscope.trajectory-map", "version": 99}
    np.savez(newer, header=np.array(json.dumps(header)))
    with pytest.raises(TrajectoryMapError, match="newer learnscope"):
        TrajectoryMap.load(newer)
    cut = tmp_path / "cut.npz"
    path = make_map().save(tmp_path / "full.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "coords_1"}
    np.savez(cut, **arrays)
    with pytest.raises(TrajectoryMapError, match="incomplete trajectory map"):
        TrajectoryMap.load(cut)


# --------------------------------------------------------------------------- validation


def fields(**change):
    tmap = make_map(landscape=True)
    base = dict(networks=tmap.networks, runs=tmap.runs, groups=tmap.groups, steps=tmap.steps,
                coords=tmap.coords, scores=tmap.scores, trajectory="all", projection="pca",
                landscape=tmap.landscape, meta={})
    base.update(change)
    return base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"networks": []}, "at least one network"),
        ({"networks": "abc"}, "networks must be a list of strings"),
        ({"runs": ["a", "b"]}, "runs has 2 entries but there are 3 networks"),
        ({"groups": ["g"] * 4}, "groups has 4 entries"),
        ({"groups": ["g", 1, "g"]}, r"groups\[1\] must be a string"),
        ({"steps": [np.arange(5), np.arange(7)]}, "one array per network"),
        ({"steps": [np.arange(5), np.arange(7) + 0.5, np.arange(4)]}, "whole numbers"),
        ({"steps": [np.arange(5), np.zeros(0), np.arange(4)]}, "non-empty"),
        ({"coords": [np.zeros((5, 2)), np.zeros((6, 2)), np.zeros((4, 2))]},
         r"coords\[1\] \(mlp-b\) must have shape \(n_snapshots, 2\) = \(7, 2\)"),
        ({"coords": [np.zeros((5, 3)), np.zeros((7, 2)), np.zeros((4, 2))]}, "got \\(5, 3\\)"),
        ({"coords": [np.full((5, 2), np.nan), np.zeros((7, 2)), np.zeros((4, 2))]},
         "non-finite"),
        ({"scores": {"acc": [np.zeros(5), np.zeros(7)]}}, "one array per network"),
        ({"scores": {"acc": [np.zeros(5), np.zeros(6), np.zeros(4)]}}, "one value per snapshot"),
        ({"scores": {"": [np.zeros(5), np.zeros(7), np.zeros(4)]}}, "non-empty strings"),
        ({"scores": [1, 2]}, "scores must be a dict"),
        ({"trajectory": None}, "trajectory must be a string"),
        ({"landscape": "grid"}, "landscape must be a Landscape"),
        ({"meta": {"f": object()}}, "cannot be stored as JSON"),
        ({"meta": {1: "x"}}, "keys must be strings"),
    ],
)
def test_inconsistent_maps_are_refused(change: dict, message: str) -> None:
    with pytest.raises(TrajectoryMapError, match=message):
        TrajectoryMap(**fields(**change))


def test_meta_numpy_values_become_json() -> None:
    tmap = TrajectoryMap(**fields(meta={"a": np.float32(0.5), "b": (np.int64(2), 3),
                                        "c": np.arange(3)}))
    assert tmap.meta == {"a": 0.5, "b": [2, 3], "c": [0, 1, 2]}
    assert type(tmap.meta["b"][0]) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": [0.0]}, "at least 2"),
        ({"x": [0.0, 0.0, 1.0]}, "strictly increasing"),
        ({"y": [[0.0, 1.0]]}, "1-D"),
        ({"values": np.zeros((3, 2))}, r"shape \(len\(y\), len\(x\)\) = \(2, 3\)"),
        ({"method": "cubic"}, "must be one of interpolate, evaluate"),
        ({"score": 3}, "score must be a string"),
    ],
)
def test_inconsistent_landscapes_are_refused(kwargs: dict, message: str) -> None:
    base = {"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0], "values": np.zeros((2, 3)),
            "method": "interpolate", "score": "acc"}
    base.update(kwargs)
    with pytest.raises(TrajectoryMapError, match=message):
        Landscape(**base)


# --------------------------------------------------------------------------- landscapes


def plane(points: np.ndarray) -> np.ndarray:
    return 2.0 * points[..., 0] - 3.0 * points[..., 1] + 0.5


def test_interpolation_is_exact_inside_the_hull_and_nan_outside() -> None:
    rng = np.random.default_rng(1)
    coords = [rng.uniform(-1, 2, size=(15, 2)), rng.uniform(0, 3, size=(12, 2))]
    scores = [plane(c) for c in coords]
    scores[0][[2, 7]] = np.nan  # left out: the hull is the hull of the scored points
    land = score_landscape(coords, scores, resolution=25, margin=0.2, score="acc")
    assert (land.method, land.score) == ("interpolate", "acc")
    assert land.x.shape == land.y.shape == (25,) and land.values.shape == (25, 25)
    points = np.concatenate(coords)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = high - low
    assert land.x[0] == pytest.approx(low[0] - 0.2 * extent[0])
    assert land.x[-1] == pytest.approx(high[0] + 0.2 * extent[0])
    assert land.y[0] == pytest.approx(low[1] - 0.2 * extent[1])
    assert land.y[-1] == pytest.approx(high[1] + 0.2 * extent[1])
    assert np.allclose(np.diff(land.x), np.diff(land.x)[0])  # regular
    known = points[np.isfinite(np.concatenate(scores))]
    gx, gy = np.meshgrid(land.x, land.y)
    grid = np.stack([gx, gy], axis=-1)
    inside = Delaunay(known).find_simplex(grid.reshape(-1, 2)).reshape(gx.shape) >= 0
    assert inside.any() and (~inside).any()
    assert np.all(np.isnan(land.values[~inside]))
    np.testing.assert_allclose(land.values[inside], plane(grid)[inside], rtol=0, atol=1e-9)
    # the same from one stacked array of points and scores
    again = score_landscape(points, np.concatenate(scores), resolution=25, margin=0.2,
                            score="acc")
    assert again == land


def test_interpolation_needs_an_area() -> None:
    line = np.column_stack([np.arange(5.0), 2 * np.arange(5.0)])
    with pytest.raises(ValueError, match="lie on one line"):
        score_landscape(line, np.arange(5.0))
    with pytest.raises(ValueError, match="at least 3 distinct points"):
        score_landscape(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                        [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="one value per point: 3 points but 2"):
        score_landscape(np.eye(3)[:, :2], [1.0, 2.0])
    with pytest.raises(ValueError, match="needs scores"):
        score_landscape(np.eye(3)[:, :2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 1}, "resolution must be an integer >= 2"),
        ({"resolution": 2.5}, "resolution must be an integer >= 2"),
        ({"resolution": True}, "resolution must be an integer >= 2"),
        ({"margin": -0.1}, "margin must be a finite number >= 0"),
        ({"margin": float("nan")}, "margin must be a finite number >= 0"),
        ({"method": "cubic"}, "method must be one of 'interpolate', 'evaluate'"),
        ({"decode": lambda p: p}, "only used by method='evaluate'"),
        ({"method": "evaluate"}, "needs decode"),
        ({"score": ""}, "score must be a non-empty name"),
    ],
)
def test_landscape_arguments_are_checked(kwargs: dict, message: str) -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=message):
        score_landscape(points, np.arange(4.0), **kwargs)
    with pytest.raises(ValueError, match="non-finite"):
        score_landscape(np.array([[0.0, np.nan], [1.0, 0.0], [0.0, 1.0]]), np.arange(3.0))


def test_evaluate_scores_every_grid_point() -> None:
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(10, 2))
    matrix = rng.normal(size=(2, 5))
    offset = rng.normal(size=5)
    batches: list[int] = []

    def decode(points: np.ndarray) -> np.ndarray:
        batches.append(points.shape[0])
        return points @ matrix + offset

    calls: list[np.ndarray] = []

    def evaluate(weights: np.ndarray) -> float:
        calls.append(weights)
        return float(weights @ weights + weights[0] * weights[1])

    land = score_landscape(coords, resolution=7, margin=0.05, method="evaluate",
                           decode=decode, evaluate=evaluate, score="loss")
    assert (land.method, land.score) == ("evaluate", "loss")
    assert len(calls) == 49 and sum(batches) == 49
    gx, gy = np.meshgrid(land.x, land.y)
    w = np.stack([gx, gy], axis=-1) @ matrix + offset  # (7, 7, 5), independent of decode order
    want = (w * w).sum(axis=-1) + w[..., 0] * w[..., 1]
    np.testing.assert_allclose(land.values, want, rtol=1e-12)
    assert land.x[0] == pytest.approx(coords[:, 0].min() - 0.05 * np.ptp(coords[:, 0]))


def test_evaluate_on_points_without_extent_and_bad_decoders() -> None:
    same_x = np.column_stack([np.ones(4), np.arange(4.0)])
    land = score_landscape(same_x, resolution=3, margin=0.0, method="evaluate",
                           decode=lambda p: p, evaluate=lambda w: w[0])
    assert np.all(np.diff(land.x) > 0) and land.x.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(land.values, np.tile(land.x, (3, 1)))
    with pytest.raises(ValueError, match="one weight vector per grid point"):
        score_landscape(same_x, resolution=3, method="evaluate",
                        decode=lambda p: p[0], evaluate=lambda w: 0.0)
    with pytest.raises(ValueError, match="one number per weight vector"):
        score_landscape(same_x, resolution=3, method="evaluate",
                        decode=lambda p: p, evaluate=lambda w: "high")


def test_evaluate_reports_progress() -> None:
    import io

    from learnscope import progress

    stream = io.StringIO()
    with progress.progress("plain", stream=stream, interval=0.0):
        score_landscape(np.eye(3)[:, :2], resolution=4, method="evaluate",
                        decode=lambda p: p, evaluate=lambda w: 1.0, score="acc")
    assert "landscape: acc at 16 grid points" in stream.getvalue()


# --------------------------------------------------------------------------- in a store


def test_store_helpers(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with store_mod.open(path) as store:
        run_id = store.create_run("trajectories-mnist", {})
        other = store.create_run("plain", {})
        assert not has_map(store, run_id)
        assert not store.artifacts_root.exists()  # asking creates nothing
        with pytest.raises(MapNotFoundError) as caught:
            load_map(store, run_id)
        error = caught.value
        assert isinstance(error, StoreError) and isinstance(error, FileNotFoundError)
        text = str(error)
        assert f"Run {run_id} (trajectories-mnist) has no trajectory map" in text
        assert "learnscope run trajectories" in text
        assert "learnscope project RUN..." in text
        tmap = make_map(landscape=True)
        written = save_map(store, run_id, tmap)
        folder = store.artifact_dir(run_id, 0, MAP_PROBE)
        assert written == folder / MAP_FILE == map_folder(store, run_id) / MAP_FILE
        assert has_map(store, run_id) and not has_map(store, other)
        for ref in (run_id, run_id[:-3], "trajectories-mnist"):
            assert_maps_equal(load_map(store, ref), tmap)
        with pytest.raises(StoreError, match="No run matches 'nope'"):
            load_map(store, "nope")
        with pytest.raises(StoreError, match="Unknown run id"):
            save_map(store, "nope", tmap)
        with pytest.raises(TypeError, match="needs a TrajectoryMap"):
            save_map(store, run_id, {"networks": []})
    with store_mod.open(path, read_only=True) as reader:
        assert has_map(reader, run_id) and not has_map(reader, other)
        assert load_map(reader, "trajectories-mnist") == tmap
        with pytest.raises(MapNotFoundError):
            load_map(reader, "plain")
