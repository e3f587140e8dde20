"""The trainer's fast paths: in-memory batches, per-epoch logging, and what resuming needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import learnscope as ls
from learnscope.train import recipes
from learnscope.train.trainer import CHECKPOINT, epoch_batches, train


def tensors(n: int = 100, seed: int = 3) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) + 2.0 * nn.functional.one_hot(y, 8)
    return TensorDataset(x, y)


class ItemByItem(Dataset):
    """The same samples as a TensorDataset, but a Dataset of its own (fetched one by one)."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


class SubclassWithItsOwnItems(TensorDataset):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x + 1.0, y


def make_model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


def test_in_memory_batches_are_the_shuffling_loaders_batches():
    data = tensors()
    for epoch in range(3):
        for skip in (0, 2, 6):
            loader = DataLoader(data, batch_size=16, shuffle=True,
                                generator=torch.Generator().manual_seed(5 * 100_003 + epoch))
            want = list(loader)[skip:]
            got = list(epoch_batches(data, 16, 5, epoch, skip))
            assert len(got) == len(want) == 7 - skip
            for (x, y), (wx, wy) in zip(got, want, strict=True):
                assert torch.equal(x, wx) and torch.equal(y, wy)


def test_a_tensor_dataset_with_its_own_items_is_fetched_item_by_item():
    data = SubclassWithItsOwnItems(*tensors().tensors)
    loader = DataLoader(data, batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(5 * 100_003))
    for (x, _), (wx, _) in zip(epoch_batches(data, 16, 5, 0), loader, strict=True):
        assert torch.equal(x, wx)  # the subclass's +1 is kept


def train_on(train_set, test_set, store, name):
    model = make_model()
    recipe = recipes.get("multistep", epochs=3, batch_size=16, milestones=(2,))
    scope = ls.Scope(model, [ls.ActivationPatterns(tensors(40, seed=5).tensors[0])],
                     ls.every(5) | ls.end(), store, name=name, total_steps=21,
                     steps_per_epoch=7)
    result = train(model, train_set, recipe, scope=scope, test_set=test_set, seed=7,
                   checkpoint_every=4)
    scope.finish(result.status)
    return model, scope.run_id


def test_in_memory_training_is_bit_identical_to_fetching_item_by_item(tmp_path, one_thread):
    store = tmp_path / "s.db"
    data, test = tensors(), tensors(30, seed=9)
    fast, fast_run = train_on(data, test, store, "fast")
    slow, slow_run = train_on(ItemByItem(data), ItemByItem(test), store, "item-by-item")
    for key, value in slow.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value), key
    with ls.store.open(store, read_only=True) as opened:
        got = opened.metrics(run=fast_run).drop(columns=["run"]).reset_index(drop=True)
        want = opened.metrics(run=slow_run).drop(columns=["run"]).reset_index(drop=True)
    assert {"loss", "accuracy", "lr", "test_loss", "test_accuracy"} <= set(got["measure"])
    assert got.equals(want)


def test_deferred_rows_are_written_at_flush_in_order(tmp_path):
    store = tmp_path / "s.db"
    scope = ls.Scope(make_model(), [ls.ActivationPatterns(tensors(40).tensors[0])],
                     ls.at([1000]), store, name="deferred")
    scope.log(1, {"loss": 2.0}, epoch=0.1, defer=True)
    scope.log(2, {"loss": 1.5, "lr": 0.1}, epoch=0.2, defer=True)
    with ls.store.open(store, read_only=True) as opened:
        assert opened.metrics(run=scope.run_id).empty  # kept in memory until the flush
    scope.log(2, {"loss": 1.0}, epoch=0.2)  # an immediate write comes after the deferred ones
    scope.log(3, {"loss": 0.5}, defer=True)
    scope.finish()  # flushes the rest
    with ls.store.open(store, read_only=True) as opened:
        rows = opened.metrics(run=scope.run_id).set_index(["step", "measure"])["value"]
        steps = opened.measured_steps(scope.run_id, "train")
        epochs = opened.metrics(run=scope.run_id).groupby("step")["epoch"].first()
    assert rows.to_dict() == {(1, "loss"): 2.0, (2, "loss"): 1.0, (2, "lr"): 0.1,
                              (3, "loss"): 0.5}
    assert steps == [1, 2, 3]
    assert epochs[1] == pytest.approx(0.1) and epochs[2] == pytest.approx(0.2)


