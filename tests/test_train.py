"""Recipes, the trainer loop, divergence, kill-and-resume, and since-final comparisons."""

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
from torch.utils.data import Dataset

import learnscope as ls
from learnscope.patterns import measures as M
from learnscope.train import recipes
from learnscope.train.trainer import measure_since_final, train


def test_recipe_learning_rates_follow_the_paper_settings():
    model = nn.Linear(3, 2)
    spe = 10
    opt, sched = recipes.get("multistep").build(model, spe)
    lrs = []
    for _ in range(160 * spe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 1e-4
    assert lrs[0] == pytest.approx(0.1) and lrs[100 * spe - 1] == pytest.approx(0.1)
    assert lrs[100 * spe] == pytest.approx(0.01) and lrs[150 * spe] == pytest.approx(0.001)

    opt, sched = recipes.get("onecycle", epochs=10).build(nn.Linear(3, 2), spe)
    lrs = []
    for _ in range(10 * spe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert opt.param_groups[0]["nesterov"]
    assert lrs[0] == pytest.approx(0.8 / 10)  # div factor 10
    # 10% warm-up: torch ends the rising phase at update pct_start * total - 1
    assert max(lrs) == pytest.approx(0.8, rel=1e-3) and int(np.argmax(lrs)) == 9
    assert lrs[-1] == pytest.approx(0.08 / 1e3, rel=0.05)  # final div factor 1e3

    opt, sched = recipes.get("cyclic").build(nn.Linear(3, 2), spe)
    lrs = []
    for _ in range(25 * spe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[10 * spe] == pytest.approx(0.2)
    assert lrs[20 * spe] == pytest.approx(0.001)  # 10 epochs up, 10 down
    assert opt.param_groups[0]["weight_decay"] == 5e-4


def test_recipe_overrides_and_scalar_groups():
    assert recipes.get("multistep", epochs=3, lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="unknown recipe setting"):
        recipes.get("multistep", learning_rate=0.5)
    with pytest.raises(ValueError, match="available"):
        recipes.get("sgd-please")

    class WithScalars(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.bias = nn.Parameter(torch.zeros(1))

        def scalar_parameters(self):
            return [self.bias]

    opt, _ = recipes.get("fixup").build(WithScalars(), 5)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.1), pytest.approx(0.01)]
    assert sum(len(g["params"]) for g in opt.param_groups) == 3


class NoisyData(Dataset):
    """Gaussian clusters whose items get fresh noise on every access (like augmentation)."""

    def __init__(self, n: int = 96, seed: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = torch.randn(n, 8, generator=g) + 2.0 * nn.functional.one_hot(self.y, 8)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(8), self.y[i]


def make_model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


MEASURE_SET = NoisyData(64, seed=5).x  # fixed inputs for measuring


def run(store, name, *, max_steps=None, resume=None, save_weights=False, sleep=0.0,
        on_measure=None, finish=True):
    model = make_model()
    recipe = recipes.get("multistep", epochs=4, batch_size=16, milestones=(2, 3))
    probe = ls.ActivationPatterns(MEASURE_SET, batch_size=32)
    scope = ls.Scope(model, [probe], ls.every(3) | ls.end(), store, name=name,
                     total_steps=24, steps_per_epoch=6, resume=resume)

    def on_step(step, total):
        if sleep:
            print("step", step, flush=True)
            time.sleep(sleep)

    result = train(model, NoisyData(), recipe, scope=scope, test_set=NoisyData(30, seed=9),
                   seed=7, resume=resume is not None, checkpoint_every=4,
                   save_weights=save_weights, on_step=on_step)
    if finish:
        scope.finish(result.status)
    return model, scope, result


def test_train_measures_logs_and_finishes(tmp_path):
    model, scope, result = run(tmp_path / "s.db", "plain")
    assert result.status == "finished" and result.steps == 24 and result.epochs_done == 4
    store = ls.store.open(tmp_path / "s.db")
    patterns = store.metrics(run=scope.run_id, measure="entropy")
    assert sorted(patterns["step"].unique()) == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    logged = store.metrics(run=scope.run_id, probe="train")
    assert set(logged["measure"]) >= {"loss", "accuracy", "lr", "test_accuracy", "test_loss"}
    lr = logged[logged["measure"] == "lr"].set_index("step")["value"]
    assert lr[12] == pytest.approx(0.1) and lr[13] == pytest.approx(0.01)  # x0.1 after epoch 2
    assert store.runs().loc[0, "status"] == "finished"


def test_divergence_stops_the_run_and_marks_it_diverged(tmp_path):
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(MEASURE_SET, batch_size=32)], ls.at([1000]),
                     tmp_path / "s.db", name="boom")
    with torch.no_grad():
        model[0].weight.fill_(float("inf"))
    result = train(model, NoisyData(), recipes.get("multistep", epochs=2, batch_size=16),
                   scope=scope, seed=0)
    assert result.status == "diverged" and result.steps == 0
    status = ls.store.open(tmp_path / "s.db").runs().loc[0, "status"]
    assert status == "diverged"


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_train import run
    torch.set_num_threads(1)  # as the test process: float sums depend on the thread count
    run({store!r}, "killed", sleep=0.15)
    """
)


def test_killed_run_resumes_to_the_same_measurements_and_weights(tmp_path, one_thread):
    # bit-identical weights need the same torch thread count in the killed worker and here:
    # with 2 threads in one and 1 in the other (a test earlier in the session may leave any
    # count behind) the float sums differ in the last bits
    store_path = tmp_path / "s.db"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(tests=os.path.dirname(__file__),
                                              store=str(store_path))],
        stdout=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 90
    last = 0
    while last < 14 and time.time() < deadline:  # kill mid-epoch, between checkpoints
        line = worker.stdout.readline()
        if line.startswith("step"):
            last = int(line.split()[1])
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    store = ls.store.open(store_path)
    run_id = store.runs()["id"][0]
    assert store.runs()["status"][0] == "interrupted"

    resumed_model, _, result = run(store_path, "killed", resume=run_id)
    reference_model, reference, _ = run(store_path, "reference")
    assert result.status == "finished" and result.steps == 24
    for key, value in reference_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    got = store.metrics(run=run_id, probe="patterns")
    want = store.metrics(run=reference.run_id, probe="patterns")
    assert not got.duplicated(["step", "layer", "measure"]).any()
    assert len(got) == len(want)
    merged = got.merge(want, on=["step", "layer", "measure"], suffixes=("_got", "_want"))
    same = np.isclose(merged["value_got"], merged["value_want"], rtol=0, atol=1e-12)
    assert (same | (merged["value_got"].isna() & merged["value_want"].isna())).all()


def test_since_final_compares_every_kept_state_with_the_final_network(tmp_path):
    model, scope, _ = run(tmp_path / "s.db", "final", save_weights=True)
    compared = measure_since_final(scope, make_model, model)
    assert compared == 9
    store = ls.store.open(tmp_path / "s.db")
    final = store.metrics(run=scope.run_id, measure="jaccard_since_final")
    assert (final[final["step"] == 24]["value"] == 1.0).all()
    start = make_model()
    start.load_state_dict(torch.load(store.artifacts_root / scope.run_id / "weights" /
                                     "step_000000000.pt", weights_only=True))
    at_start = ls.patterns.count(start, MEASURE_SET, batch_size=32)
    at_end = ls.patterns.count(model, MEASURE_SET, batch_size=32)
    wj = store.metrics(run=scope.run_id, measure="weighted_jaccard_since_final", layer="2")
    assert wj.set_index("step")["value"][0] == pytest.approx(
        M.weighted_jaccard(at_end["2"], at_start["2"]), abs=1e-12)


def test_fixup_recipe_gives_the_fixup_scalars_a_tenth_of_the_rate():
    model = ls.models.create("fixup_resnet20")
    opt, _ = recipes.get("fixup").build(model, 10)
    main, scalars = opt.param_groups
    assert main["lr"] == pytest.approx(0.1) and scalars["lr"] == pytest.approx(0.01)
    assert all(p.ndim == 0 for p in scalars["params"]) and len(scalars["params"]) == 47
    assert all(p.ndim > 0 for p in main["params"])
    assert main["weight_decay"] == 5e-4


def test_a_run_killed_between_an_epochs_checkpoint_and_its_evaluation_still_logs_it(tmp_path):
    store_path = tmp_path / "s.db"
    model = make_model()
    recipe = recipes.get("multistep", epochs=4, batch_size=16, milestones=(2, 3))
    scope = ls.Scope(model, [ls.ActivationPatterns(MEASURE_SET, batch_size=32)],
                     ls.every(3) | ls.end(), store_path, name="cut", total_steps=24,
                     steps_per_epoch=6)

    def stop_at_epoch_end(step, total):
        if step == 6:  # measured and checkpointed, the epoch's evaluation not yet run
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, NoisyData(), recipe, scope=scope, test_set=NoisyData(30, seed=9), seed=7,
              checkpoint_every=4, on_step=stop_at_epoch_end)
    store = ls.store.open(store_path)
    assert "test_accuracy" not in set(store.metrics(run=scope.run_id)["measure"])
    run(store_path, "cut", resume=scope.run_id)
    _, reference, _ = run(store_path, "reference")
    got = store.metrics(run=scope.run_id, measure=["test_accuracy", "test_loss"])
    want = store.metrics(run=reference.run_id, measure=["test_accuracy", "test_loss"])
    assert got["step"].tolist() == want["step"].tolist() == [6, 6, 12, 12, 18, 18, 24, 24]
    np.testing.assert_allclose(got["value"], want["value"], rtol=0, atol=1e-12)
