"""Experiment presets: expansion, overrides, execution, skip/resume, and the slow end-to-end run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import learnscope as ls
from learnscope.cli import app
from learnscope.experiments.presets import execute, expand


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
    with pytest.raises(ValueError, match="available"):
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
        assert sorted(frame["step"].unique()) == list(range(101))
        counts = frame.groupby(["layer", "measure"]).size()
        assert (counts == 101).all() and frame["measure"].nunique() == len(
            ls.ActivationPatterns(None).available_measures())