def test_deferred_rows_keep_the_time_they_were_logged_for_the_eta(tmp_path):
    store = tmp_path / "s.db"
    scope = ls.Scope(make_model(), [ls.ActivationPatterns(tensors(40).tensors[0])],
                     ls.at([1000]), store, name="eta", total_steps=100)
    for step in range(1, 6):
        time.sleep(0.05)
        scope.log(step, {"loss": 1.0}, defer=True)
    scope.flush()  # one write: the ETA still sees ~0.05 s per step, not 0
    with ls.store.open(store, read_only=True) as opened:
        eta = opened.run(scope.run_id)["eta_seconds"]
    assert 95 * 0.05 * 0.9 <= eta <= 95 * 0.05 * 10
    scope.finish()


def test_write_measurements_stores_what_one_write_per_step_stores(tmp_path):
    measurements = [(step, step / 4, "train", [("model", -1, "loss", 1.0 / step),
                                                ("model", -1, "acc", float("nan"))])
                    for step in range(1, 6)]
    stores = {}
    for way in ("one", "many"):
        with ls.store.open(tmp_path / f"{way}.db") as store:
            run_id = store.create_run("r", {})
            if way == "one":
                for step, epoch, probe, rows in measurements:
                    store.write_measurement(run_id, step, epoch, probe, rows)
            else:
                assert store.write_measurements(run_id, measurements) == 10
            stores[way] = (store.metrics(run=run_id).drop(columns=["run"]),
                           store.measured_steps(run_id, "train"),
                           store.run(run_id)["last_step"])
    assert stores["one"][0].equals(stores["many"][0])
    assert stores["one"][1:] == stores["many"][1:] == ([1, 2, 3, 4, 5], 5)


WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import torch
    import learnscope as ls
    from learnscope.train import recipes
    from learnscope.train.trainer import train
    from test_train_batches import make_model, tensors

    def run(store, name, resume=None, sleep=0.0):
        model = make_model()
        scope = ls.Scope(model, [ls.ActivationPatterns(tensors(40, seed=5).tensors[0])],
                         ls.every(5) | ls.end(), store, name=name, resume=resume,
                         total_steps=28, steps_per_epoch=7)

        def on_step(step, total):
            if sleep:
                print("step", step, flush=True)
                time.sleep(sleep)

        result = train(model, tensors(), recipes.get("multistep", epochs=4, batch_size=16,
                       milestones=(2, 3)), scope=scope, test_set=tensors(30, seed=9), seed=7,
                       resume=resume is not None, checkpoint_every=4, on_step=on_step)
        scope.finish(result.status)
        return model, scope.run_id

    if __name__ == "__main__":
        torch.set_num_threads(1)  # as the test process (thread counts change float rounding)
        run({store!r}, "killed", sleep=0.15)
    """
)


def test_a_killed_run_has_every_row_up_to_its_checkpoint_and_resumes_them_all(tmp_path,
                                                                            one_thread):
    store_path = tmp_path / "s.db"
    script = tmp_path / "resumable_worker.py"
    script.write_text(WORKER.format(tests=os.path.dirname(__file__), store=str(store_path)))
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    last = 0
    while last < 17 and time.time() < deadline:  # mid-epoch 3, after the checkpoint at 16
        line = worker.stdout.readline()
        if line.startswith("step"):
            last = int(line.split()[1])
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert last >= 17, "the worker did not reach step 17 in time"
    with ls.store.open(store_path) as store:
        run_id = store.runs()["id"][0]
        checkpoint = torch.load(store.artifacts_root / run_id / CHECKPOINT, weights_only=False)
        logged = set(store.metrics(run=run_id, measure="loss")["step"])
    assert checkpoint["step"] >= 16
    assert set(range(1, checkpoint["step"] + 1)) <= logged  # stored before the checkpoint

    sys.path.insert(0, str(tmp_path))
    try:
        import resumable_worker as module
    finally:
        sys.path.remove(str(tmp_path))
    resumed, _ = module.run(store_path, "killed", resume=run_id)
    reference, reference_id = module.run(store_path, "reference")
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    with ls.store.open(store_path, read_only=True) as store:
        got = store.metrics(run=run_id, probe="train")
        want = store.metrics(run=reference_id, probe="train")
    assert not got.duplicated(["step", "layer", "measure"]).any()
    assert sorted(set(got["step"])) == list(range(1, 29))
    merged = got.merge(want, on=["step", "layer", "measure"], suffixes=("_got", "_want"))
    assert len(merged) == len(got) == len(want)
    np.testing.assert_array_equal(merged["value_got"], merged["value_want"])
