"""Bad input gets a clear error (what was found, what was expected), and no run is left "finished".

Every error case is checked twice where a run is involved: the exception and its message, and the
run's row in the store afterwards (status "failed", the error text kept, never "finished").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)
from typer.testing import CliRunner

import learnscope as ls
from learnscope.cli import app
from learnscope.patterns import NonFiniteActivationError
from learnscope.store import StoreError

N, D_IN = 20, 4


pytestmark = pytest.mark.usefixtures("one_thread")


class TwoLayer(nn.Module):
    """fc1 -> act1 -> fc2 -> act2 -> out: activation layers "act1" and "act2"."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D_IN, 6)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(6, 5)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act2(self.fc2(self.act1(self.fc1(x)))))


def _inputs(n: int = N) -> torch.Tensor:
    return torch.randn(n, D_IN)


def _labels(n: int = N) -> torch.Tensor:
    return torch.randint(0, 3, (n,))


def _flat(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines)."""
    return " ".join(text.split())


def _only_run(db) -> dict:
    with ls.store.open(db) as store:
        runs = store.runs()
        assert len(runs) == 1
        return store.run(runs["id"][0])


def _assert_failed(db, *fragments: str) -> dict:
    run = _only_run(db)
    assert run["status"] == "failed"
    assert run["finished_at"] is not None
    for fragment in fragments:
        assert fragment in run["error"]
    return run


# --------------------------------------------------------------------------- unsupported layers


def test_model_with_only_unsupported_activations_names_them():
    model = nn.Sequential(nn.Linear(D_IN, 5), nn.GELU(), nn.Linear(5, 5), nn.Tanh())
    with pytest.raises(ValueError) as info:
        ls.patterns.count(model, _inputs())
    message = str(info.value)
    assert "GELU" in message and "Tanh" in message
    assert "register_activation" in message


# --------------------------------------------------------------------------- NaN / inf


def test_nan_input_to_count_names_the_layer():
    x = _inputs()
    x[7, 2] = math.nan
    with pytest.raises(NonFiniteActivationError) as info:
        ls.patterns.count(TwoLayer(), x)
    assert info.value.layer == "act1"
    assert "'act1'" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_in_a_scope_fail_the_run_naming_layer_and_step(tmp_path, bad):
    db = tmp_path / "runs.db"
    model = TwoLayer()
    probe = ls.ActivationPatterns(_inputs(), batch_size=8)
    with pytest.raises(NonFiniteActivationError) as info:
        with ls.Scope(model, [probe], ls.every(1), store=db, name="nan") as scope:
            for step in range(6):
                if step == 3:
                    with torch.no_grad():
                        model.fc2.weight[1, 0] = bad  # act1 stays finite, act2 does not
                scope.step(step)
    error = info.value
    assert error.layer == "act2" and error.step == 3
    assert "'act2'" in str(error) and "step 3" in str(error)
    assert "act1" not in str(error)
    run = _assert_failed(db, "NonFiniteActivationError", "'act2'", "step 3")
    with ls.store.open(db) as store:
        assert store.measured_steps(run["id"]) == [0, 1, 2]


def test_nan_measurement_data_in_a_scope_fails_at_the_first_measurement(tmp_path):
    db = tmp_path / "runs.db"
    x = _inputs()
    x[0, 0] = math.nan
    with pytest.raises(NonFiniteActivationError, match=r"'act1' at step 0"):
        with ls.Scope(TwoLayer(), [ls.ActivationPatterns(x)], store=db) as scope:
            scope.step(0)
    _assert_failed(db, "'act1' at step 0")


# --------------------------------------------------------------------------- empty data


EMPTY_DATA = {
    "tensor": lambda: torch.empty(0, D_IN),
    "ndarray": lambda: np.empty((0, D_IN), dtype=np.float32),
    "pair": lambda: (torch.empty(0, D_IN), torch.empty(0, dtype=torch.int64)),
    "dataset": lambda: TensorDataset(torch.empty(0, D_IN)),
    "labelled-dataset": lambda: TensorDataset(torch.empty(0, D_IN),
                                              torch.empty(0, dtype=torch.int64)),
    "dataloader": lambda: DataLoader(TensorDataset(torch.empty(0, D_IN)), batch_size=4),
}


@pytest.mark.parametrize("kind", sorted(EMPTY_DATA))
def test_empty_dataset_is_rejected(kind):
    with pytest.raises(ValueError, match="empty"):
        ls.patterns.count(TwoLayer(), EMPTY_DATA[kind]())


# --------------------------------------------------------------------------- labels


def test_labels_with_two_columns_are_rejected_with_the_shapes():
    x, y = _inputs(), torch.randint(0, 3, (N, 2))
    for data in ((x, y), TensorDataset(x, y)):
        with pytest.raises(ValueError) as info:
            ls.patterns.count(TwoLayer(), data, labels=True, batch_size=64)
        assert f"({N}, 2)" in str(info.value)  # what was found
        assert f"({N},)" in str(info.value)  # what was expected


def test_one_label_too_few_is_rejected_with_the_shapes():
    with pytest.raises(ValueError) as info:
        ls.patterns.count(TwoLayer(), (_inputs(), _labels(N - 1)), labels=True)
    message = str(info.value)
    assert f"({N - 1},)" in message and f"({N}, {D_IN})" in message


@pytest.mark.parametrize("kind", ["tensor", "ndarray", "dataset"])
def test_labels_requested_on_data_without_labels(kind):
    x = _inputs()
    data = {"tensor": x, "ndarray": x.numpy(), "dataset": TensorDataset(x)}[kind]
    with pytest.raises(ValueError, match="labels"):
        ls.patterns.count(TwoLayer(), data, labels=True)


# --------------------------------------------------------------------------- store path


@pytest.fixture()
def unwritable_store(tmp_path):
    """A store path whose parent folder is a regular file."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file, not a folder\n")
    return blocker / "runs.db"


