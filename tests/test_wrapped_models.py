"""Models wrapped by torch.compile, DistributedDataParallel and DataParallel are measured through
the module they wrap: the same counts, separation and weights as the plain model, under the inner
module's names (no `_orig_mod.` / `module.` prefixes), in `count`, the probes, Scope and the
trainer.

torch.compile uses its default (inductor) backend where the compiled graph never runs (measuring
unwraps it first); the training runs use backend="eager" (Dynamo traces, no C++ compilation),
which trains through the compiled forward at a fraction of the compile time on a busy CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
from torch import nn

import learnscope as ls
from learnscope.engine import unwrap_model
from learnscope.patterns.counts import PatternCounts
from learnscope.train import recipes
from learnscope.train.trainer import measure_since_final, train

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


def labelled_data(n: int = 240, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + 1.5 * nn.functional.one_hot(y, 6)
    return x, y


def assert_same_counts(got: dict[str, PatternCounts], want: dict[str, PatternCounts]) -> None:
    assert list(got) == list(want)
    for name in want:
        a, b = got[name], want[name]
        assert a.width == b.width and a.breakpoints == b.breakpoints
        np.testing.assert_array_equal(a.keys, b.keys)
        np.testing.assert_array_equal(a.counts, b.counts)
        for field in ("joint_index", "joint_labels", "joint_counts"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def wrappers(model: nn.Module) -> dict[str, nn.Module]:
    """The wrappers that need no process group, nested ones included."""
    return {
        "compile": torch.compile(model),
        "data_parallel": nn.DataParallel(model),
        "compile(data_parallel)": torch.compile(nn.DataParallel(model)),
    }


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group in this process (for DistributedDataParallel), destroyed after."""
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                                  world_size=1)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def test_unwrap_gives_the_wrapped_module_itself_through_nested_wrappers(process_group):
    model = make_model()
    assert unwrap_model(model) is model
    for wrapped in [*wrappers(model).values(), nn.parallel.DistributedDataParallel(model),
                    torch.compile(nn.parallel.DistributedDataParallel(model))]:
        inner = unwrap_model(wrapped)
        assert inner is model  # the same object: same parameters, nothing copied
        assert [p for p in inner.parameters()] == [p for p in model.parameters()]


@pytest.mark.parametrize("labels", [False, True])
def test_counts_of_a_wrapped_model_equal_the_plain_models(labels):
    model = make_model()
    x, y = labelled_data()
    data = (x, y) if labels else x
    want = ls.patterns.count(model, data, batch_size=60, labels=labels)
    assert list(want) == ["2", "4"]
    for kind, wrapped in wrappers(model).items():
        got = ls.patterns.count(wrapped, data, batch_size=60, labels=labels)
        assert_same_counts(got, want), kind


def test_layers_of_a_wrapped_model_are_chosen_by_inner_module_or_name():
    model = make_model()
    x, _ = labelled_data()
    compiled = torch.compile(model)
    want = ls.patterns.count(model, x, layers=["4"])
    assert_same_counts(ls.patterns.count(compiled, x, layers=[model[4]]), want)
    assert_same_counts(ls.patterns.count(compiled, x, layers=["4"]), want)
    with pytest.raises(ValueError, match="unknown layer name"):
        ls.patterns.count(compiled, x, layers=["_orig_mod.4"])


def test_separation_and_weights_of_a_wrapped_model_equal_the_plain_models():
    model = make_model()
    data = labelled_data()
    want_d = ls.separation.measure(model, data, batch_size=60)
    assert list(want_d) == ["input", "2", "4"]
    want_w = ls.Weights(first_layers=2, train=data).measure(model, 0)
    for kind, wrapped in wrappers(model).items():
        assert ls.separation.measure(wrapped, data, batch_size=60) == want_d, kind
        got_w = ls.Weights(first_layers=2, train=data).measure(wrapped, 0)
        assert got_w.rows == want_w.rows, kind
        assert list(got_w.snapshots) == ["0", "3"]
        for name, vector in want_w.snapshots.items():
            np.testing.assert_array_equal(got_w.snapshots[name], vector)


