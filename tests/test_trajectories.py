"""The weight-trajectory experiment: training groups, transfer, projection, map runs, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from typer.testing import CliRunner

import learnscope as ls
from learnscope.cli import app
from learnscope.experiments import trajectories as tr
from learnscope.train.trainer import train
from learnscope.train.transfer import transfer_weights
from learnscope.trajectory.maps import load_map

SMALL = dict(networks=2, iterations=2, width=16, depth=2, snapshot_every=5,
             pretrain_iterations=2, projection="pca", resolution=12)


# ------------------------------------------------------------------ transfer


def test_transfer_copies_matching_entries_and_keeps_the_rest():
    torch.manual_seed(0)
    source = ls.models.create("mlp", in_features=40, hidden=[16, 16], num_classes=10)
    target = ls.models.create("mlp", in_features=64, hidden=[16, 16], num_classes=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(source, target)
    after = target.state_dict()
    assert report.copied == ["features.2.weight", "features.2.bias"]
    assert set(report.kept) == {"features.0.weight", "features.0.bias", "classifier.weight",
                                "classifier.bias"}
    assert "shape (16, 40) in the source, (16, 64) here" in report.kept["features.0.weight"]
    assert torch.equal(after["features.2.weight"], source.state_dict()["features.2.weight"])
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])
    with pytest.raises(ValueError, match="no weights could be transferred"):
        transfer_weights(torch.nn.Linear(3, 3), torch.nn.Linear(4, 4))


# ------------------------------------------------------------------ settings


def test_settings_are_checked_with_clear_messages():
    with pytest.raises(ValueError, match="setting must be one of compare, scratch, pretrained"):
        tr.settings_from(setting="both")
    with pytest.raises(ValueError, match="track must be one of"):
        tr.settings_from(track="layers")
    with pytest.raises(ValueError, match="pretrain must be one of"):
        tr.settings_from(pretrain="imagenet")
    with pytest.raises(ValueError, match="networks must be an int >= 1"):
        tr.settings_from(networks=0)
    with pytest.raises(TypeError, match="unknown trajectory setting"):
        tr.settings_from(netwroks=2)
    with pytest.raises(ValueError, match="projection"):
        tr.settings_from(projection="lda")
    assert tr.probe_options("first-layers:2") == {"first_layers": 2}
    assert tr.probe_options("layer:features.0") == {"layer": "features.0"}
    defaults = tr.TrajectorySettings()
    assert (defaults.iterations, defaults.networks, defaults.projection) == (10, 3, "autoencoder")
    # the projection does not change which networks are trained
    assert (tr.settings_from(projection="pca").training_key()
            == tr.settings_from(projection="som").training_key())
    assert tr.settings_from(width=8).training_key() != defaults.training_key()


# ------------------------------------------------------------------ the experiment


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    db = tmp_path_factory.mktemp("traj") / "runs.db"
    settings = tr.settings_from(**SMALL)
    seen = []
    map_ids = tr.run_experiment(settings, db, on_network=lambda n, r, s: seen.append(s))
    return db, settings, map_ids, seen


def test_compare_trains_both_groups_and_projects_them_together(experiment):
    db, settings, map_ids, seen = experiment
    assert seen == ["finished"] * 4 and len(map_ids) == 1
    with ls.store.open(db) as store:
        tmap = load_map(store, map_ids[0])
        assert tmap.groups == ["scratch", "scratch", "pretrained", "pretrained"]
        networks = tr.plan(settings)
        assert tmap.networks == ["scratch-net0", "scratch-net1", "pretrained-net0",
                                 "pretrained-net1"]
        assert [store.run(r)["name"] for r in tmap.runs] == [n.name for n in networks]
        series = [store.snapshots(run) for run in tmap.runs]
        # 2 epochs of 709 digits 5-9 at batch 64: 24 updates, snapshots every 5 and at the end
        assert [s.steps.tolist() for s in series] == [[0, 5, 10, 15, 20, 24]] * 4
        stacked = np.concatenate([s.array() for s in series])
        reference = PCA(n_components=2, svd_solver="full").fit_transform(stacked)
        ours = np.concatenate(tmap.coords)
        for k in range(2):  # equal up to the sign of each component
            sign = np.sign(ours[:, k] @ reference[:, k])
            np.testing.assert_allclose(ours[:, k], sign * reference[:, k], atol=1e-3)
        accuracy = store.metrics(tmap.runs[0], measure="test_accuracy", probe="weights")
        np.testing.assert_allclose(tmap.scores["test_accuracy"][0], accuracy["value"])
        assert tmap.landscape is not None and tmap.landscape.values.shape == (12, 12)
        assert store.run(map_ids[0])["status"] == "finished"


def test_the_map_run_stores_each_networks_path_length_and_distance(experiment):
    db, _, map_ids, _ = experiment
    with ls.store.open(db) as store:
        tmap = load_map(store, map_ids[0])
        rows = store.metrics(map_ids[0], probe="trajectory-map",
                             measure=["path_length", "start_to_end"])
    for i, (name, coords) in enumerate(zip(tmap.networks, tmap.coords, strict=True)):
        mine = rows[rows["layer"] == name]
        assert set(mine["layer_index"]) == {i}
        stored = dict(zip(mine["measure"], mine["value"], strict=True))
        segments = np.sqrt(((coords[1:] - coords[:-1]) ** 2).sum(axis=1))
        assert stored["path_length"] == pytest.approx(segments.sum(), rel=1e-12)
        assert stored["start_to_end"] == pytest.approx(
            np.sqrt(((coords[-1] - coords[0]) ** 2).sum()), rel=1e-12)


def test_pretrained_networks_start_from_the_pretrained_weights(experiment):
    db, settings, _, _ = experiment
    pretrained = [n for n in tr.plan(settings) if n.group == "pretrained"][0]
    # independent replay of the pre-training: same data, recipe and seed
    task_a = tr._load_task(settings.pretrain)
    source = tr._model(settings, task_a, pretrained.seed)
    train(source, task_a.train, tr._recipe(settings, settings.pretrain_iterations),
                   seed=pretrained.seed)
    task_b = tr._load_task(settings.train_on)
    start = tr._model(settings, task_b, pretrained.seed)
    transfer_weights(source, start)
    expected = torch.nn.utils.parameters_to_vector(start.parameters()).detach().numpy()
    with ls.store.open(db) as store:
        run = store.run(pretrained.name)
        np.testing.assert_array_equal(store.snapshots(run["id"]).array([0])[0], expected)
        assert run["config"]["user"]["transfer"]["kept"] == {}  # digits 0-4 -> 5-9: all fit


def test_running_again_skips_the_networks_and_a_new_projection_reuses_them(experiment):
    db, settings, map_ids, _ = experiment
    seen = []
    assert tr.run_experiment(settings, db, on_network=lambda n, r, s: seen.append(s)) == map_ids
    assert seen == ["skipped"] * 4
    first_only = tr.settings_from(**{**SMALL, "fit_on": "first", "landscape": "none"})
    seen.clear()
    [other] = tr.run_experiment(first_only, db, on_network=lambda n, r, s: seen.append(s))
    assert seen == ["skipped"] * 4 and other not in map_ids
    with ls.store.open(db) as store:
        tmap = load_map(store, other)
        assert tmap.landscape is None and "first" in tmap.projection
        first = store.snapshots(tmap.runs[0]).array()
        reference = PCA(n_components=2, svd_solver="full").fit(first)
        last = store.snapshots(tmap.runs[-1]).array()
        expected = reference.transform(last)
        for k in range(2):
            sign = np.sign(tmap.coords[-1][:, k] @ expected[:, k])
            np.testing.assert_allclose(tmap.coords[-1][:, k], sign * expected[:, k], atol=1e-3)


def test_evaluated_landscape_is_the_network_at_the_decoded_grid_point(experiment):
    db, settings, _, _ = experiment
    with ls.store.open(db) as store:
        runs = [store.run(n.name)["id"] for n in tr.plan(settings)]
        splits = tr._load_task(settings.train_on)
        tmap, pca = tr.build_map(
            store, runs, projection="pca", landscape="evaluate", resolution=4,
            score="test_accuracy", model_factory=lambda: tr._model(settings, splits, 0),
            landscape_data={"train": splits.measure, "test": splits.test})
    land = tmap.landscape
    assert land.method == "evaluate"
    point = np.array([[land.x[1], land.y[2]]])
    net = tr._model(settings, splits, 0)
    weights = torch.as_tensor(pca.inverse_transform(point)[0], dtype=torch.float32)
    torch.nn.utils.vector_to_parameters(weights, net.parameters())
    with torch.no_grad():
        net.eval()
        accuracy = (net(splits.test.tensors[0]).argmax(1) == splits.test.tensors[1]).float()
    assert land.values[2, 1] == pytest.approx(accuracy.mean().item())


def test_show_redraws_a_map_run_without_refitting(experiment, tmp_path, monkeypatch):
    db, _, map_ids, _ = experiment
    from learnscope.trajectory import projections

    def refit(*args, **kwargs):
        raise AssertionError("show must not refit the projection")

    monkeypatch.setattr(projections, "project_trajectories", refit)
    monkeypatch.setattr(projections, "make_projection", refit)
    out = tmp_path / "map.png"
    result = CliRunner().invoke(app, ["show", map_ids[0], "--store", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000
    assert "scratch" in result.output and "pretrained" in result.output


def test_project_command_makes_a_new_map_from_stored_runs(experiment, tmp_path):
    db, settings, _, _ = experiment
    names = [n.name for n in tr.plan(settings)][:2]
    out = tmp_path / "p.png"
    result = CliRunner().invoke(app, ["project", *names, "--store", str(db), "--projection",
                                      "pca", "--resolution", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists()
    with ls.store.open(db) as store:
        runs = store.runs()
        newest = runs.iloc[-1]
        assert newest["name"] == "trajectories-map-pca"
        assert len(load_map(store, newest["id"]).networks) == 2
    bad = CliRunner().invoke(app, ["project", "nope", "--store", str(db)])
    assert bad.exit_code == 2 and "nope" in bad.output
    bad = CliRunner().invoke(app, ["project", names[0], "--store", str(db), "--projection", "x"])
    assert bad.exit_code == 2 and "pca" in bad.output


def test_run_trajectories_dry_run_lists_the_networks(tmp_path):
    result = CliRunner().invoke(app, ["run", "trajectories", "--dry-run", "--networks", "2",
                                      "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 0, result.output
    assert result.output.count("-scratch-net") == 2
    assert result.output.count("-pretrained-net") == 2
    assert not (tmp_path / "r.db").exists()
    bad = CliRunner().invoke(app, ["run", "trajectories", "--setting", "both", "--dry-run"])
    assert bad.exit_code == 2 and "compare" in bad.output


def test_pretraining_on_mnist1d_reinitialises_the_layers_that_do_not_fit(tmp_path):
    settings = tr.settings_from(networks=1, iterations=1, pretrain_iterations=1, width=16,
                                setting="pretrained", pretrain="mnist1d", projection="pca",
                                landscape="none", snapshot_every=20)
    [map_id] = tr.run_experiment(settings, tmp_path / "r.db")
    with ls.store.open(tmp_path / "r.db") as store:
        [network] = tr.plan(settings)
        transfer = store.run(network.name)["config"]["user"]["transfer"]
        # mnist1d: 40 inputs, 10 classes; digits 5-9: 64 inputs, 5 classes
        assert transfer["copied"] == ["features.2.weight", "features.2.bias"]
        assert sorted(transfer["kept"]) == ["classifier.bias", "classifier.weight",
                                            "features.0.bias", "features.0.weight"]
        assert load_map(store, map_id).groups == ["pretrained"]
