"""The Weights probe and the store's snapshot files (learnscope.trajectory, learnscope.store)."""

from __future__ import annotations

import sqlite3
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import learnscope as ls
from learnscope.store import snapshots as snapshot_files
from learnscope.store.schema import SCHEMA_VERSION


def _mlp(seed: int = 0, hidden=(12, 12, 12)) -> nn.Module:
    torch.manual_seed(seed)
    return ls.models.create("mlp", in_features=6, hidden=hidden, num_classes=3)


def _data(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


# ------------------------------------------------------------------ store: snapshot files


def test_snapshots_round_trip_exactly_in_step_order(tmp_path):
    rng = np.random.default_rng(0)
    values = {step: rng.standard_normal(37).astype(np.float32) for step in (0, 5, 10, 20)}
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        for step, vector in values.items():
            store.write_measurement(run, step, None, "weights", [("all", 0, "norm", 1.0)],
                                    snapshots={"all": vector})
        series = store.snapshots(run)
        assert series.trajectory == "all" and series.size == 37 and series.dtype == "float32"
        assert series.steps.tolist() == [0, 5, 10, 20]
        np.testing.assert_array_equal(series.array(), np.stack(list(values.values())))
        np.testing.assert_array_equal(series.array([20, 5]), np.stack([values[20], values[5]]))
        batches = list(series.batches(batch_size=3))
        assert [b[0].tolist() for b in batches] == [[0, 5, 10], [20]]
        with pytest.raises(KeyError, match="step"):
            series.array([7])
        table = store.trajectories(run)
        assert table.to_dict("records") == [{
            "probe": "weights", "trajectory": "all", "snapshots": 4, "size": 37,
            "dtype": "float32", "first_step": 0, "last_step": 20}]


def test_float16_snapshots_store_the_half_precision_values(tmp_path):
    vector = np.linspace(-3, 3, 101).astype(np.float32)
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        store.write_measurement(run, 0, None, "w", [], snapshots={"all": vector},
                                snapshot_dtype="float16")
        series = store.snapshots(run)
        assert series.dtype == "float16"
        np.testing.assert_array_equal(series.array()[0], vector.astype(np.float16))
        file = snapshot_files.chunk_path(series.folder, 0)
        assert file.stat().st_size == 101 * 2


def test_snapshots_are_split_into_chunk_files(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot_files, "CHUNK_BYTES", 2 * 10 * 4)  # two float32 rows of 10
    rows = np.arange(70, dtype=np.float32).reshape(7, 10)
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        for step, row in enumerate(rows):
            store.write_measurement(run, step, None, "w", [], snapshots={"all": row})
        series = store.snapshots(run)
        assert series.chunks.tolist() == [0, 0, 1, 1, 2, 2, 3]
        assert sorted(p.name for p in series.folder.iterdir()) == [
            f"chunk_{i:05d}.bin" for i in range(4)]
        np.testing.assert_array_equal(series.array(), rows)


def test_bytes_of_an_interrupted_append_are_dropped(tmp_path):
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        store.write_measurement(run, 0, None, "w", [], snapshots={"all": np.ones(8, np.float32)})
        chunk = snapshot_files.chunk_path(store.snapshots(run).folder, 0)
        with open(chunk, "ab") as file:  # a killed writer left half a row, never indexed
            file.write(b"\x7f" * 13)
        store.write_measurement(run, 1, None, "w", [], snapshots={"all": np.full(8, 2, np.float32)})
        assert chunk.stat().st_size == 2 * 8 * 4
        np.testing.assert_array_equal(store.snapshots(run).array(),
                                      [[1.0] * 8, [2.0] * 8])


def test_measuring_a_step_again_replaces_its_snapshot(tmp_path):
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        for step, value in ((0, 0.0), (1, 1.0), (1, 5.0), (2, 2.0)):
            store.write_measurement(run, step, None, "w", [],
                                    snapshots={"all": np.full(4, value, np.float32)})
        series = store.snapshots(run)
        assert series.steps.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(series.array()[:, 0], [0.0, 5.0, 2.0])


def test_snapshot_errors_say_what_is_wrong(tmp_path):
    with ls.store.open(tmp_path / "s.db") as store:
        run = store.create_run("r", {})
        with pytest.raises(ValueError, match="no weight snapshots"):
            store.snapshots(run)
        store.write_measurement(run, 0, None, "w", [], snapshots={"a": np.zeros(3, np.float32),
                                                                   "b": np.zeros(2, np.float32)})
        with pytest.raises(ValueError, match="one size and dtype"):
            store.write_measurement(run, 1, None, "w", [],
                                    snapshots={"a": np.zeros(4, np.float32)})
        with pytest.raises(ValueError, match="more than one trajectory.*'a'.*'b'"):
            store.snapshots(run)
        with pytest.raises(ValueError, match="no trajectory matching"):
            store.snapshots(run, "c")
        with pytest.raises(ValueError, match="dtype"):
            store.write_measurement(run, 2, None, "w", [], snapshots={"a": np.zeros(3)},
                                    snapshot_dtype="float64")
        with pytest.raises(ValueError, match="1-D"):
            store.write_measurement(run, 2, None, "w", [], snapshots={"a": np.zeros((3, 1))})
        # the failed writes left nothing half-written
        assert store.snapshots(run, "a").steps.tolist() == [0]
        assert store.measured_steps(run, "w") == [0]
        series = store.snapshots(run, "b")
        snapshot_files.chunk_path(series.folder, 0).unlink()
        with pytest.raises(ls.store.StoreError, match="is missing"):
            series.array()


def test_a_version_1_store_gains_the_snapshot_table(tmp_path):
    path = tmp_path / "old.db"
    with ls.store.open(path) as store:
        run = store.create_run("r", {})
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE snapshots")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with ls.store.open(path, read_only=True) as store:
        assert store.trajectories(run).empty
        with pytest.raises(ValueError, match="no weight snapshots"):
            store.snapshots(run)
    with ls.store.open(path) as store:
        store.write_measurement(run, 0, None, "w", [], snapshots={"all": np.ones(2, np.float32)})
        assert len(store.snapshots(run)) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


# ------------------------------------------------------------------ the probe


def test_all_parameters_in_parameter_order():
    model = _mlp()
    vector = ls.Weights().vectors(model)["all"]
    reference = np.concatenate([p.detach().numpy().ravel() for _, p in model.named_parameters()])
    np.testing.assert_array_equal(vector, reference)


def test_one_layer_first_layers_and_hidden_mean():
    model = _mlp()
    state = {k: v.numpy() for k, v in model.state_dict().items()}

    def layer(prefix):
        return np.concatenate([state[f"{prefix}.weight"].ravel(), state[f"{prefix}.bias"].ravel()])

    assert ls.trajectory.weight_layers(model) == [
        "features.0", "features.2", "features.4", "classifier"]
    np.testing.assert_array_equal(ls.Weights(layer="features.2").vectors(model)["features.2"],
                                  layer("features.2"))
    single = ls.Weights(layer="classifier.bias").vectors(model)
    np.testing.assert_array_equal(single["classifier.bias"], state["classifier.bias"])
    first = ls.Weights(first_layers=2).vectors(model)
    assert list(first) == ["features.0", "features.2"]
    np.testing.assert_array_equal(first["features.0"], layer("features.0"))
    mean = ls.Weights(average_hidden=True).vectors(model)["hidden_mean"]
    np.testing.assert_allclose(mean, (layer("features.2") + layer("features.4")) / 2, rtol=1e-6)


def test_probe_option_errors():
    with pytest.raises(ValueError, match="one thing at a time"):
        ls.Weights(layer="a", first_layers=2)
    with pytest.raises(ValueError, match="first_layers"):
        ls.Weights(first_layers=0)
    with pytest.raises(ValueError, match="dtype"):
        ls.Weights(dtype="int8")
    with pytest.raises(ValueError, match="no module or parameter 'nope'.*features.0"):
        ls.Weights(layer="nope").vectors(_mlp())
    with pytest.raises(ValueError, match="4 weight layers"):
        ls.Weights(first_layers=9).vectors(_mlp())
    with pytest.raises(ValueError, match="equal shape"):
        ls.Weights(average_hidden=True).vectors(_mlp(hidden=(12, 8, 12)))
    with pytest.raises(ValueError, match="hidden weight layer"):
        ls.Weights(average_hidden=True).vectors(_mlp(hidden=(12,)))


def test_scores_and_distances_against_direct_computation():
    model = _mlp()
    x, y = _data()
    xt, yt = _data(seed=2)
    probe = ls.Weights(train=(x, y), test=torch.utils.data.TensorDataset(xt, yt), batch_size=7)
    first = probe.measure(model, 0)
    theta0 = first.snapshots["all"].astype(np.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    second = probe.measure(model, 1)
    theta1 = second.snapshots["all"].astype(np.float64)
    model.eval()
    with torch.no_grad():
        for split, (inputs, labels) in (("train", (x, y)), ("test", (xt, yt))):
            logits = model(inputs)
            assert second.value("model", f"{split}_loss") == pytest.approx(
                F.cross_entropy(logits, labels).item(), rel=1e-5)
            assert second.value("model", f"{split}_accuracy") == pytest.approx(
                (logits.argmax(1) == labels).float().mean().item())
    assert second.value("all", "distance_from_init") == pytest.approx(
        np.linalg.norm(theta1 - theta0))
    assert second.value("all", "distance_from_last") == pytest.approx(
        np.linalg.norm(theta1 - theta0))
    assert second.value("all", "norm") == pytest.approx(np.linalg.norm(theta1))
    assert second.value("all", "parameters") == theta1.size
    assert first.value("all", "distance_from_init") == 0.0


def test_scope_keeps_no_snapshots_in_memory_with_a_store(tmp_path):
    model = nn.Linear(100, 1000)  # 101k parameters: 400 kB per snapshot
    with ls.Scope(model, [ls.Weights()], store=tmp_path / "s.db") as scope:
        returned = scope.step(0)
        assert returned["weights"].snapshots["all"].size == 101_000
        assert scope.results[0]["weights"].snapshots == {}
        tracemalloc.start()
        try:
            for step in range(1, 6):
                scope.step(step)
            before = tracemalloc.get_traced_memory()[0]
            for step in range(6, 46):
                scope.step(step)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        # 40 more snapshots are 16 MB on disk; memory grows by the bookkeeping only
        assert after - before < 1_000_000
        series = scope.store.snapshots(scope.run_id)
        assert len(series) == 46
        np.testing.assert_array_equal(
            series.array([45])[0],
            torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy())
    with ls.Scope(nn.Linear(2, 2), [ls.Weights()], store=None) as scope:
        scope.step(0)
        assert scope.results[0]["weights"].snapshots["all"].size == 6


def test_a_resumed_run_continues_distances_without_duplicates(tmp_path):
    db = tmp_path / "s.db"
    model = _mlp()

    def nudge():
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.01)

    scope = ls.Scope(model, [ls.Weights(dtype="float16")], store=db, name="r")
    for step in range(3):
        scope.step(step)
        nudge()
    run = scope.run_id
    scope.store.close()  # "killed": the run stays running
    resumed = ls.Scope(model, [ls.Weights(dtype="float16")], store=db, resume=run)
    for step in range(2, 5):  # step 2 was measured before the kill: not again
        resumed.step(step)
        if step > 2:
            nudge()
    resumed.finish()
    with ls.store.open(db) as store:
        series = store.snapshots(run)
        assert series.steps.tolist() == [0, 1, 2, 3, 4]
        stored = series.array(dtype="float64")
        distances = store.metrics(run, measure="distance_from_init").set_index("step")["value"]
        np.testing.assert_allclose(distances.to_numpy(),
                                   np.linalg.norm(stored - stored[0], axis=1), rtol=1e-6)
        last = store.metrics(run, measure="distance_from_last").set_index("step")["value"]
        np.testing.assert_allclose(last.loc[3], np.linalg.norm(stored[3] - stored[2]), rtol=1e-6)
