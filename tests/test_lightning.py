"""The Lightning callback, with tiny real `Trainer.fit` runs on CPU (digits, a small ReLU MLP).

Expected steps are worked out here from the dataset size, the batch size and the accumulation
factor; pattern counts are checked against a brute-force count of the trained module's hidden
ReLU states; stored values are read back with sqlite3.
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the older package name
    pl = pytest.importorskip(
        "pytorch_lightning", reason="needs PyTorch Lightning: pip install 'learnscope[lightning]'"
    )

import learnscope as ls
from learnscope.integrations.lightning import LearnscopeCallback

BATCH, HIDDEN = 32, 12


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    train = ls.data.load("digits", val_fraction=0, flatten=True).train
    return train.tensors


@pytest.fixture(autouse=True)
def _quiet(one_thread):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        warnings.filterwarnings("ignore", message=".*(resuming from a checkpoint that ended).*")
        warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
        yield


class DigitsMLP(pl.LightningModule):
    """64 -> HIDDEN (ReLU) -> 10, plain SGD; records each training-step loss."""

    def __init__(self, fail_at_step: int | None = None, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
        self.batch_losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.hparams.fail_at_step is not None and self.global_step >= self.hparams.fail_at_step:
            raise RuntimeError(f"boom at step {self.global_step}")
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.batch_losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _fit(callback, n_samples, digits, *, module=None, ckpt_path=None, **trainer_options):
    x, y = digits
    loader = DataLoader(TensorDataset(x[:n_samples], y[:n_samples]), batch_size=BATCH)
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[callback],
        **trainer_options,
    )
    module = module if module is not None else DigitsMLP()
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer, module


def _query(db, sql: str, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def _steps(db, run_id: str, probe: str = "patterns") -> list[int]:
    rows = _query(db, "SELECT step FROM measurements WHERE run = ? AND probe = ? ORDER BY step",
                  run_id, probe)
    return [step for (step,) in rows]


def _run(db, run_id: str) -> dict:
    row = _query(db, "SELECT status, total_steps, error, config FROM runs WHERE id = ?", run_id)
    status, total, error, config = row[0]
    return {"status": status, "total_steps": total, "error": error, "config": json.loads(config)}


def _series(db, run_id: str, probe: str, layer: str, measure: str) -> dict[int, float]:
    rows = _query(db, "SELECT step, value FROM metrics WHERE run = ? AND probe = ? AND layer = ? "
                  "AND measure = ? ORDER BY step", run_id, probe, layer, measure)
    return dict(rows)


def test_fit_measures_on_schedule_and_counts_exactly(tmp_path, digits):
    db = tmp_path / "runs.db"
    n, epochs, every = 320, 2, 3
    x = digits[0][:n]
    updates = epochs * math.ceil(n / BATCH)  # one optimizer update per batch: 20
    expected = sorted(set(range(0, updates + 1, every)) | {updates})  # every(3) | end()
    probe = ls.ActivationPatterns(x, batch_size=64)
    callback = LearnscopeCallback([probe], ls.every(every) | ls.end(), db, name="lit",
                                  experiment="tests", config={"data": "digits"})
    _, module = _fit(callback, n, digits, max_epochs=epochs)

    run_id = callback.run_id
    assert _steps(db, run_id) == expected
    run = _run(db, run_id)
    assert run["status"] == "finished" and run["total_steps"] == updates
    user = run["config"]["user"]
    assert user["data"] == "digits" and user["hparams"]["lr"] == 0.1
    assert user["lightning"]["accumulate_grad_batches"] == 1

    # the last measurement counts the patterns of the trained module, exactly
    with torch.no_grad():
        states = (module.net[0](x) > 0).numpy()
    brute_force = len(np.unique(states, axis=0))
    distinct = _series(db, run_id, "patterns", "net.1", "distinct")
    assert distinct[updates] == brute_force
    assert 1 < brute_force < n
    assert _series(db, run_id, "patterns", "net.1", "evaluations")[updates] == n

    # loss and learning rate of every update, epochs as completed fractions
    loss = _series(db, run_id, "train", "model", "loss")
    assert list(loss) == list(range(1, updates + 1))
    np.testing.assert_allclose(list(loss.values()), module.batch_losses, rtol=1e-6)
    assert set(_series(db, run_id, "train", "model", "lr").values()) == {0.1}
    epochs_at = dict(_query(db, "SELECT step, epoch FROM measurements WHERE run = ? AND "
                            "probe = 'patterns'", run_id))
    assert epochs_at[0] == 0 and epochs_at[updates] == epochs and epochs_at[9] == 0.9


def test_gradient_accumulation_steps_are_updates(tmp_path, digits):
    db = tmp_path / "runs.db"
    n, accumulate = 9 * BATCH, 2  # 9 batches: 4 full windows and a last single batch
    updates = math.ceil(9 / accumulate)  # Lightning also steps on the epoch's last batch: 5
    probe = ls.ActivationPatterns(digits[0][:n], measures=["distinct"])
    callback = LearnscopeCallback([probe], ls.every(1), db, name="accumulate")
    _, module = _fit(callback, n, digits, max_epochs=1, accumulate_grad_batches=accumulate)

    run_id = callback.run_id
    assert _steps(db, run_id) == list(range(updates + 1))
    assert _run(db, run_id)["total_steps"] == updates
    losses = module.batch_losses
    assert len(losses) == 9
    windows = [losses[i:i + accumulate] for i in range(0, 9, accumulate)]
    logged = _series(db, run_id, "train", "model", "loss")
    assert list(logged) == list(range(1, updates + 1))
    np.testing.assert_allclose(list(logged.values()), [np.mean(w) for w in windows], rtol=1e-6)


def test_an_exception_marks_the_run_failed(tmp_path, digits):
    db = tmp_path / "runs.db"
    probe = ls.ActivationPatterns(digits[0][:128], measures=["distinct"])
    callback = LearnscopeCallback([probe], ls.every(1), db, name="failing", log_metrics=False)
    with pytest.raises(RuntimeError, match="boom at step 4"):
        _fit(callback, 320, digits, module=DigitsMLP(fail_at_step=4), max_epochs=1)
    run = _run(db, callback.run_id)
    assert run["status"] == "failed"
    assert "RuntimeError: boom at step 4" in run["error"]
    assert _steps(db, callback.run_id) == [0, 1, 2, 3, 4]
    assert _steps(db, callback.run_id, "train") == []  # log_metrics=False


def test_resume_from_a_lightning_checkpoint_continues_the_run(tmp_path, digits):
    db = tmp_path / "runs.db"
    data = digits[0][:128]

    def callback():
        probe = ls.ActivationPatterns(data, measures=["distinct"])
        return LearnscopeCallback([probe], ls.every(2), db, name="resumed", module="net")

    first = callback()
    trainer, _ = _fit(first, 320, digits, max_steps=5)
    trainer.save_checkpoint(tmp_path / "at5.ckpt")
    assert _steps(db, first.run_id) == [0, 2, 4]
    second = callback()
    _, module = _fit(second, 320, digits, max_steps=10, ckpt_path=tmp_path / "at5.ckpt")

    assert second.run_id == first.run_id
    assert [row[0] for row in _query(db, "SELECT id FROM runs")] == [first.run_id]
    assert _steps(db, first.run_id) == [0, 2, 4, 6, 8, 10]
    assert _run(db, first.run_id)["status"] == "finished"
    assert list(_series(db, first.run_id, "train", "model", "loss")) == list(range(1, 11))
    with torch.no_grad():  # module="net": the same layer is named "1" in the Sequential
        states = (module.net[0](data) > 0).numpy()
    assert _series(db, first.run_id, "patterns", "1", "distinct")[10] == len(
        np.unique(states, axis=0)
    )


def test_resume_rewinds_a_weights_probe_to_the_checkpoint(tmp_path, digits):
    # the store holds a snapshot after the checkpoint (step 6, written by a continuation of the
    # first fit); resuming from the step-5 checkpoint must compare step 6 with step 4 again,
    # as an uninterrupted run does, not with the later stored snapshot
    db = tmp_path / "runs.db"

    def callback(store):
        return LearnscopeCallback([ls.Weights()], ls.every(2), store, name="w", module="net",
                                  log_metrics=False)

    first = callback(db)
    trainer, _ = _fit(first, 160, digits, max_steps=5)  # 5 batches an epoch: ends epoch 1
    trainer.save_checkpoint(tmp_path / "at5.ckpt")
    _fit(callback(db), 160, digits, max_steps=7, ckpt_path=tmp_path / "at5.ckpt")
    assert _steps(db, first.run_id, "weights") == [0, 2, 4, 6]
    resumed = callback(db)
    _fit(resumed, 160, digits, max_steps=10, ckpt_path=tmp_path / "at5.ckpt")
    assert resumed.run_id == first.run_id
    # the distances must be those between the stored snapshots (the resumed fit's own)
    with ls.store.open(db) as store:
        series = store.snapshots(first.run_id, "all", probe="weights")
        steps = [int(step) for step in series.steps]
        snapshots = dict(zip(steps, series.array(steps, dtype="float64"), strict=True))
    assert steps == [0, 2, 4, 6, 8, 10]
    from_last = _series(db, first.run_id, "weights", "all", "distance_from_last")
    from_init = _series(db, first.run_id, "weights", "all", "distance_from_init")
    for previous, step in zip(steps, steps[1:], strict=False):
        assert from_last[step] == pytest.approx(
            np.linalg.norm(snapshots[step] - snapshots[previous]), rel=1e-9)
        assert from_init[step] == pytest.approx(
            np.linalg.norm(snapshots[step] - snapshots[0]), rel=1e-9)
    assert from_last[6] > 0


def test_missing_lightning_names_the_extra(monkeypatch):
    import importlib
    import sys

    import learnscope.integrations as integrations

    assert integrations.LearnscopeCallback is LearnscopeCallback  # lazy attribute
    monkeypatch.delitem(sys.modules, "learnscope.integrations.lightning")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'learnscope\[lightning\]'"):
        importlib.import_module("learnscope.integrations.lightning")
