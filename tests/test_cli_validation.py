"""`learnscope run` / `sweep` check every value before a store is opened or anything trains.

Each refused value gives exit code 2 and one `error:` line that names the value given and what is
allowed, with no traceback and no store file. Values that can be made to work do work: `--models
mlp` / `small_cnn` with the conv presets, mnist1d with networks that flatten their input,
`--blocks` for entropycurve, `--download` (from a local mirror: no network here).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_data import idx_bytes
from typer.testing import CliRunner

import learnscope as ls
from learnscope import cli
from learnscope.data import mnist as mnist_module
from learnscope.experiments import presets, validation


def _flat(text: str) -> str:
    return " ".join(text.split())


def _invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def _refused(result, store, *, first: bool = True) -> str:
    """The flattened error of a clean refusal; nothing was written to the store.

    first: the error is all the output (a bad value: refused before even the plan is shown).
    """
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    if first:
        assert result.output.startswith("error:"), result.output
    assert not store.exists()
    return _flat(result.output.split("error:")[1])


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 160)


REFUSED = [
    # (command line, words the error must contain: the value given, then what is allowed)
    (["run", "early", "--epochs", "0"], ["--epochs 0", ">= 1"]),
    (["run", "early", "--steps", "0"], ["--steps 0", ">= 1"]),
    (["run", "early", "--steps", "-5"], ["--steps -5", ">= 1"]),
    (["sweep", "early", "--steps", "-5"], ["--steps -5", ">= 1"]),
    (["run", "quickstart", "--every", "0"], ["--every 0", ">= 1"]),
    (["run", "quickstart", "--epochs", "0"], ["--epochs 0", ">= 1"]),
    (["run", "early", "--every", "5"], ["--every 5", "only quickstart", "--schedule"]),
    (["run", "early", "--seeds", "a,b"], ["--seeds 'a,b'", "'a'", "integer >= 0"]),
    (["sweep", "early", "--seeds", "a,b"], ["--seeds 'a,b'", "'a'", "integer >= 0"]),
    (["run", "early", "--seeds", "0,,1"], ["--seeds '0,,1'", "empty item"]),
    (["run", "early", "--seeds", "1,1"], ["--seeds '1,1'", "more than once"]),
    (["run", "equisep", "--depths", "2,02"], ["--depths '2,02'", "2 given more than once"]),
    (["run", "early", "--schedule", "every banana"],
     ["--schedule 'every banana'", "'banana'", "'every K [from A] [until B]'"]),
    (["run", "early", "--models", "resnet21"],
     ["'resnet21'", "mlp", "small_cnn", "resnet", "6n+2"]),
    (["sweep", "methods", "--models", "foo"], ["'foo'", "mlp", "small_cnn", "resnet"]),
    (["run", "early", "--dataset", "imagenet"],
     ["'imagenet'", "cifar10", "digits", "mnist1d", "omniglot"]),
    (["run", "equisep", "--dataset", "cx"], ["'cx'", "cm (mnist at 10x10)", "cc", "digits"]),
    (["run", "early", "--dataset", "mnist1d"],
     ["mnist1d has 1-D inputs", "resnet20, convnet20, toynet20", "digits", "mlp"]),
    (["run", "entropycurve", "--dataset", "mnist1d"],
     ["mnist1d has 1-D inputs", "(resnet8, resnet14", "toynet32)", "cifar10, digits"]),
    (["run", "methods", "--dataset", "mnist1d", "--models", "mlp"],
     ["mnist1d has 1-D inputs", "fixup_resnet20, pyramidnet20", "digits"]),
    (["run", "equisep", "--dataset", "mnist1d", "--models", "fnn,small_cnn"],
     ["mnist1d has 1-D inputs", "(small_cnn)", "fnn_nobn"]),
    (["run", "entropycurve", "--models", "resnet20,resnet56"],
     ["'resnet20', 'resnet56' are not one of resnet, convnet, toynet", "--blocks 3"]),
    (["run", "entropycurve", "--models", "mlp"], ["'mlp' is not one of resnet, convnet"]),
    (["run", "entropycurve", "--blocks", "0,1"], ["--blocks '0,1'", "'0'", ">= 1"]),
    (["run", "entropycurve", "--blocks", "2,2"], ["--blocks '2,2'", "more than once"]),
    (["run", "early", "--blocks", "1,3"], ["--blocks 1,3", "only entropycurve"]),
    (["run", "equisep", "--depths", "2,x"], ["--depths '2,x'", "'x'", ">= 0"]),
    (["run", "equisep", "--optimizers", "sgd,rmsprop"],
     ["'rmsprop'", "sgd, momentum, adam"]),
    (["run", "equisep-depth", "--optimizers", "sgd"], ["--optimizers sgd", "only equisep"]),
    (["run", "early", "--depths", "2"], ["--depths 2", "equisep and equisep-depth"]),
    (["run", "equisep", "--per-class", "0"], ["--per-class 0", ">= 1"]),
    (["run", "equisep", "--imbalance", "0.5"], ["--imbalance 0.5", ">= 1"]),
    (["run", "early", "--scale", "huge"], ["--scale 'huge'", "small or paper"]),
    (["run", "early", "--device", "gpu"], ["--device 'gpu'", "cpu, cuda or cuda:N"]),
    (["run", "early", "--download"], ["--download", "digits", "cifar10, fashion-mnist, mnist"]),
    (["run", "quickstart", "--models", "mlp"], ["--models mlp", "quickstart does not take"]),
    (["run", "quickstart", "--download"], ["--download:", "quickstart does not take"]),
    (["run", "trajectories", "--steps", "5"], ["--steps 5", "trajectories does not take"]),
    (["run", "quickstart", "--scale", "paper"], ["--scale paper", "quickstart does not take"]),
    (["run", "trajectories", "--iterations", "0"], ["--iterations 0", ">= 1"]),
    (["run", "trajectories", "--epochs", "0"], ["--epochs 0", ">= 1"]),
    (["run", "trajectories", "--networks", "0"], ["--networks 0", ">= 1"]),
    (["run", "trajectories", "--width", "0"], ["--width 0", ">= 1"]),
    (["run", "trajectories", "--resolution", "1"], ["--resolution 1", ">= 2"]),
    (["run", "trajectories", "--activation", "tanh"], ["'tanh'", "relu, lrelu, prelu"]),
    (["run", "early", "--dry-run", "true"], ["'true'", "--dry-run", "takes no value"]),
    (["sweep", "equisep", "--dry-run", "yes"], ["'yes'", "--dry-run", "takes no value"]),
    (["run", "--dry-run", "true", "early"], ["'true'", "--dry-run", "takes no value"]),
    (["run", "early", "extra"], ["'extra'", "one preset name"]),
]


@pytest.mark.parametrize(("args", "expected"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_bad_value_is_refused_in_one_line_before_anything_runs(tmp_path, args, expected):
    store = tmp_path / "store.db"
    # without --dry-run: the check must come before the store is opened and before training
    output = _refused(_invoke(*args, "--store", str(store)), store)
    for words in expected:
        assert words in output, (words, output)


def test_every_dataset_of_the_registry_has_the_input_kind_validation_assumes():
    """SIGNAL_DATASETS against the shapes data.load gives (file datasets from their readers)."""
    assert set(validation.SIGNAL_DATASETS) <= set(ls.data.list())
    for name in ("digits", "mnist1d", "synthetic"):
        shape = ls.data.load(name, val_fraction=0.0).input_shape
        assert validation.dataset_kind(name) == ("signal" if len(shape) == 2 else "image")
    # the file datasets are images: (N, C, H, W) in their readers' documentation
    for name in ("cifar10", "mnist", "fashion-mnist", "omniglot"):
        assert validation.dataset_kind(name) == "image"
        assert validation.downloadable(name)
    assert not any(validation.downloadable(n) for n in ("digits", "mnist1d", "synthetic"))


def test_entropycurve_blocks_choose_the_depths_once_per_family_and_seed(tmp_path):
    result = _invoke("run", "entropycurve", "--blocks", "1,3", "--seeds", "0,1",
                     "--models", "resnet,toynet", "--dry-run", "--store",
                     str(tmp_path / "s.db"))
    assert result.exit_code == 0, result.output
    specs = presets.expand("entropycurve", blocks=[1, 3], seeds=[0, 1],
                           models=["resnet", "toynet"])
    assert sorted((s.model, s.seed) for s in specs) == sorted(
        (f"{family}{depth}", seed) for family in ("resnet", "toynet") for depth in (8, 20)
        for seed in (0, 1))
    assert len({s.name for s in specs}) == len(specs) == 8
    for spec in specs:
        assert spec.name in result.output


@pytest.mark.parametrize(("overrides", "message"), [
    ({"models": ["resnet20", "resnet56"]}, "families"),
    ({"models": ["resnet", "resnet"]}, "repeat"),
    ({"blocks": [0]}, "blocks"),
])
def test_expand_refuses_what_would_duplicate_or_break_entropycurve_runs(overrides, message):
    with pytest.raises(ValueError, match=message):
        presets.expand("entropycurve", **overrides)


def test_flat_and_small_models_get_no_conv_options_on_the_conv_presets():
    for preset in ("early", "methods"):
        specs = {s.model: s for s in presets.expand(preset, models=["mlp", "small_cnn",
                                                                    "resnet8"])}
        assert "in_channels" not in specs["mlp"].model_options
        assert "image_size" not in specs["small_cnn"].model_options
        assert specs["resnet8"].model_options["in_channels"] == 1


def test_conv_preset_trains_mlp_and_small_cnn(tmp_path, one_thread):
    """Before: a TypeError about in_channels; now each network trains its step."""
    store = tmp_path / "s.db"
    result = _invoke("run", "early", "--models", "mlp,small_cnn", "--steps", "1",
                     "--store", str(store))
    assert result.exit_code == 0, result.output
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        assert sorted(runs["name"]) == ["early-small-mlp-s0", "early-small-small_cnn-s0"]
        assert set(runs["status"]) == {"finished"}
        latest = {name: s.latest(run_id) for name, run_id in
                  zip(runs["name"], runs["id"], strict=True)}
    layers = {name: set(frame[frame["layer_index"] >= 0]["layer"])
              for name, frame in latest.items()}
    # the measured layers are the networks' own ReLUs (the MLP on flattened 8x8 digits)
    for net, options in (("mlp", {"in_features": 64}), ("small_cnn", {"in_channels": 1})):
        model = ls.models.create(net, num_classes=10, **options)
        relus = {n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)}
        assert relus and layers[f"early-small-{net}-s0"] == relus


def test_mnist1d_trains_with_a_network_that_flattens_it(tmp_path, one_thread):
    store = tmp_path / "s.db"
    result = _invoke("run", "early", "--dataset", "mnist1d", "--models", "mlp", "--steps", "1",
                     "--store", str(store))
    assert result.exit_code == 0, result.output
    with ls.store.open(store, read_only=True) as s:
        assert list(s.runs()["status"]) == ["finished"]


@pytest.fixture
def local_mnist_mirror(tmp_path, monkeypatch):
    """MNIST's download pointed at a folder of small IDX .gz files (file:// URLs, their MD5s),
    and an empty data root; yields the root."""
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(40) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
    }
    md5 = {}
    for stem, array in arrays.items():
        content = gzip.compress(idx_bytes(array))
        (mirror / (stem + ".gz")).write_bytes(content)
        md5[stem] = hashlib.md5(content).hexdigest()
    monkeypatch.setattr(mnist_module, "MNIST", replace(
        mnist_module.MNIST, mirrors=(mirror.as_uri() + "/",), md5=md5))
    root = tmp_path / "data"
    monkeypatch.setenv("LEARNSCOPE_DATA", str(root))
    return root


EQUISEP_ON_MNIST = ["equisep-depth", "--dataset", "cm", "--depths", "1", "--per-class", "2",
                    "--steps", "1"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_missing_dataset_is_reported_with_the_download_flag_before_the_store(
        tmp_path, local_mnist_mirror, command):
    store = tmp_path / "s.db"
    output = _refused(_invoke(command, *EQUISEP_ON_MNIST, "--store", str(store)), store,
                      first=False)  # after the plan
    assert "MNIST not found" in output
    assert "pass --download" in output and "download=True" not in output
    assert str(local_mnist_mirror) in output  # where it looked
    assert not local_mnist_mirror.exists()  # nothing fetched without the flag


def test_download_flag_fetches_the_dataset_then_the_run_trains_on_it(
        tmp_path, local_mnist_mirror, one_thread):
    store = tmp_path / "s.db"
    result = _invoke("run", *EQUISEP_ON_MNIST, "--download", "--store", str(store))
    assert result.exit_code == 0, result.output
    raw = local_mnist_mirror / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{stem}.gz" for stem in mnist_module.FILES.values())
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
    assert list(runs["status"]) == ["finished"]
    assert list(runs["name"]) == ["equisep-depth-small-cm-fnn-L1-adam-lr0.001-s0"]


def test_good_values_are_parsed_into_the_overrides_of_expand():
    assert validation.preset_options(
        "equisep", "small", seeds="0, 2", depths="2,6", optimizers="adam,sgd", per_class=50,
        imbalance=10, dataset="cm", steps=5, schedule="every 2; end") == {
        "seeds": [0, 2], "depths": [2, 6], "optimizers": ["adam", "sgd"], "per_class": 50,
        "imbalance": 10.0, "dataset": "cm", "steps": 5, "schedule": "every 2; end"}
    assert validation.preset_options("entropycurve", "paper", blocks="1,3",
                                     models="toynet") == {"blocks": [1, 3], "models": ["toynet"]}
    assert validation.preset_options("early", "small") == {}
    # on/off flags pass through as they are; None (not given) is left out
    assert validation.preset_options("equisep", "small", fit_from_input=True,
                                     since_final=None) == {"fit_from_input": True}
    assert validation.preset_options("early", "small", models="resnet1202,fnn_nobn") == {
        "models": ["resnet1202", "fnn_nobn"]}  # any depth 6n+2 of a family


def test_dry_run_shows_the_runs_of_good_values_and_opens_no_store(tmp_path):
    store = tmp_path / "s.db"
    result = _invoke("sweep", "early", "--models", "resnet8,mlp", "--seeds", "3", "--steps",
                     "4", "--dry-run", "--store", str(store))
    assert result.exit_code == 0, result.output
    assert "early-small-resnet8-s3" in result.output and "early-small-mlp-s3" in result.output
    assert not store.exists()


def test_a_one_cycle_schedule_cannot_be_stepped_past_its_end():
    from learnscope.train import recipes

    recipe = recipes.get("onecycle", epochs=4)
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = recipe.build(model, steps_per_epoch=10)
    recipe.check_updates(40, 10)  # exactly its length: fine, and torch agrees
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    optimizer.step()
    with pytest.raises(ValueError, match="Tried to step 41 times"):  # torch's own refusal
        scheduler.step()
    with pytest.raises(ValueError, match="41 updates asked for.*ends after 40"):
        recipe.check_updates(41, 10)
    recipes.get("multistep", epochs=4).check_updates(1000, 10)  # others run as long as asked


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_steps_past_the_end_of_a_one_cycle_schedule_are_refused_up_front(tmp_path, command):
    store = tmp_path / "s.db"
    result = _invoke(command, "methods", "--steps", "100000", "--models", "resnet8",
                     "--store", str(store))
    message = _refused(result, store, first=False)
    assert "--steps 100000 for methods-small-resnet8-onecycle-s0" in message
    assert "one-cycle schedule ends after" in message
