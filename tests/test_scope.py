"""Scope + schedules + store: measures land at the scheduled steps, artifacts, kill and resume."""

from __future__ import annotations

import math
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

import learnscope as ls
from learnscope.patterns import measures as M


def test_schedules():
    assert [s for s in range(30) if ls.every(7)(s)] == [0, 7, 14, 21, 28]
    assert [s for s in range(30) if ls.every(10, start=5)(s)] == [5, 15, 25]
    assert [s for s in range(30) if ls.at([3, 0, 29])(s)] == [0, 3, 29]
    union = ls.every(10) | ls.at([3, 8])
    assert union.steps_until(25) == [0, 3, 8, 10, 20]
    assert repr(union) == "every(10) | at([3, 8])"
    for bad in (lambda: ls.every(0), lambda: ls.every(2.5), lambda: ls.at([-1])):
        with pytest.raises(ValueError):
            bad()


def set_weights_for_step(model: nn.Module, step: int) -> None:
    """A stand-in for training whose state depends on the step only (so runs are comparable)."""
    generator = torch.Generator().manual_seed(1000 + step)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 40), nn.ReLU6())


DATA = torch.randn(200, 6, generator=torch.Generator().manual_seed(7))


def test_scope_writes_every_measure_at_the_scheduled_steps(tmp_path):
    model = make_model()
    store_path = tmp_path / "s.db"
    probe = ls.ActivationPatterns(DATA, save_counts=True)
    with ls.Scope(model, [probe], ls.every(4) | ls.at([9]), store_path, name="t",
                  total_steps=12) as scope:
        for step in range(12):
            set_weights_for_step(model, step)
            scope.step(step, epoch=step // 4)
    store = ls.store.open(store_path)
    runs = store.runs()
    assert list(runs.columns)[0] == "id"
    assert runs.loc[0, "status"] == "finished"
    frame = store.metrics(run=scope.run_id)
    assert sorted(frame["step"].unique().tolist()) == [0, 4, 8, 9]
    per_step = frame.groupby("step").size()
    assert (per_step == len(probe.available_measures()) * 2).all()  # 2 layers, every measure once
    # values equal an independent recount of the model state at that step
    set_weights_for_step(model, 8)
    at8 = ls.patterns.count(model, DATA)
    set_weights_for_step(model, 4)
    at4 = ls.patterns.count(model, DATA)
    got = store.metrics(run=scope.run_id, layer="3")
    value = got.set_index(["step", "measure"])["value"]
    assert value[(8, "entropy")] == pytest.approx(M.entropy(at8["3"]), abs=1e-12)
    assert value[(8, "weighted_jaccard_since_last")] == pytest.approx(
        M.weighted_jaccard(at4["3"], at8["3"]), abs=1e-12)
    assert math.isnan(value[(0, "jaccard_since_last")])
    assert got[got["measure"] == "entropy"]["epoch"].tolist() == [0, 1, 2, 2]
    # saved counts load back equal to a recount
    folder = store.artifact_dir(scope.run_id, 8, "patterns")
    loaded = ls.ActivationPatterns.load_counts(folder)
    assert list(loaded) == ["1", "3"]
    assert np.array_equal(loaded["3"].keys, at8["3"].keys)
    assert np.array_equal(loaded["3"].counts, at8["3"].counts)


def test_scope_in_memory_without_store():
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(DATA, measures=["entropy"])], ls.at([1]),
                     store=None)
    assert scope.step(0) is None
    result = scope.step(1)["patterns"]
    assert [r[2] for r in result.rows] == ["entropy", "entropy"]
    assert result.value("1", "entropy") == pytest.approx(
        M.entropy(ls.patterns.count(model, DATA)["1"]))


