"""Checkpoints keep the pattern references by their weights, not their counts.

An ActivationPatterns probe compares every measurement with its first ("init") and previous
("last") one. A checkpoint keeps those references as the weights of the model they were measured
on, whatever the data size; a resumed run counts them again at its next measurement. These tests
check that a run interrupted between measurements and resumed reports the rows of an
uninterrupted one, that its checkpoint holds no pattern counts, and that the checkpoint's size
does not grow with the number of measurement inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_train import NoisyData, make_model
from test_train_checkpoint import load, saved_size
from torch import nn

import learnscope as ls
from learnscope.patterns.counts import PatternCounts
from learnscope.train import recipes
from learnscope.train.trainer import CHECKPOINT, train

STEPS = 12


class Interrupted(Exception):
    """Stands for a kill: raised from the progress callback, the run stays "running"."""


def train_run(store, data, *, name="run", resume=None, stop_at=None, save_weights=False):
    """The test_train model trained STEPS updates, measured at 0, 3, 6, ..., checkpointed every
    4 updates and at every measurement; `stop_at` interrupts it right after that update."""
    model = make_model()
    probe = ls.ActivationPatterns(data, labels=True, batch_size=32)
    scope = ls.Scope(model, [probe], ls.every(3), store, name=name, total_steps=STEPS,
                     steps_per_epoch=6, resume=resume)

    def on_step(step, total):
        if step == stop_at:
            raise Interrupted(step)

    recipe = recipes.get("multistep", epochs=2, batch_size=16)
    try:
        result = train(model, NoisyData(), recipe, scope=scope, seed=3, max_steps=STEPS,
                       resume=resume is not None, checkpoint_every=4, on_step=on_step,
                       save_weights=save_weights)
    except Interrupted:
        scope.interrupt()
        return model, scope, probe
    scope.finish(result.status)
    return model, scope, probe


def rows(store, run_id):
    with ls.store.open(store, read_only=True) as reader:
        frame = reader.metrics(run_id, probe="patterns")
    return frame.set_index(["step", "layer", "measure"])["value"].sort_index()


def labelled_data(samples, seed=5):
    data = NoisyData(samples, seed=seed)
    return data.x, data.y


def objects_in(value):
    """Every object reachable in a checkpoint through dicts, lists and tuples."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from objects_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from objects_in(item)


def test_a_run_resumed_from_a_checkpoint_without_counts_reports_the_uninterrupted_rows(
        tmp_path, one_thread):
    data = labelled_data(64)
    store = tmp_path / "s.db"
    _, whole, _ = train_run(store, data, name="whole")
    # interrupted after update 8: its checkpoint (every 4 updates) is at 8, the last
    # measurement at 6, so the resumed run recounts two references unlike the current weights
    _, cut, _ = train_run(store, data, name="cut", stop_at=8)
    checkpoint = load(cut.run_folder() / CHECKPOINT)
    assert checkpoint["step"] == 8
    state = checkpoint["probes"]["patterns"]
    assert not any(isinstance(o, PatternCounts) for o in objects_in(checkpoint))
    assert state["init_counts"] is None and state["last_counts"] is None
    names = set(make_model().state_dict())
    assert set(state["init_weights"]) == set(state["last_weights"]) == names
    assert not torch.equal(state["last_weights"]["0.weight"], checkpoint["model"]["0.weight"])
    assert not torch.equal(state["init_weights"]["0.weight"], state["last_weights"]["0.weight"])

    _, resumed, probe = train_run(store, data, resume=cut.run_id)
    assert probe.init_counts is not None  # counted again from the weights
    got, want = rows(store, resumed.run_id), rows(store, whole.run_id)
    assert got.index.equals(want.index)
    measures = set(got.index.get_level_values("measure"))
    assert {"jaccard_since_init", "weighted_jaccard_since_last", "mutual_information"} <= measures
    after = got.loc[9:]
    assert not after.isna().any()  # nothing lost: every comparison after the resume is known
    # the references changed between measurements: comparisons are not trivially 1
    assert (after.xs("weighted_jaccard_since_init", level="measure") < 1).any()
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())