def test_distributed_data_parallel_is_measured_through_its_module(process_group):
    model = make_model()
    data = labelled_data()
    ddp = nn.parallel.DistributedDataParallel(model)
    assert_same_counts(ls.patterns.count(ddp, data, labels=True),
                       ls.patterns.count(model, data, labels=True))
    assert ls.separation.measure(ddp, data) == ls.separation.measure(model, data)
    weights = ls.Weights(layer="3")
    assert weights.measure(ddp, 0).rows == ls.Weights(layer="3").measure(model, 0).rows
    assert_same_counts(ls.patterns.count(torch.compile(ddp), data[0]),
                       ls.patterns.count(model, data[0]))


def test_scope_stores_the_plain_models_rows_for_a_wrapped_model():
    data = labelled_data()

    def measured(wrap) -> tuple[dict, dict]:
        model = make_model()
        probes = [ls.ActivationPatterns(data, batch_size=60, labels=True),
                  ls.Separation(data, batch_size=60), ls.Weights(first_layers=2, train=data)]
        with ls.Scope(wrap(model), probes, store=None, name="wrapped") as scope:
            first = scope.step(0)
            with torch.no_grad():
                model[0].weight.mul_(1.5)  # the wrapper sees the change: same weights
            second = scope.step(1)
            config = scope.probes[0].config()
        return {p: (first[p].rows, second[p].rows) for p in first}, config

    want, want_config = measured(lambda m: m)
    for wrap in (torch.compile, nn.DataParallel):
        got, config = measured(wrap)
        assert got == want and config == want_config
    layers = {row[0] for rows in want.values() for row in rows[0]}
    assert {"2", "4", "0", "3"} <= layers
    assert not any(name.startswith(("_orig_mod", "module")) for name in layers)


class Clusters(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x, self.y = labelled_data(96, seed=7)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_training_a_compiled_model_stores_the_plain_runs_rows_and_state(tmp_path):
    measure_on = labelled_data(64, seed=9)

    def run(name: str, compiled: bool):
        model = make_model()
        net = torch.compile(model, backend="eager") if compiled else model
        probes = [ls.ActivationPatterns(measure_on, batch_size=32, labels=True),
                  ls.Weights(first_layers=2)]
        scope = ls.Scope(net, probes, ls.every(3) | ls.end(), tmp_path / "runs.db", name=name,
                         total_steps=12, steps_per_epoch=6)
        recipe = recipes.get("multistep", epochs=2, batch_size=16, milestones=(1,))
        result = train(net, Clusters(), recipe, scope=scope, seed=3, save_weights=True,
                       checkpoint_every=4)
        # every kept state compared with the final network, loaded into the same kind of model
        factory = (lambda: torch.compile(make_model(), backend="eager")) if compiled \
            else make_model
        assert measure_since_final(scope, factory, net) == 5
        scope.finish(result.status)
        return model, scope

    plain, plain_scope = run("plain", compiled=False)
    compiled, compiled_scope = run("compiled", compiled=True)
    store = ls.store.open(tmp_path / "runs.db")
    columns = ["step", "probe", "layer", "measure", "value"]
    want = store.metrics(run=plain_scope.run_id)[columns].sort_values(columns[:4])
    got = store.metrics(run=compiled_scope.run_id)[columns].sort_values(columns[:4])
    assert len(want) > 0 and set(want["layer"]) >= {"2", "4", "0", "3"}
    assert "jaccard_since_final" in set(want["measure"])
    np.testing.assert_array_equal(got[columns[:4]].to_numpy(), want[columns[:4]].to_numpy())
    np.testing.assert_allclose(got["value"].to_numpy(), want["value"].to_numpy(), rtol=1e-6)
    # the kept weights and the checkpoint hold the inner module's state dict, no prefixes
    step, file = compiled_scope.saved_weights()[-1]
    kept = torch.load(file, weights_only=True)
    assert list(kept) == list(plain.state_dict())
    checkpoint = torch.load(compiled_scope.run_folder() / "checkpoint.pt", weights_only=False)
    assert list(checkpoint["model"]) == list(compiled.state_dict())


def lightning_rows(wrap, module: str | None = None) -> dict:
    """Rows per step of a one-epoch Lightning fit of `wrap(LightningModule)`, measured by the
    callback (on `module`, an attribute path, or the LightningModule itself)."""
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from learnscope.integrations.lightning import LearnscopeCallback

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = labelled_data(96, seed=4)
    probes = [ls.ActivationPatterns((x, y), batch_size=48, labels=True),
              ls.Weights(first_layers=2)]
    callback = LearnscopeCallback(probes, ls.every(1), None, module=module)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1,
                         callbacks=[callback], max_epochs=1)
    classifier = Classifier()
    classifier.net = wrap(classifier.net) if module else classifier.net
    trainer.fit(classifier if module else wrap(classifier),
                DataLoader(TensorDataset(x, y), batch_size=32))
    return {step: {p: r.rows for p, r in results.items()}
            for step, results in callback.scope.results.items()}


