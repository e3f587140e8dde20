"""The equi-separation presets (`learnscope run equisep`, `equisep-depth`): grids against the
reference's run_experiments.sh, the recipe's lr curve against a closed form, the feed-forward
nets, the 10x10 / 100-per-class data, and a tiny end-to-end run through the CLI."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import learnscope as ls
from learnscope import models
from learnscope.cli import app
from learnscope.data import DatasetNotFoundError
from learnscope.experiments.presets import EQUISEP_EPOCHS, _equisep_data, execute, expand
from learnscope.train import recipes

# the reference's run_experiments.sh, written out: (optimizer, lr) per depth
REFERENCE_PAIRS = {
    2: {("sgd", 0.3), ("momentum", 0.3), ("adam", 3e-3)},
    6: {("sgd", 0.03), ("momentum", 0.01), ("adam", 1e-3)},
    18: {("sgd", 0.01), ("momentum", 0.001), ("adam", 3e-4)},
}
# every (optimizer, lr) of that script, at every depth (--all-lrs)
SEED_COMBOS = {
    ("sgd", 0.3), ("sgd", 0.03), ("sgd", 0.01),
    ("momentum", 0.3), ("momentum", 0.01), ("momentum", 0.001),
    ("adam", 3e-3), ("adam", 1e-3), ("adam", 3e-4),
}
MOMENTUM = {"sgd": 0.0, "momentum": 0.9}


def _combo(spec) -> tuple[str, float]:
    options = spec.recipe_options
    if options["optimizer"] == "adam":
        return "adam", options["lr"]
    return ("momentum" if options["momentum"] == 0.9 else "sgd"), options["lr"]


# --------------------------------------------------------------------------- grids

@pytest.mark.parametrize("scale", ["small", "paper"])
def test_equisep_grid_is_the_references_lr_per_optimizer_and_depth(scale):
    specs = expand("equisep", scale, seeds=[0, 1])
    assert len(specs) == 2 * 9
    assert len({s.name for s in specs}) == len(specs)
    for seed in (0, 1):
        mine = [s for s in specs if s.seed == seed]
        grid = {(s.model_options["depth"] - 1, *_combo(s)) for s in mine}
        assert grid == {(d, *c) for d, pairs in REFERENCE_PAIRS.items() for c in pairs}
    # --all-lrs: every setting at every depth; the reference's runs keep their names (reused)
    every = expand("equisep", scale, seeds=[0, 1], all_lrs=True)
    assert len(every) == 2 * 27
    assert {(s.model_options["depth"] - 1, *_combo(s)) for s in every if s.seed == 0} == {
        (d, *c) for d in (2, 6, 18) for c in SEED_COMBOS}
    assert {s.name for s in specs} <= {s.name for s in every}
    # a depth without a reference lr gets every setting
    assert {_combo(s) for s in expand("equisep", scale, depths=[4])} == SEED_COMBOS
    with pytest.raises(ValueError, match="all_lrs must be True or False"):
        expand("equisep", scale, all_lrs="yes")
    for spec in every:
        assert spec.model == "fnn" and spec.model_options["width"] == 100
        assert spec.recipe == "equisep" and spec.probe == "separation"
        assert spec.probe_options["batchnorm"] == "train"
        assert spec.data_options["per_class"] == 100
        optimizer, _ = _combo(spec)
        if optimizer != "adam":
            assert spec.recipe_options["momentum"] == MOMENTUM[optimizer]
        recipe = recipes.get(spec.recipe, **spec.recipe_options)
        assert recipe.weight_decay == 5e-4 and recipe.batch_size == 128
        assert recipe.epochs == EQUISEP_EPOCHS[scale]
    if scale == "paper":
        assert {s.dataset for s in specs} == {"mnist"}
        assert all(s.data_options["resize"] == 10 for s in specs)
    else:
        assert {s.dataset for s in specs} == {"digits"}


def test_cli_all_lrs_runs_every_lr_and_only_equisep_takes_it(tmp_path):
    store = str(tmp_path / "s.db")
    base = ["run", "equisep", "--dry-run", "--depths", "2", "--optimizers", "adam",
            "--store", store]
    paired = CliRunner().invoke(app, base)
    every = CliRunner().invoke(app, [*base, "--all-lrs"])
    assert paired.exit_code == 0 and every.exit_code == 0, paired.output + every.output
    planned = [line.split(":")[0] for line in every.output.splitlines()
               if line.startswith("equisep-small-") and "started fresh" in line]
    assert planned == [f"equisep-small-digits-fnn-L2-adam-lr{lr}-s0"
                       for lr in ("0.003", "0.001", "0.0003")]
    assert [line.split(":")[0] for line in paired.output.splitlines()
            if line.startswith("equisep-small-") and "started fresh" in line] == planned[:1]
    refused = CliRunner().invoke(app, ["run", "early", "--dry-run", "--all-lrs"])
    assert refused.exit_code == 2
    assert "only equisep takes --all-lrs, early does not" in refused.output
    assert "Traceback" not in refused.output


def test_equisep_depth_sweep_is_depth_one_to_eight_with_adam():
    specs = expand("equisep-depth", "paper")
    assert len(specs) == 8
    assert [s.model_options["depth"] - 1 for s in specs] == list(range(1, 9))
    assert {(s.recipe_options["optimizer"], s.recipe_options["lr"]) for s in specs} == {
        ("adam", 1e-3)}
    assert len(expand("equisep-depth", "small", lrs=[3e-4, 1e-3], seeds=[0, 1, 2])) == 48


def test_equisep_overrides():
    specs = expand("equisep", "small", depths=[2], optimizers=["adam"], epochs=12, steps=5,
                   dataset="cfm", models=["fnn_nobn", "small_cnn"], schedule="end")
    # the fnn at depth 2 with the reference's adam lr there; the CNN (no depth) at every adam lr
    assert len(specs) == 1 + 3
    assert [s.recipe_options["lr"] for s in specs if s.model == "fnn_nobn"] == [3e-3]
    assert {s.dataset for s in specs} == {"fashion-mnist"}
    assert all(s.recipe_options["epochs"] == 12 and s.max_steps == 5 for s in specs)
    assert all(s.schedule == "end" for s in specs)
    imbalanced = expand("equisep", "small", imbalance=10.0)[0]
    assert imbalanced.data_options["imbalance"] == 10.0
    assert imbalanced.probe_options["balanced"] is False
    with pytest.raises(ValueError, match="unknown override"):
        expand("equisep", "small", nope=1)
    # the other presets still build the activation-pattern probe
    assert {s.probe for s in expand("early", "small")} == {"patterns"}


# --------------------------------------------------------------------------- recipe

@pytest.mark.parametrize("epochs", [600, 10, 30])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_equisep_lr_drops_tenfold_at_one_and_two_thirds(epochs, optimizer):
    per_epoch, base = 3, 0.3
    overrides = recipes.EQUISEP_OPTIMIZERS[optimizer]
    recipe = recipes.get("equisep", lr=base, epochs=epochs, **overrides)
    opt, sched = recipe.build(nn.Linear(2, 2), steps_per_epoch=per_epoch)
    seen = []
    for _ in range(epochs * per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # the reference: at epoch int(E/3) lr = base/10, at epoch int(E*2/3) base/100
    first, second = int(epochs / 3), int(epochs * 2 / 3)
    expected = [base if e < first else base / 10 if e < second else base / 100
                for e in (s // per_epoch for s in range(epochs * per_epoch))]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    group = opt.param_groups[0]
    assert group["weight_decay"] == 5e-4
    if optimizer != "adam":
        assert isinstance(opt, torch.optim.SGD) and group["momentum"] == MOMENTUM[optimizer]
    else:
        assert isinstance(opt, torch.optim.Adam)


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("depth", [1, 3, 19])
def test_fnn_variants(depth):
    """depth = hidden blocks; Linear layers = depth + 1 (the classifier)."""
    def count(model, kind):
        return sum(isinstance(m, kind) for m in model.modules())

    fnn = models.create("fnn", depth=depth, in_features=100)
    assert count(fnn, nn.Linear) == depth + 1
    assert count(fnn, nn.BatchNorm1d) == depth and count(fnn, nn.ReLU) == depth
    assert all(m.out_features == 100 for m in fnn.features if isinstance(m, nn.Linear))
    nobn = models.create("fnn_nobn", depth=depth, width=20, in_features=64)
    assert count(nobn, nn.BatchNorm1d) == 0 and count(nobn, nn.ReLU) == depth
    linear = models.create("fnn_linear", depth=depth, in_features=64)
    assert count(linear, nn.BatchNorm1d) == depth
    activations = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.Hardtanh)
    assert count(linear, activations) == 0
    for model in (fnn, nobn, linear):
        x = torch.randn(5, 1, 8, 8) if model is not fnn else torch.randn(5, 1, 10, 10)
        assert model(x).shape == (5, 10)
    # one separation feature point per hidden block
    assert len(ls.separation.feature_points(fnn)) == depth
    assert len(ls.separation.feature_points(linear)) == depth
    with pytest.raises(ValueError, match="depth"):
        models.create("fnn", depth=-1)


# --------------------------------------------------------------------------- data

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(folder, n_train=1200, n_test=50):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            _idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            _idx(rng.permutation(np.arange(n) % 10)))


def test_cm_is_ten_by_ten_with_100_per_class(tmp_path):
    _fake_mnist(tmp_path / "MNIST" / "raw")
    dataset, options, size = _equisep_data("cm", 100, None)
    assert (dataset, size) == ("mnist", 10)
    splits = ls.data.load(dataset, root=tmp_path, seed=0, **options)
    x, y = splits.measure.tensors
    assert x.shape == (1000, 1, 10, 10) and splits.val is None
    assert np.bincount(y.numpy()).tolist() == [100] * 10


def test_digits_is_eight_by_eight_with_100_per_class():
    dataset, options, size = _equisep_data("digits", 100, None)
    splits = ls.data.load(dataset, seed=0, **options)
    x, y = splits.measure.tensors
    assert x.shape == (1000, 1, 8, 8) and size == 8
    assert np.bincount(y.numpy()).tolist() == [100] * 10


def test_missing_mnist_files_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNSCOPE_DATA", str(tmp_path / "nothing"))
    spec = expand("equisep", "paper", depths=[2], optimizers=["adam"])[0]
    with pytest.raises(DatasetNotFoundError, match="nothing"):
        execute(spec, tmp_path / "s.db")


# --------------------------------------------------------------------------- end to end

def test_cli_run_equisep_end_to_end_and_skip(tmp_path):
    store = tmp_path / "s.db"
    args = ["run", "equisep", "--store", str(store), "--steps", "6", "--depths", "2",
            "--optimizers", "adam", "--schedule", "every 3; end", "--seeds", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        # the reference's adam lr at depth 2 (3e-3)
        assert len(runs) == 1 and set(runs["status"]) == {"finished"}
        assert runs["name"].tolist() == ["equisep-small-digits-fnn-L2-adam-lr0.003-s0"]
        metrics = s.metrics(run=runs["id"].iloc[0])
    fuzz = metrics[metrics["measure"] == "fuzziness"]
    assert sorted(set(fuzz["step"])) == [0, 3, 6]
    last = fuzz[fuzz["step"] == 6].sort_values("layer_index")
    assert last["layer_index"].tolist() == [0, 1, 2, 3]  # input + the 3 hidden blocks
    assert last["layer"].iloc[0] == "input"
    assert np.all(np.isfinite(last["value"])) and np.all(last["value"] > 0)
    law = metrics[(metrics["layer"] == "law") & (metrics["step"] == 6)]
    assert {"law_slope", "law_rho", "law_pearson_r", "law_r2"} <= set(law["measure"])
    rho = law[law["measure"] == "law_rho"]["value"].iloc[0]
    slope = law[law["measure"] == "law_slope"]["value"].iloc[0]
    assert math.isclose(rho, math.exp(slope), rel_tol=1e-9)

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") == 1
    with ls.store.open(store, read_only=True) as s:
        assert len(s.runs()) == 1


def test_cli_dry_run_lists_the_grid(tmp_path):
    result = CliRunner().invoke(app, ["run", "equisep-depth", "--dry-run", "--store",
                                      str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "8 runs" in result.output and not (tmp_path / "s.db").exists()


def test_cli_imbalance_gives_a_long_tailed_set_and_the_imbalanced_fuzziness():
    result = CliRunner().invoke(app, ["run", "equisep", "--dry-run", "--depths", "2",
                                      "--optimizers", "adam", "--imbalance", "10",
                                      "--per-class", "50"])
    assert result.exit_code == 0, result.output
    specs = expand("equisep", "small", depths=[2], optimizers=["adam"], imbalance=10.0,
                   per_class=50)
    assert all(s.data_options["imbalance"] == 10.0 and s.data_options["per_class"] == 50
               and s.probe_options["balanced"] is False for s in specs)
    splits = ls.data.load(specs[0].dataset, seed=0, **specs[0].data_options)
    counts = np.bincount(np.asarray([int(y) for _, y in splits.train]), minlength=10)
    # n_c = round(50 * 10 ** (-c / 9)): 50 for class 0 down to 5 for class 9
    assert counts.tolist() == [max(1, round(50 * 10 ** (-c / 9))) for c in range(10)]
    other = CliRunner().invoke(app, ["run", "early", "--dry-run", "--imbalance", "10"])
    assert other.exit_code == 2 and "only equisep and equisep-depth take --imbalance, early " \
        "does not" in other.output


# --------------------------------------------------------------------------- the reference's fit

def _last_fuzziness(store, run_id) -> tuple[np.ndarray, dict]:
    with ls.store.open(store, read_only=True) as s:
        metrics = s.metrics(run=run_id, probe="separation")
    last = metrics[metrics["step"] == metrics["step"].max()]
    d = last[last["measure"] == "fuzziness"].sort_values("layer_index")["value"].to_numpy()
    law = dict(zip(last[last["layer"] == "law"]["measure"],
                   last[last["layer"] == "law"]["value"], strict=True))
    return d, law


def test_fit_from_input_fits_the_input_and_every_layer(tmp_path):
    store = tmp_path / "s.db"
    options = dict(depths=[2], optimizers=["adam"], steps=4, schedule="end", seeds=[0])
    plain = expand("equisep", "small", **options)
    reference = expand("equisep", "small", fit_from_input=True, **options)
    assert all(s.name == p.name + "-fitinput" for s, p in zip(reference, plain, strict=True))
    assert all(s.probe_options["fit_first"] == 0 for s in reference)
    assert all("fit_first" not in s.probe_options for s in plain)
    with pytest.raises(ValueError, match="fit_from_input must be True or False"):
        expand("equisep", "small", fit_from_input="yes")

    run_id, status = execute(reference[0], store)
    assert status == "finished"
    d, law = _last_fuzziness(store, run_id)
    layers = np.arange(d.size)  # input = 0, then the three hidden blocks
    assert d.size == 4 and law["law_first"] == 0 and law["law_last"] == 3
    # independent reference: least squares through (l, ln D_l) over l = 0..L
    slope, _ = np.polyfit(layers, np.log(d), 1)
    r = np.corrcoef(layers, np.log(d))[0, 1]
    assert law["law_slope"] == pytest.approx(slope, rel=1e-9)
    assert law["law_pearson_r"] == pytest.approx(r, rel=1e-9)
    direct = ls.separation.fit_law(d, first=0)
    assert law["law_rho"] == pytest.approx(direct.rho, rel=1e-12)


def test_equisep_figure_refits_from_the_input(tmp_path):
    from learnscope.viz.separation import equisep

    store = tmp_path / "s.db"
    spec = expand("equisep", "small", depths=[2], optimizers=["adam"], steps=4,
                  schedule="end", seeds=[0])[0]
    run_id, _ = execute(spec, store)
    d, law = _last_fuzziness(store, run_id)
    assert law["law_first"] == 1  # stored: the layers after the input

    def fit_of(figure):
        lines = [line for line in figure.axes[0].get_lines() if line.get_gid() == f"{run_id}:fit"]
        return lines[0].get_xdata(), lines[0].get_ydata(), lines[0].get_label()

    x, y, label = fit_of(equisep(store, run_id, fit_first=0))
    layers = np.arange(d.size)
    slope, intercept = np.polyfit(layers, np.log(d), 1)
    np.testing.assert_allclose(x, layers)
    np.testing.assert_allclose(y, np.exp(intercept + slope * layers), rtol=1e-9)
    assert "l ≥ 0" in label
    x_stored, _, label_stored = fit_of(equisep(store, run_id))
    np.testing.assert_allclose(x_stored, layers[1:])
    assert "l ≥" not in label_stored

    out = tmp_path / "law.png"
    result = CliRunner().invoke(app, ["plot", "equisep", run_id, "--store", str(store),
                                      "--fit-from-input", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_cli_fit_from_input_names_the_runs(tmp_path):
    result = CliRunner().invoke(app, ["run", "equisep", "--dry-run", "--depths", "2",
                                      "--optimizers", "adam", "--fit-from-input", "--store",
                                      str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    assert "fitinput" in result.output and '"fit_first": 0' in result.output


def _write_cifar_batches(folder, rng, n=20):
    """Tiny CIFAR-10 python batches: rows of 1024 red, 1024 green, 1024 blue values."""
    import pickle

    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        planes = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = (np.arange(n) % 10).tolist()
        batch = {b"data": planes.reshape(n, 3072), b"labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = planes
    return written


def test_ccg_is_the_green_channel_of_cifar10_at_ten_by_ten(tmp_path):
    written = _write_cifar_batches(tmp_path / "cifar-10-batches-py", np.random.default_rng(5))
    dataset, options, size = _equisep_data("ccg", 2, None)
    assert (dataset, size) == ("cifar10", 10)
    splits = ls.data.load(dataset, root=tmp_path, seed=0, **{**options, "normalize": False})
    x, _ = splits.measure.tensors
    assert x.shape == (20, 1, 10, 10)
    # the green plane of the same samples of the colour set (resizing is per channel)
    rgb = ls.data.load("cifar10", root=tmp_path, seed=0, **{**options, "normalize": False,
                                                            "channels": [0, 1, 2]})
    np.testing.assert_allclose(x[:, 0].numpy(), rgb.measure.tensors[0][:, 1].numpy(), atol=1e-6)
    # unresized, the planes are the written green planes
    full = ls.data.load("cifar10", root=tmp_path, normalize=False, val_fraction=0.0,
                        channels=[1])
    green = np.concatenate([written[f"data_batch_{i}"][:, 1] for i in range(1, 6)])
    np.testing.assert_array_equal(np.rint(full.train.tensors[0][:, 0].numpy() * 255), green)
    spec = expand("equisep", "small", dataset="ccg", depths=[2], optimizers=["adam"])[0]
    assert spec.dataset == "cifar10" and spec.data_options["channels"] == [1]
    assert "-ccg-" in spec.name
