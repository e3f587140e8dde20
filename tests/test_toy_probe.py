"""A probe written only from docs/architecture.md ("Adding a probe") works everywhere.

The probe's source is the exact snippet of the docs (extracted as tests/test_docs.py extracts
every block). Its values are checked against the mean computed here with plain torch, in a
Scope, in the trainer (against the weights it kept at every measured step), on resume after an
interrupted run (its state from the checkpoint: the same rows as an uninterrupted run) and under
torchrun with two processes (the single-process value).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_distributed import check_ran, torchrun
from test_docs import ROOT, fenced_blocks
from torch import nn
from torch.utils.data import TensorDataset

import learnscope as ls
from learnscope.train import recipes
from learnscope.train.trainer import train

ARCHITECTURE = ROOT / "docs" / "architecture.md"
WORKERS = Path(__file__).parent / "distributed_workers"


def probe_source() -> str:
    """The first Python block of the "Adding a probe" section of docs/architecture.md."""
    text = ARCHITECTURE.read_text().splitlines()
    heading = text.index("## Adding a probe") + 1  # 1-based line of the heading
    blocks = [b for b in fenced_blocks(ARCHITECTURE) if b.lang == "python" and b.line > heading]
    return blocks[0].code


@pytest.fixture(scope="module")
def MeanActivation():  # noqa: N802 - the class, as the docs name it
    namespace: dict = {}
    exec(compile(probe_source(), str(ARCHITECTURE), "exec"), namespace)
    return namespace["MeanActivation"]


def make_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))


def reference_mean(model: nn.Module, x: torch.Tensor) -> float:
    """The mean of the ReLU's output over every sample, in float64 NumPy."""
    with torch.no_grad():
        hidden = model[1](model[0](x)).double().numpy()
    return float(hidden.mean())


def training_set(n: int = 96, seed: int = 1) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


MEASURE = torch.randn(70, 6, generator=torch.Generator().manual_seed(5))


def test_the_toy_probe_in_a_scope_reports_the_mean_and_its_change(MeanActivation):
    model = make_model()
    probe = MeanActivation(MEASURE, layer="1", batch_size=16)
    assert probe.config() == {"type": "MeanActivation", "name": "mean_activation", "layer": "1",
                              "batch_size": 16}
    scope = ls.Scope(model, [probe], store=None)
    first = scope.step(0)["mean_activation"]
    assert first.value("1", "mean") == pytest.approx(reference_mean(model, MEASURE), rel=1e-12)
    assert math.isnan(first.value("1", "change"))
    before = reference_mean(model, MEASURE)
    with torch.no_grad():
        model[0].bias.add_(0.25)
    second = scope.step(1)["mean_activation"]
    assert second.value("1", "change") == pytest.approx(
        reference_mean(model, MEASURE) - before, rel=1e-10)
    scope.finish()


def _train(MeanActivation, store: Path, *, resume: str | None = None,
           stop_at: int | None = None, save_weights: bool = False):
    model = make_model()
    probe = MeanActivation(MEASURE, layer="1", batch_size=16)
    scope = ls.Scope(model, [probe], ls.every(4), store, name="toy", total_steps=18,
                     steps_per_epoch=6, resume=resume)

    def on_step(step: int, total: int) -> None:
        if step == stop_at:
            raise KeyboardInterrupt  # as a Ctrl-C between two checkpoints

    try:
        result = train(model, training_set(), recipes.get("multistep", epochs=3, batch_size=16),
                       scope=scope, seed=2, resume=resume is not None, checkpoint_every=100,
                       save_weights=save_weights, on_step=on_step)
    except KeyboardInterrupt:
        scope.interrupt()
        return scope, None
    scope.finish(result.status)
    return scope, result


def _rows(store: Path, run_id: str) -> dict[tuple[int, str], float]:
    with ls.store.open(store) as opened:
        frame = opened.metrics(run=run_id, probe="mean_activation")
    return {(int(s), m): float(v) for s, m, v in zip(frame["step"], frame["measure"],
                                                     frame["value"], strict=True)}


def test_the_toy_probe_in_the_trainer_measures_the_kept_weights(MeanActivation, tmp_path):
    store = tmp_path / "runs.db"
    scope, result = _train(MeanActivation, store, save_weights=True)
    assert result.status == "finished"
    rows = _rows(store, scope.run_id)
    steps = sorted({step for step, _ in rows})
    assert steps == [0, 4, 8, 12, 16]
    means = {}
    for step in steps:
        model = make_model()
        model.load_state_dict(torch.load(scope.run_folder() / "weights" / f"step_{step:09d}.pt",
                                         weights_only=True))
        means[step] = reference_mean(model, MEASURE)
        assert rows[(step, "mean")] == pytest.approx(means[step], rel=1e-12)
    for previous, step in zip(steps, steps[1:], strict=False):
        assert rows[(step, "change")] == pytest.approx(means[step] - means[previous], rel=1e-9,
                                                       abs=1e-15)


def test_the_toy_probe_resumes_from_the_checkpoint_as_an_uninterrupted_run(MeanActivation,
                                                                            tmp_path):
    store = tmp_path / "runs.db"
    interrupted, result = _train(MeanActivation, store, stop_at=10)  # checkpoint at step 8
    assert result is None
    with ls.store.open(store) as opened:
        assert opened.measured_steps(interrupted.run_id, "mean_activation") == [0, 4, 8]
    resumed, result = _train(MeanActivation, store, resume=interrupted.run_id)
    assert result.status == "finished" and resumed.run_id == interrupted.run_id
    reference, _ = _train(MeanActivation, tmp_path / "reference.db")
    got, want = _rows(store, resumed.run_id), _rows(tmp_path / "reference.db",
                                                     reference.run_id)
    assert sorted(got) == sorted(want)
    assert not math.isnan(got[(12, "change")])  # the previous mean came from the checkpoint
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key


def test_the_toy_probe_under_torchrun_gives_the_single_process_value(MeanActivation, tmp_path):
    model = make_model()
    snippet = tmp_path / "probe.py"
    snippet.write_text(probe_source())
    torch.save({"model": model, "x": MEASURE}, tmp_path / "in.pt")
    check_ran(torchrun(WORKERS / "toy_probe.py", str(snippet), str(tmp_path / "in.pt"),
                       str(tmp_path / "out")))
    single = ls.Scope(model, [MeanActivation(MEASURE, layer="1", batch_size=16)], store=None)
    want = single.measure(0)["mean_activation"].rows
    for rank in (0, 1):
        got = json.loads((tmp_path / "out" / f"rank{rank}.json").read_text())
        assert got["world"] == 2
        assert [tuple(row[:3]) for row in got["rows"]] == [tuple(row[:3]) for row in want]
        assert np.allclose([row[3] for row in got["rows"]], [row[3] for row in want],
                           rtol=1e-12, atol=0, equal_nan=True)