WORKER = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    import learnscope as ls
    from test_scope import DATA, make_model, set_weights_for_step
    model = make_model()
    probe = ls.ActivationPatterns(DATA, save_counts=True)
    scope = ls.Scope(model, [probe], ls.every(1), {store!r}, name="killed", total_steps=30)
    print(scope.run_id, flush=True)
    for step in range(30):
        set_weights_for_step(model, step)
        scope.step(step)
        print("measured", step, flush=True)
        time.sleep(0.2)
    """
)


def run_to_end(scope: ls.Scope, model: nn.Module, steps: int) -> None:
    for step in range(steps):
        set_weights_for_step(model, step)
        scope.step(step)
    scope.finish()


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path):
    store_path = tmp_path / "s.db"
    tests_dir = os.path.dirname(__file__)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(tests=tests_dir, store=str(store_path))],
        stdout=subprocess.PIPE, text=True,
    )
    run_id = worker.stdout.readline().strip()
    deadline = time.time() + 60
    measured = 0
    while measured < 5 and time.time() < deadline:
        if worker.stdout.readline().startswith("measured"):
            measured += 1
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    store = ls.store.open(store_path)
    assert store.runs().set_index("id").loc[run_id, "status"] == "interrupted"
    done_before = store.measured_steps(run_id, "patterns")
    assert 5 <= len(done_before) < 30

    model = make_model()
    resumed = ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1),
                       store, resume=run_id)
    run_to_end(resumed, model, 30)

    reference_model = make_model()
    reference = ls.Scope(reference_model, [ls.ActivationPatterns(DATA)], ls.every(1), store,
                         name="reference")
    run_to_end(reference, reference_model, 30)

    got = store.metrics(run=run_id)
    want = store.metrics(run=reference.run_id)
    assert store.runs().set_index("id").loc[run_id, "status"] == "finished"
    assert not got.duplicated(["step", "layer", "measure"]).any()
    assert len(got) == len(want) == 30 * 2 * len(ls.ActivationPatterns(DATA).available_measures())
    merged = got.merge(want, on=["step", "layer", "measure"], suffixes=("_got", "_want"))
    both_nan = merged["value_got"].isna() & merged["value_want"].isna()
    close = np.isclose(merged["value_got"], merged["value_want"], rtol=0, atol=1e-12)
    assert (both_nan | close).all()


def test_epoch_schedules_windows_and_end():
    timeline = (10, 100)  # 10 updates per epoch, 100 updates in all
    half = ls.every_epoch(0.5).bind(*timeline)
    assert [s for s in range(31) if half(s)] == [0, 5, 10, 15, 20, 25, 30]
    third = ls.every_epoch(1 / 3).bind(*timeline)  # 3.33 steps: rounded, never drifting
    assert [s for s in range(21) if third(s)] == [0, 3, 7, 10, 13, 17, 20]
    epochs = ls.at_epochs([0, 2, 9.5]).bind(*timeline)
    assert [s for s in range(101) if epochs(s)] == [0, 20, 95]
    assert [s for s in range(200) if ls.end().bind(*timeline)(s)] == [100]
    early = ls.every(1).until(3) | ls.every(25).since(50)
    assert early.steps_until(101) == [0, 1, 2, 3, 50, 75, 100]
    with pytest.raises(ValueError, match="bind"):
        ls.end()(5)


def test_schedule_parsing_matches_the_built_schedule():
    from learnscope.train import parse

    text = "every 1 until 40; epochs 100; end"
    parsed = parse(text).bind(390, 78_000)
    built = (ls.every(1).until(40) | ls.at_epochs([100]) | ls.end()).bind(390, 78_000)
    steps = range(0, 78_001)
    assert [s for s in steps if parsed(s)] == [s for s in steps if built(s)]
    assert [s for s in steps if parsed(s)][-3:] == [40, 39_000, 78_000]
    assert parse("every 5 from 10 until 20 | at 3").steps_until(30) == [3, 10, 15, 20]
    for bad in ("", "every", "every x", "sometimes 3", "every 2 after 4", "end now"):
        with pytest.raises(ValueError):
            parse(bad)