@pytest.mark.parametrize("module", [None, "net"])
def test_the_lightning_callback_measures_a_compiled_module_as_the_plain_one(module):
    """A compiled LightningModule (`trainer.fit(torch.compile(module))`, whose forward Lightning
    replaces by a compiled one) or a compiled submodule chosen with `module="net"`."""
    want = lightning_rows(lambda m: m, module)
    got = lightning_rows(lambda m: torch.compile(m, backend="eager"), module)
    assert sorted(want) == [0, 1, 2, 3] and got == want
    layers = {row[0] for rows in want[3].values() for row in rows}
    prefix = "net." if module is None else ""
    assert {f"{prefix}2", f"{prefix}4", f"{prefix}0", f"{prefix}3"} <= layers


def test_two_ranks_measure_a_ddp_model_as_one_process_measures_the_plain_one(tmp_path):
    from test_distributed import WORKERS, check_ran, torchrun

    torch.manual_seed(0)
    model = make_model()
    x, y = labelled_data(203, seed=6)  # 13 batches of 16, the last of 11
    torch.save({"model": model, "x": x, "y": y}, tmp_path / "inputs.pt")
    check_ran(torchrun(WORKERS / "wrapped.py", str(tmp_path / "inputs.pt"), str(tmp_path)))
    want = ls.patterns.count(model, (x, y), batch_size=16, labels=True)
    want_d = ls.separation.measure(model, (x, y), batch_size=16)
    want_w = ls.Weights(first_layers=2).measure(model, 0).rows
    for rank in (0, 1):
        folder = tmp_path / f"rank{rank}"
        results = json.loads((folder / "results.json").read_text())
        for kind in ("ddp", "compiled_ddp"):
            assert results[f"{kind}_layers"] == list(want) == ["2", "4"]
            assert_same_counts({n: PatternCounts.load(folder / kind / f"{n}.npz") for n in want},
                               want)
        assert list(results["separation"]) == list(want_d)
        np.testing.assert_allclose(list(results["separation"].values()), list(want_d.values()),
                                   rtol=1e-10)
        assert [tuple(row) for row in results["weights"]] == want_w
    for name, counts in want.items():  # the default merge: each rank's partition, together whole
        parts = [PatternCounts.load(tmp_path / f"rank{rank}" / "ddp-partitioned" / f"{name}.npz")
                 for rank in (0, 1)]
        assert [part.partition for part in parts] == [(0, 2), (1, 2)]
        assert_same_counts({name: PatternCounts.merge_all(parts)}, {name: counts})