def test_unwritable_store_path_in_scope(unwritable_store):
    with pytest.raises(StoreError) as info:
        ls.Scope(TwoLayer(), [ls.ActivationPatterns(_inputs())], store=unwritable_store)
    assert str(unwritable_store.resolve()) in str(info.value)
    assert unwritable_store.parent.read_text() == "a file, not a folder\n"


def test_unwritable_store_path_in_cli(unwritable_store):
    result = CliRunner().invoke(
        app, ["run", "quickstart", "--store", str(unwritable_store), "--epochs", "1"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    output = _flat(result.output)
    assert "Traceback" not in output
    assert "error:" in output and "Cannot open the learnscope store" in output
    assert str(unwritable_store.resolve()) in output
    assert "train + measure" not in output  # failed before training
    assert unwritable_store.parent.read_text() == "a file, not a folder\n"


# --------------------------------------------------------------------------- unknown names


def test_unknown_measure_in_probe_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        ls.ActivationPatterns(_inputs(), measures=["entropy", "nope"])
    message = str(info.value)
    assert "'nope'" in message
    for available in ("entropy", "distinct", "jaccard_since_init", "weighted_jaccard_since_last"):
        assert available in message


def test_unknown_layer_in_count_lists_the_models_layers():
    with pytest.raises(ValueError) as info:
        ls.patterns.count(TwoLayer(), _inputs(), layers=["act1", "nope"])
    message = str(info.value)
    assert "'nope'" in message and "'act1'" in message and "'act2'" in message


def test_unknown_measure_or_layer_in_store_metrics(tmp_path):
    db = tmp_path / "runs.db"
    with ls.Scope(TwoLayer(), [ls.ActivationPatterns(_inputs())], store=db) as scope:
        scope.step(0)
        run_id = scope.run_id
    with ls.store.open(db) as store:
        assert set(store.metrics(run=run_id, measure="entropy")["layer"]) == {"act1", "act2"}
        with pytest.raises(ValueError) as info:
            store.metrics(run=run_id, measure="nope")
        assert "'nope'" in str(info.value) and "entropy" in str(info.value)
        with pytest.raises(ValueError) as info:
            store.metrics(run=run_id, layer="nope")
        assert "'nope'" in str(info.value) and "act1" in str(info.value)
        with pytest.raises(ValueError):
            store.metrics(run=run_id, layer=["act1", "nope"], measure="entropy")


# --------------------------------------------------------------------------- shuffled data


def _dataset() -> TensorDataset:
    return TensorDataset(_inputs(), _labels())


@pytest.mark.parametrize("seeded", [False, True])
def test_shuffling_dataloader_is_rejected(seeded):
    generator = torch.Generator().manual_seed(0) if seeded else None
    loader = DataLoader(_dataset(), batch_size=8, shuffle=True, generator=generator)
    with pytest.raises(ValueError, match="shuffle"):
        ls.patterns.count(TwoLayer(), loader)


RANDOM_ORDER_LOADERS = {
    "SubsetRandomSampler": lambda ds: DataLoader(
        ds, batch_size=8, sampler=SubsetRandomSampler(range(len(ds)))
    ),
    "BatchSampler-of-RandomSampler": lambda ds: DataLoader(
        ds, batch_sampler=BatchSampler(RandomSampler(ds), batch_size=8, drop_last=False)
    ),
    "WeightedRandomSampler": lambda ds: DataLoader(
        ds, batch_size=8, sampler=WeightedRandomSampler(torch.ones(len(ds)), len(ds))
    ),
}


@pytest.mark.parametrize("kind", sorted(RANDOM_ORDER_LOADERS))
def test_other_random_order_dataloaders_are_rejected(kind):
    loader = RANDOM_ORDER_LOADERS[kind](_dataset())
    with pytest.raises(ValueError, match="fixed order"):
        ls.patterns.count(TwoLayer(), loader)


def test_batchnorm_train_mode_last_batch_of_one_gets_a_clear_error():
    model = nn.Sequential(nn.Linear(D_IN, 6), nn.BatchNorm1d(6), nn.ReLU())
    with pytest.raises(ValueError, match="batch_size"):
        ls.patterns.count(model, _inputs(17), batch_size=8)  # batches of 8, 8 and 1


# ---------------------------------------------------------------- runs fail, never finish


def test_exception_in_the_users_loop_marks_the_run_failed(tmp_path):
    db = tmp_path / "runs.db"
    with pytest.raises(RuntimeError, match="boom"):
        with ls.Scope(TwoLayer(), [ls.ActivationPatterns(_inputs())], store=db,
                      name="user") as scope:
            for step in range(5):
                scope.step(step)
                if step == 2:
                    raise RuntimeError("boom in the training step 2")
    assert scope.status == "failed"
    run = _assert_failed(db, "RuntimeError", "boom in the training step 2")
    with ls.store.open(db) as store:
        assert store.measured_steps(run["id"]) == [0, 1, 2]


def test_a_scope_left_normally_is_finished(tmp_path):
    """Counterpart of the failure tests: the same loop without an error finishes the run."""
    db = tmp_path / "runs.db"
    with ls.Scope(TwoLayer(), [ls.ActivationPatterns(_inputs())], store=db) as scope:
        for step in range(3):
            scope.step(step)
    run = _only_run(db)
    assert run["status"] == "finished" and run["error"] is None


def _gelu_model() -> nn.Module:
    return nn.Sequential(nn.Linear(D_IN, 5), nn.GELU(), nn.Linear(5, 5), nn.Tanh())


BAD_PROBES = {
    "unsupported-activations": (_gelu_model, lambda: ls.ActivationPatterns(_inputs()), "GELU"),
    "empty-data": (TwoLayer, lambda: ls.ActivationPatterns(torch.empty(0, D_IN)), "empty"),
    "two-column-labels": (
        TwoLayer,
        lambda: ls.ActivationPatterns((_inputs(), torch.zeros(N, 2, dtype=torch.int64)),
                                      labels=True),
        "(20, 2)",
    ),
    "no-labels": (TwoLayer, lambda: ls.ActivationPatterns(_inputs(), labels=True), "labels"),
    "unknown-layer": (
        TwoLayer, lambda: ls.ActivationPatterns(_inputs(), layers=["nope"]), "'nope'"
    ),
    "shuffling-loader": (
        TwoLayer,
        lambda: ls.ActivationPatterns(DataLoader(_dataset(), batch_size=8, shuffle=True)),
        "shuffle",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBES))
def test_bad_measurement_input_in_a_scope_fails_the_run(tmp_path, case):
    make_model, make_probe, fragment = BAD_PROBES[case]
    db = tmp_path / "runs.db"
    with pytest.raises(ValueError) as info:
        with ls.Scope(make_model(), [make_probe()], ls.every(2), store=db) as scope:
            for step in range(4):
                scope.step(step)
    assert fragment in str(info.value)
    _assert_failed(db, fragment)
