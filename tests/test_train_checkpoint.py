"""A run's checkpoint: full while the run can resume, slim once it is finished or diverged.

The checkpoint carries the probes' references (the weights of the init and last measured states,
whose pattern counts are recounted on resume) so that a killed run resumes measuring exactly; a
finished (or diverged) run is reused, never resumed, so it keeps the final training state without
them.
"""

from __future__ import annotations

import io
import os
from contextlib import nullcontext
from dataclasses import replace

import pytest
import torch
from test_train import MEASURE_SET, NoisyData, make_model, run

import learnscope as ls
from learnscope.experiments import presets
from learnscope.experiments.presets import RunSpec
from learnscope.experiments.quickstart import CHECKPOINT as QUICKSTART_CHECKPOINT
from learnscope.experiments.quickstart import run_quickstart
from learnscope.train import recipes, trainer
from learnscope.train.trainer import CHECKPOINT, train


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def saved_size(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def test_a_finished_runs_checkpoint_keeps_the_final_state_without_the_probe_references(
        tmp_path, one_thread):
    model, scope, result = run(tmp_path / "s.db", "slim", finish=False)
    path = scope.store.artifacts_root / scope.run_id / CHECKPOINT
    full = load(path)
    assert full["step"] == 24 and full["probes"]["patterns"]["last_weights"] is not None
    leftover = path.with_name(f"{CHECKPOINT}.tmp999999")  # a write killed long ago
    leftover.write_bytes(b"partial")
    scope.finish(result.status)
    slim = load(path)
    assert slim["probes"] == {} and slim["step"] == 24
    for name, value in model.state_dict().items():
        assert torch.equal(slim["model"][name], value), name
    assert set(slim) == set(full)  # what a resume reads is still there
    references = saved_size(scope.probes[0].state_dict())
    assert path.stat().st_size < saved_size(full) - references / 2
    assert not leftover.exists()


@pytest.mark.parametrize("stop", ["failed", "interrupted"])
def test_a_run_that_can_resume_keeps_its_full_checkpoint(tmp_path, one_thread, stop):
    _, scope, _ = run(tmp_path / "s.db", "stopped", finish=False)
    path = scope.store.artifacts_root / scope.run_id / CHECKPOINT
    if stop == "failed":
        scope.finish("failed", error="injected")
    else:
        scope.interrupt()
    assert load(path)["probes"]["patterns"]["last_weights"] is not None


def test_a_diverged_runs_checkpoint_is_slim_too(tmp_path, one_thread):
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(MEASURE_SET, batch_size=32)], ls.at([0]),
                     tmp_path / "s.db", name="boom")  # the loss, not a measurement, diverges
    result = train(model, NoisyData(), recipes.get("multistep", epochs=4, batch_size=16,
                                                   lr=1e12), scope=scope, seed=0,
                   checkpoint_every=1)
    assert result.status == "diverged" and result.steps >= 1
    with ls.store.open(tmp_path / "s.db", read_only=True) as store:
        assert store.run(scope.run_id)["status"] == "diverged"
        checkpoint = load(store.artifacts_root / scope.run_id / CHECKPOINT)
    assert checkpoint["probes"] == {} and checkpoint["step"] == result.steps


def test_a_run_never_checkpointed_gets_no_checkpoint_when_it_finishes(tmp_path, one_thread):
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(MEASURE_SET, batch_size=32)], ls.at([0]),
                     tmp_path / "s.db", name="short")
    result = train(model, NoisyData(32), recipes.get("multistep", epochs=1, batch_size=16),
                   scope=scope, seed=0)
    scope.finish(result.status)
    assert not (scope.store.artifacts_root / scope.run_id / CHECKPOINT).exists()


SPEC = RunSpec(preset="checkpoints", name="since-final-mlp", model="mlp",
               model_options={"hidden": (16, 16)}, dataset="synthetic",
               data_options={"shape": (12,), "num_samples": 240, "val_fraction": 0.0},
               recipe="multistep", recipe_options={"epochs": 3, "batch_size": 40}, seed=1,
               schedule="every 6; end", probe_options={"batch_size": 120}, since_final=True)


def values(store, run_id):
    with ls.store.open(store, read_only=True) as reader:
        frame = reader.metrics(run_id, probe="patterns")
    return frame.set_index(["step", "layer", "measure"])["value"].sort_index()


def test_a_run_whose_since_final_pass_failed_resumes_it_from_its_full_checkpoint(
        tmp_path, one_thread, monkeypatch):
    uninterrupted, store = tmp_path / "once.db", tmp_path / "s.db"
    run_id, status = presets.execute(SPEC, uninterrupted)
    assert status == "finished"

    def fail(*args, **kwargs):
        raise OSError("injected failure of the since-final pass")

    monkeypatch.setattr(trainer, "measure_since_final", fail)
    with pytest.raises(OSError, match="injected"):
        presets.execute(SPEC, store)
    monkeypatch.undo()
    with ls.store.open(store, read_only=True) as reader:
        failed = reader.runs()["id"].iloc[0]
        assert reader.run(failed)["status"] == "failed"
        path = reader.artifacts_root / failed / CHECKPOINT
    assert load(path)["probes"]["patterns"]["last_weights"] is not None  # failed: kept in full

    assert presets.execute(SPEC, store) == (failed, "finished")  # resumed from it
    assert load(path)["probes"] == {}
    assert presets.execute(SPEC, store) == (failed, "skipped")  # the same command: reused
    resumed, reference = values(store, failed), values(uninterrupted, run_id)
    assert any(m.endswith("_since_final") for m in resumed.index.get_level_values("measure"))
    assert resumed.index.equals(reference.index)
    assert torch.allclose(torch.tensor(resumed.to_numpy()), torch.tensor(reference.to_numpy()),
                          equal_nan=True)
    # a longer run is another run: it never reads the finished run's checkpoint
    longer = replace(SPEC, max_steps=20)
    assert presets.execute(longer, store)[1] == "finished"


def test_a_finished_quickstart_run_keeps_a_slim_checkpoint_and_is_reused(tmp_path, one_thread):
    store = tmp_path / "s.db"
    (first,) = run_quickstart(store, epochs=1, every_k=5, nets=("mlp",))
    path = store.with_suffix(".artifacts") / first.run_id / QUICKSTART_CHECKPOINT
    checkpoint = load(path)
    assert checkpoint["probes"] == {} and checkpoint["step"] == 23  # ceil(1437 / 64) updates
    assert set(checkpoint) == {"step", "model", "optimizer", "probes"}
    (again,) = run_quickstart(store, epochs=1, every_k=5, nets=("mlp",))
    assert (again.status, again.run_id) == ("skipped", first.run_id)
    assert again.test_accuracy == pytest.approx(first.test_accuracy)


def test_a_checkpoint_write_that_fails_leaves_the_previous_checkpoint_and_no_partial_file(
        tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    trainer._save_atomic({"step": 4}, path)
    real_save = torch.save

    def save_half_then_fail(obj, target, *args, **kwargs):  # a disk full half-way
        real_save(obj, target, *args, **kwargs)
        named = isinstance(target, (str, os.PathLike))
        with open(target, "r+b") if named else nullcontext(target) as handle:
            handle.seek(0, os.SEEK_END)
            handle.truncate(handle.tell() // 2)
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        trainer._save_atomic({"step": 8}, path)
    monkeypatch.undo()
    assert load(path) == {"step": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]