def test_the_checkpoint_does_not_grow_with_the_measurement_inputs(tmp_path, one_thread):
    sizes, reference_sizes = {}, {}
    for samples in (64, 1024):
        store = tmp_path / f"{samples}.db"
        _, scope, probe = train_run(store, labelled_data(samples), stop_at=7)
        sizes[samples] = (scope.run_folder() / CHECKPOINT).stat().st_size
        reference_sizes[samples] = saved_size({"init": probe.init_counts,
                                              "last": probe.last_counts})
    # the counts the checkpoint used to hold grow with the inputs (16x here)...
    assert reference_sizes[1024] - reference_sizes[64] > 10_000
    # ...the checkpoint does not: the same bytes up to a few pickled numbers
    assert abs(sizes[1024] - sizes[64]) < 200


def test_a_scope_resumed_from_the_store_recounts_kept_weights_for_exact_comparisons(
        tmp_path, one_thread):
    """No checkpoint, no saved counts: the weights kept at the first and last measured steps
    give since-init and since-last exactly (NaN without them, see test_scope_artifacts)."""
    x = torch.randn(300, 5)
    store = tmp_path / "s.db"

    def network():
        torch.manual_seed(2)
        return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU())

    def set_weights(model, step):
        with torch.no_grad():
            for i, parameter in enumerate(model.parameters()):
                parameter.add_(0.05 * math.sin(step + i))

    def steps(scope, model, first, last, keep):
        for step in range(first, last):
            set_weights(model, step)
            scope.step(step)
            if keep:  # what the trainer's save_weights=True keeps
                kept = scope.weights_file(step)
                kept.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), kept)

    model = network()
    whole = ls.Scope(model, [ls.ActivationPatterns(x)], ls.every(1), store, name="whole")
    steps(whole, model, 0, 6, keep=False)
    whole.finish()

    for keep in (True, False):
        model = network()
        cut = ls.Scope(model, [ls.ActivationPatterns(x)], ls.every(1), store, name="cut")
        steps(cut, model, 0, 3, keep=keep)
        cut.interrupt()
        model = network()
        for step in range(3):
            set_weights(model, step)  # the training state at the interruption
        resumed = ls.Scope(model, [ls.ActivationPatterns(x)], ls.every(1), store,
                           resume=cut.run_id)
        steps(resumed, model, 3, 6, keep=keep)
        resumed.finish()
        got, want = rows(store, cut.run_id), rows(store, whole.run_id)
        if keep:
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
        else:
            assert got.xs(4, level="step").filter(like="since_init").isna().all()


def test_references_given_as_modules_are_recounted_by_name_on_a_copy():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    probe = ls.ActivationPatterns(x, layers=[model[3]], batch_size=50)
    probe.measure(model, 0)
    with torch.no_grad():
        model[2].weight.mul_(-1)
    probe.measure(model, 1)
    state = probe.state_dict()
    with torch.no_grad():
        model[0].bias.add_(0.3)
    resumed = ls.ActivationPatterns(x, layers=[model[3]], batch_size=50)
    resumed.load_state_dict(state)
    assert resumed.measure(model, 2).rows == probe.measure(model, 2).rows
    assert {row[0] for row in resumed.measure(model, 3).rows} == {"3"}


def test_only_compared_references_are_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    probe = ls.ActivationPatterns(torch.randn(50, 4), compare_to=["last"])
    probe.measure(model, 0)
    state = probe.state_dict()
    assert state["init_weights"] is None and probe.init_counts is None
    assert state["last_weights"] is not None


def test_a_checkpoint_of_pattern_counts_written_before_still_resumes():
    torch.manual_seed(0)
    x = torch.randn(100, 4)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    probe = ls.ActivationPatterns(x)
    probe.measure(model, 0)
    old_state = {"init": probe.init_counts, "last": probe.last_counts, "init_lost": False}
    with torch.no_grad():
        model[0].weight.mul_(-1)
    resumed = ls.ActivationPatterns(x)
    resumed.load_state_dict(old_state)
    assert resumed.measure(model, 1).rows == probe.measure(model, 1).rows


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile needs torch >= 2")
def test_wrapped_models_keep_the_inner_modules_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    probe = ls.ActivationPatterns(torch.randn(50, 4))
    probe.measure(nn.DataParallel(model), 0)
    assert set(probe.state_dict()["init_weights"]) == {"0.weight", "0.bias"}
