"""Experiment presets: expansion, overrides, execution, skip/resume, and the slow end-to-end run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import learnscope as ls
from learnscope.cli import app
from learnscope.experiments.presets import SMALL_EARLY_STEPS, execute, expand
from learnscope.train import parse, recipes


def test_presets_expand_to_the_papers_runs():
    early = expand("early", "paper")
    assert [s.model for s in early] == ["resnet20", "convnet20", "toynet20"]
    assert all(s.max_steps == 3000 and s.schedule == "every 1" and s.dataset == "cifar10"
               for s in early)
    curve = expand("entropycurve", "paper")
    assert len(curve) == 3 * 5 * 25
    assert {s.model for s in curve} == {f"{f}{6 * n + 2}" for f in ("resnet", "convnet", "toynet")
                                        for n in range(1, 6)}
    assert curve[0].schedule == "at 0 8 40; epochs 100; end"
    methods = expand("methods", "paper")
    assert len(methods) == 12 and all(s.since_final for s in methods)
    assert {s.recipe for s in methods} == {"multistep", "cyclic", "onecycle", "fixup", "pyramid"}
    assert {s.model_options.get("activation") for s in methods} >= {"relu", "prelu", "lrelu"}
    assert len({s.name for s in curve}) == len(curve)  # names identify runs

    small = expand("entropycurve", "small", seeds=[3], models=["toynet"], blocks=[1, 2])
    assert [s.name for s in small] == ["entropycurve-small-toynet8-s3",
                                       "entropycurve-small-toynet14-s3"]
    assert small[0].dataset == "digits" and small[0].model_options["in_channels"] == 1
    shortened = expand("methods", "small", epochs=2)[0]
    assert shortened.recipe_options["epochs"] == 2
    assert all(m <= 2 for m in shortened.recipe_options["milestones"])
    with pytest.raises(ValueError, match="unknown preset 'nope': known ones are early, "):
        expand("nope")
    with pytest.raises(ValueError, match="unknown override"):
        expand("early", "small", colour="red")


def test_execute_measures_every_layer_every_step_then_skips(tmp_path):
    store = tmp_path / "s.db"
    spec = expand("early", "small", models=["resnet8"], steps=3)[0]
    run_id, status = execute(spec, store)
    assert status == "finished"
    frame = ls.store.open(store).metrics(run=run_id, probe="patterns")
    probe = ls.ActivationPatterns(frame)  # just for the list of measure names
    layers = sorted(frame["layer"].unique())
    assert len(layers) == 7  # resnet8: 2 per block x 3 blocks + the final activation
    per_step = frame.groupby("step").apply(lambda g: set(zip(g["layer"], g["measure"],
                                                             strict=True)))
    expected = {(layer, m) for layer in layers for m in probe.available_measures()}
    assert sorted(per_step.index) == [0, 1, 2, 3]
    assert all(pairs == expected for pairs in per_step)
    assert execute(spec, store) == (run_id, "skipped")


def test_methods_run_gets_since_final_measures(tmp_path):
    store = tmp_path / "s.db"
    spec = [s for s in expand("methods", "small", epochs=1, models=["convnet8"])
            if s.name.endswith("convnet8-relu-s0")][0]
    run_id, status = execute(spec, store)
    assert status == "finished"
    final = ls.store.open(store).metrics(run=run_id, measure="weighted_jaccard_since_final")
    last = final["step"].max()
    assert (final[final["step"] == last]["value"] == 1.0).all()
    assert final["step"].nunique() >= 2


def test_cli_dry_run_lists_runs_without_running(tmp_path):
    result = CliRunner().invoke(app, ["run", "entropycurve", "--dry-run", "--seeds", "0",
                                      "--models", "resnet", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "5 runs" in result.output and "entropycurve-small-resnet32-s0" in result.output
    assert not (tmp_path / "s.db").exists()


@pytest.mark.slow
def test_early_small_preset_end_to_end(tmp_path):
    store = tmp_path / "s.db"
    result = CliRunner().invoke(app, ["run", "early", "--scale", "small", "--store", str(store)])
    assert result.exit_code == 0, result.output
    s = ls.store.open(store)
    runs = s.runs()
    assert len(runs) == 3 and (runs["status"] == "finished").all()
    for run_id in runs["id"]:
        frame = s.metrics(run=run_id, probe="patterns")
        assert frame["layer"].nunique() == 19
        assert sorted(frame["step"].unique()) == list(range(SMALL_EARLY_STEPS + 1))
        counts = frame.groupby(["layer", "measure"]).size()
        assert (counts == SMALL_EARLY_STEPS + 1).all() and frame["measure"].nunique() == len(
            ls.ActivationPatterns(None).available_measures())


# --------------------------------------------------------------------------- small-scale settings
# The small presets must measure something: early points early in relative terms, enough seeds
# for a band, a one-cycle warm-up of at least an epoch, nets that are not saturated.

def _timeline(spec) -> tuple[int, int, object]:
    """(updates per epoch, total updates, recipe) of a spec, from its data and recipe."""
    splits = ls.data.load(spec.dataset, seed=spec.seed, **spec.data_options)
    recipe = recipes.get(spec.recipe, **spec.recipe_options)
    per_epoch = math.ceil(len(splits.train) / recipe.batch_size)
    return per_epoch, spec.max_steps or recipe.epochs * per_epoch, recipe


def test_small_entropycurve_measures_early_points_within_a_tenth_of_an_epoch():
    specs = expand("entropycurve", "small")
    assert len({s.seed for s in specs}) >= 5
    assert len(specs) == 3 * 5 * len({s.seed for s in specs})
    per_epoch, total, recipe = _timeline(specs[0])
    assert per_epoch >= 50  # 1,437 digits in batches of 16
    steps = parse(specs[0].schedule).bind(per_epoch, total).steps_until(total + 1)
    within_first_epoch = [s for s in steps if 0 < s < per_epoch]
    # the paper's "after 8 and 40 updates" are 0.02 and 0.1 of a 390-update CIFAR-10 epoch
    assert len(within_first_epoch) == 2
    assert all(s <= 0.1 * per_epoch for s in within_first_epoch)
    assert within_first_epoch[0] < within_first_epoch[1]
    assert steps[0] == 0 and steps[-1] == total
    assert recipe.epoch_milestones()[0] * per_epoch in steps  # right before the first drop
    assert len({s.schedule for s in specs}) == 1


def test_small_onecycle_warms_up_for_at_least_one_epoch():
    onecycle = [s for s in expand("methods", "small") if s.recipe == "onecycle"]
    assert len(onecycle) == 2
    for spec in onecycle:
        per_epoch, total, recipe = _timeline(spec)
        model = ls.models.create(spec.model, num_classes=10, **spec.model_options)
        optimizer, scheduler = recipe.build(model, per_epoch)
        lrs = []
        for _ in range(total):  # the lr curve itself, read off the built scheduler
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert int(np.argmax(lrs)) >= per_epoch
        assert math.isclose(max(lrs), recipe.lr, rel_tol=1e-6)


def test_small_nets_are_a_quarter_of_the_papers_width():
    for preset in ("early", "entropycurve", "methods"):
        assert {s.model_options["width_multiplier"] for s in expand(preset, "small")} == {0.25}
        assert all("width_multiplier" not in s.model_options for s in expand(preset, "paper"))


def test_small_resnet20_is_not_saturated_at_initialisation():
    # at full width nearly every evaluation of the deeper stages has its own pattern
    spec = expand("early", "small", models=["resnet20"])[0]
    splits = ls.data.load(spec.dataset, seed=0, **spec.data_options)
    torch.manual_seed(0)
    model = ls.models.create(spec.model, num_classes=10, **spec.model_options)
    counts = ls.patterns.count(model, splits.measure, batch_size=spec.probe_options["batch_size"])
    saturated = [name for name, c in counts.items() if c.distinct / c.evaluations > 0.95]
    assert len(counts) == 19 and len(saturated) < 0.2 * len(counts), saturated
