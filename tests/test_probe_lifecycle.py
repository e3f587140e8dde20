"""The probe lifecycle: config() derived from the parameters (run fingerprints hash it, so it must
stay what it was), state_dict / load_state_dict / reset / state_from_results of every built-in
probe, and defaults that let a probe written from docs/architecture.md work everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import learnscope as ls
from learnscope.engine import PassState, Sum, Taps

ALL_MEASURES = [
    "evaluations", "distinct", "distinct_frac", "max_count", "max_frac", "entropy",
    "rel_entropy", "added_since_init", "removed_since_init", "jaccard_since_init",
    "jaccard_t_since_init", "weighted_jaccard_since_init", "added_since_last",
    "removed_since_last", "jaccard_since_last", "jaccard_t_since_last",
    "weighted_jaccard_since_last",
]


def _data():
    return torch.randn(10, 4), torch.randint(0, 2, (10,))


def test_config_of_every_built_in_probe_is_what_it_was_before_the_lifecycle():
    # the dicts below are copied from the configs the hand-written config() methods returned
    # before config() was derived from __init__'s parameters (run fingerprints hash them)
    x, y = _data()
    expected = [
        (ls.ActivationPatterns(x),
         {"type": "ActivationPatterns", "name": "patterns", "labels": False, "batch_size": 256,
          "batchnorm": "train", "mode": "exact", "table_size": None, "layers": None,
          "measures": ALL_MEASURES, "compare_to": ["init", "last"], "jaccard_threshold": 10,
          "unit_dim": "auto"}),
        (ls.ActivationPatterns((x, y), labels=True, mode="hashlist", table_size=64,
                               layers=["1"], measures=["entropy"], compare_to=["init"],
                               save_counts=True, name="p2"),
         {"type": "ActivationPatterns", "name": "p2", "labels": True, "batch_size": 256,
          "batchnorm": "train", "mode": "hashlist", "table_size": 64, "layers": ["1"],
          "measures": ["entropy"], "compare_to": ["init"], "jaccard_threshold": 10,
          "unit_dim": "auto"}),
        (ls.Separation((x, y)),
         {"type": "Separation", "name": "separation", "layers": None, "batchnorm": "train",
          "balanced": True, "batch_size": 256, "max_dim": None, "method": "auto",
          "fit_first": 1}),
        (ls.Separation((x, y), layers=["0"], max_dim=3, method="moments", fit_first=0,
                       balanced=False, name="s"),
         {"type": "Separation", "name": "s", "layers": ["0"], "batchnorm": "train",
          "balanced": False, "batch_size": 256, "max_dim": 3, "method": "moments",
          "fit_first": 0}),
        (ls.Weights(),
         {"type": "Weights", "name": "weights", "tracks": "all parameters", "layer": None,
          "first_layers": None, "average_hidden": False, "dtype": "float32", "scored_on": []}),
        (ls.Weights(layer="fc1", train=(x, y), dtype="float16", batch_size=8, name="w"),
         {"type": "Weights", "name": "w", "tracks": "layer fc1", "layer": "fc1",
          "first_layers": None, "average_hidden": False, "dtype": "float16",
          "scored_on": ["train"]}),
        (ls.Weights(first_layers=2, test=(x, y)),
         {"type": "Weights", "name": "weights", "tracks": "first 2 weight layers",
          "layer": None, "first_layers": 2, "average_hidden": False, "dtype": "float32",
          "scored_on": ["test"]}),
        (ls.Weights(average_hidden=True),
         {"type": "Weights", "name": "weights", "tracks": "hidden weight layers averaged",
          "layer": None, "first_layers": None, "average_hidden": True, "dtype": "float32",
          "scored_on": []}),
    ]
    for probe, config in expected:
        assert probe.config() == config


def test_layers_given_as_modules_are_recorded_by_their_text():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    probe = ls.ActivationPatterns(torch.randn(5, 4), layers=[model[1]])
    assert probe.config()["layers"] == ["ReLU()"]


def test_get_params_reads_back_every_init_parameter():
    x, y = _data()
    probe = ls.Separation((x, y), batch_size=7, name="sep")
    params = probe.get_params()
    assert list(params) == ["data", "layers", "batchnorm", "balanced", "batch_size",
                            "max_dim", "method", "fit_first", "name"]
    assert params["batch_size"] == 7 and params["data"] is probe.data


def test_a_parameter_not_stored_under_its_name_is_reported():
    class Careless(ls.Probe):
        def __init__(self, width: int = 3) -> None:
            self.size = width

    with pytest.raises(TypeError, match="does not store it as self.width"):
        Careless().config()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))


def test_patterns_state_round_trips_and_reset_forgets_references():
    x, y = _data()
    model = _mlp()
    probe = ls.ActivationPatterns(x, batch_size=5)
    probe.measure(model, 0)
    state = probe.state_dict()
    assert state["init_weights"] is not None and state["last_weights"] is not None
    assert state["init_counts"] is None and state["last_counts"] is None  # recounted
    other = ls.ActivationPatterns(x, batch_size=5)
    other.load_state_dict(state)
    later = _mlp()
    with torch.no_grad():
        later[0].weight.mul_(-1)
    assert probe.measure(later, 1).rows == other.measure(later, 1).rows
    other.reset()
    assert other.state_dict() == {"init_weights": None, "last_weights": None,
                                  "init_counts": None, "last_counts": None, "init_lost": False}


def test_weights_state_from_results_gives_the_distances_of_an_uninterrupted_run():
    model = _mlp()
    probe = ls.Weights()
    first = probe.measure(model, 0)
    with torch.no_grad():
        model[0].weight.add_(0.5)
    last = probe.measure(model, 1)
    with torch.no_grad():
        model[2].bias.add_(1.0)
    resumed = ls.Weights()
    resumed.load_state_dict(resumed.state_from_results(first, last))
    assert resumed.measure(model, 2).rows == probe.measure(model, 2).rows


def test_base_probe_defaults_carry_nothing():
    class Counter(ls.Probe):
        def __init__(self, data, *, name: str = "counter") -> None:
            self.data = data
            self.name = name

        def taps(self, model):
            return Taps(self.data, batch_size=4)

        def new_state(self):
            return PassState(samples=Sum())

        def update(self, state, batch):
            state["samples"].add(batch.inputs.shape[0])

        def finish(self, state, step):
            return ls.ProbeResult(rows=[("model", -1, "samples", state["samples"].value)])

    probe = Counter(torch.randn(10, 4))
    assert probe.config() == {"type": "Counter", "name": "counter"}
    assert probe.measure(_mlp(), 0).rows == [("model", -1, "samples", 10.0)]
    assert probe.state_dict() == {} and probe.state_from_results(None, None) is None
    assert probe.final_reference(_mlp()) is None
    probe.reset()
    probe.load_state_dict({})


def test_a_probe_without_taps_or_measure_says_what_to_define():
    class Empty(ls.Probe):
        pass

    with pytest.raises(TypeError, match="Adding a probe"):
        Empty().measure(_mlp(), 0)
    with pytest.raises(TypeError, match=r"defines taps\(\) but not finish\(\)"):
        Empty().finish(Empty().new_state(), 0)
    with pytest.raises(TypeError, match=r"saves no artifacts.*defines load_artifact"):
        Empty().load_artifact(Path("layer.npz"))


def test_sum_accumulator_merge_is_pure():
    a, b = Sum((2,)).add(np.array([1.0, 2.0])), Sum((2,)).add(torch.tensor([3.0, 4.0]))
    merged = a.merge(b)
    assert np.array_equal(merged.value, [4.0, 6.0])
    assert np.array_equal(a.value, [1.0, 2.0]) and np.array_equal(b.value, [3.0, 4.0])


def _train_with(store, *, resume=None, stop_at=None):
    from torch.utils.data import TensorDataset

    from learnscope.train import recipes
    from learnscope.train.trainer import train

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=generator)
    model = _mlp()
    probes = [ls.ActivationPatterns(x, batch_size=16), ls.Weights()]
    scope = ls.Scope(model, probes, ls.every(3), store, name="old", resume=resume)

    def on_step(step, total):
        if step == stop_at:
            raise KeyboardInterrupt

    try:
        train(model, TensorDataset(x, (x[:, 0] > 0).long()),
              recipes.get("multistep", epochs=2, batch_size=16), scope=scope, seed=4,
              resume=resume is not None, checkpoint_every=100, on_step=on_step)
    except KeyboardInterrupt:
        scope.interrupt()
        return scope
    scope.finish()
    return scope


def test_a_checkpoint_written_before_weights_kept_state_still_resumes(tmp_path):
    # checkpoints of earlier versions hold only the pattern probes' references: the Weights
    # probe then continues from the store's snapshots, as it did
    from learnscope.train.trainer import CHECKPOINT

    store = tmp_path / "runs.db"
    interrupted = _train_with(store, stop_at=7)  # last checkpoint: the measurement at step 6
    path = interrupted.run_folder() / CHECKPOINT
    checkpoint = torch.load(path, weights_only=False)
    assert set(checkpoint["probes"]) == {"patterns", "weights"}
    checkpoint["probes"] = {"patterns": checkpoint["probes"]["patterns"]}
    torch.save(checkpoint, path)
    resumed = _train_with(store, resume=interrupted.run_id)
    reference = _train_with(tmp_path / "reference.db")
    with ls.store.open(store) as got, ls.store.open(tmp_path / "reference.db") as want:
        a = got.metrics(run=resumed.run_id).query("probe != 'train'")
        b = want.metrics(run=reference.run_id).query("probe != 'train'")
    columns = ["step", "probe", "layer", "measure"]
    a, b = a.sort_values(columns).reset_index(), b.sort_values(columns).reset_index()
    assert a[columns].equals(b[columns])
    assert np.allclose(a["value"], b["value"], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_passes_and_reductions_are_logged_at_debug(caplog):
    from learnscope.engine import Shard
    from learnscope.engine.reduction import reduce_one

    with caplog.at_level("DEBUG", logger="learnscope.engine"):
        ls.patterns.count(_mlp(), torch.randn(12, 4), batch_size=5)
        reduce_one(Sum().add(2.0), Shard(0, 1))
    passes = [r.getMessage() for r in caplog.records if r.name == "learnscope.engine.passes"]
    assert len(passes) == 1 and "3 batches" in passes[0]
    collectives = [r.getMessage() for r in caplog.records
                   if r.name == "learnscope.engine.reduction"]
    assert any("all_gather_objects" in m for m in collectives)
    assert any("sum reduction of 'state'" in m for m in collectives)


def test_an_accumulator_reduced_in_a_way_it_does_not_implement_says_what_to_define():
    from learnscope.engine.accumulators import Accumulator, Reduction

    class Half(Accumulator):
        reduction = Reduction.SUM

        def kind(self):
            return "half"

        def merge(self, other):
            return self

    with pytest.raises(TypeError, match="Half is reduced by sum but does not define to_sum "
                                        "and from_sum"):
        Half().to_sum([None])
    with pytest.raises(TypeError, match="does not define to_rows and from_tables"):
        Half.from_tables("half", [])
