"""The one registry mechanism (learnscope.registry) and the registries built on it: models,
datasets, projections, presets, probes and the separation's feature blocks."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import learnscope as ls
from learnscope import registry
from learnscope.data import Source
from learnscope.experiments import presets
from learnscope.registry import Registry, UnknownNameError, normalise
from learnscope.trajectory.projections import PROJECTIONS, PCAProjection, make_projection

# the shape of every unknown-name error: kind, the name as given, an optional reason, the known
# names; one line
UNKNOWN = re.compile(r"^unknown (?P<kind>[a-z ]+) '(?P<name>[^']*)'[^:\n]*: known ones are "
                     r"(?P<known>[^\n]+)$")


@pytest.fixture
def colours() -> Registry[int]:
    colours: Registry[int] = Registry("colour")
    colours.add("dark-red", 1, "Crimson")
    colours.add("sky_blue", 2)
    colours.add("green", 3)
    return colours


def test_names_compare_without_case_dashes_underscores_and_spaces(colours) -> None:
    assert normalise("Fashion_MNIST") == normalise("fashion-mnist") == normalise("fashion mnist") \
        == normalise("FASHIONMNIST") == "fashionmnist"
    for spelling in ("dark-red", "dark_red", "Dark Red", "DARKRED", "darkred"):
        assert colours[spelling] == 1 and colours.canonical(spelling) == "dark-red"
        assert spelling in colours
    assert colours["Sky-Blue"] == 2 and colours.canonical("SKY BLUE") == "sky_blue"
    assert "red" not in colours and 3 not in colours


def test_aliases_look_up_but_are_not_listed(colours) -> None:
    assert colours["crimson"] == colours["CRIMSON"] == 1
    assert colours.canonical("Crimson") == "dark-red"
    assert colours.names() == ("dark-red", "sky_blue", "green")  # registration order
    assert list(colours) == ["dark-red", "sky_blue", "green"] and len(colours) == 3
    assert colours.aliases("dark red") == ("crimson",)
    assert dict(colours.items()) == {"dark-red": 1, "sky_blue": 2, "green": 3}
    assert colours.get("nope") is None and colours.get("crimson") == 1  # Mapping.get


def test_a_taken_name_is_refused_in_any_spelling(colours) -> None:
    for name, aliases in (("Dark_Red", ()), ("scarlet", ("crimson",)), ("GREEN", ())):
        with pytest.raises(ValueError, match="is taken by the registered colour") as info:
            colours.add(name, 9, *aliases)
        assert "pick another name" in str(info.value)
    with pytest.raises(ValueError, match="repeat one name"):
        colours.add("teal", 9, "TEAL")
    with pytest.raises(ValueError, match="needs a letter or a digit"):
        colours.add("--", 9)
    with pytest.raises(TypeError, match="a colour name must be a string, got 7"):
        colours.add(7, 9)
    assert colours.names() == ("dark-red", "sky_blue", "green")  # nothing half-added


def test_the_decorator_registers_and_returns_what_it_decorates(colours) -> None:
    @colours.register("violet", "purple")
    def violet() -> str:
        return "v"

    assert colours["Purple"] is violet and violet() == "v"
    assert colours.unregister("PURPLE") is violet
    assert "violet" not in colours and "purple" not in colours
    colours.add("purple", 4)  # its names are free again


def test_unknown_name_error_lists_the_known_names_and_the_closest(colours) -> None:
    with pytest.raises(UnknownNameError) as info:
        colours["dark-rad"]
    message = str(info.value)
    assert message == ("unknown colour 'dark-rad': known ones are dark-red, sky_blue, green; "
                       "did you mean 'dark-red'?")
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    # an alias close to the name suggests the entry it stands for
    assert str(colours.unknown("crimsen")).endswith("did you mean 'dark-red'?")
    # nothing close: no suggestion
    assert str(colours.unknown("ultraviolet")) == (
        "unknown colour 'ultraviolet': known ones are dark-red, sky_blue, green")
    assert str(Registry("shape").unknown("x")) == "unknown shape 'x': known ones are " \
                                                   "(none registered)"
    with pytest.raises(TypeError, match="a colour name must be a string, got None"):
        colours[None]


def test_restoring_undoes_registrations(colours) -> None:
    with registry.restoring():
        colours.add("black", 0)
        colours.unregister("green")
    assert colours.names() == ("dark-red", "sky_blue", "green")


def test_the_registry_module_imports_only_the_standard_library() -> None:
    # a leaf: any layer (the separation measure, the store) may import it without torch
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# ---------------------------------------------------------------------------------------------
# the registries of learnscope: one error shape, the old spellings, third-party entries


def _probe_of(name: str):
    spec = presets.RunSpec("p", "run", "mlp", probe=name)
    return presets._make_probe(spec, (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)))


UNKNOWN_NAMES = {
    "model": (lambda: ls.models.create("resnett20"), "resnet20"),
    "dataset": (lambda: ls.data.load("fashionmnst"), "fashion-mnist"),
    "projection": (lambda: make_projection("autoencodr-som"), "autoencoder-som"),
    "preset": (lambda: presets.expand("equisep-dept"), "equisep-depth"),
    "probe": (lambda: _probe_of("patern"), "patterns"),
}


@pytest.mark.parametrize("kind", sorted(UNKNOWN_NAMES))
def test_every_registry_refuses_an_unknown_name_with_the_same_error(kind: str) -> None:
    attempt, closest = UNKNOWN_NAMES[kind]
    with pytest.raises(ValueError) as info:
        attempt()
    message = str(info.value)
    match = UNKNOWN.match(message.split("; did you mean")[0])
    assert match is not None, message
    assert match["kind"] == kind and closest in match["known"].split(", ")
    assert message.endswith(f"; did you mean {closest!r}?")


def test_every_registry_accepts_its_old_spellings() -> None:
    assert type(ls.models.create("fixup_resnet20")) is type(ls.models.create("Fixup-ResNet-20"))
    assert ls.models.canonical("FNN_NoBN") == "fnn_nobn"
    assert ls.data.options("Fashion_MNIST") == ls.data.options("fashion-mnist")
    assert ls.data.load("DIGITS", per_class=2, val_fraction=0).config["dataset"] == "digits"
    for spelling, name in (("AutoencoderSOM", "autoencoder-som"), ("SelfOrganizingMap", "som"),
                           ("AutoencoderWithTsne", "autoencoder-tsne"), ("PCA", "pca")):
        assert PROJECTIONS.canonical(spelling) == name
    assert [s.name for s in presets.expand("Equisep_Depth", depths=[1])] == \
        [s.name for s in presets.expand("equisep-depth", depths=[1])]
    assert set(presets.PROBES) == {"patterns", "separation", "weights"}


def test_the_cli_takes_any_spelling_and_passes_the_registered_name_on() -> None:
    from learnscope.experiments import validation

    assert validation.models_for("early", "ResNet-20,MLP,fixup-resnet-20") == \
        ["resnet20", "mlp", "fixup_resnet20"]
    assert validation.dataset_for("early", "Fashion_MNIST") == "fashion-mnist"
    assert validation.dataset_for("equisep", "cfm") == "cfm"
    assert validation.is_model("Toynet-8") and not validation.is_model("toynet9")
    assert validation.flattens_input("FNN") and not validation.flattens_input("small-cnn")


def test_the_preset_registry_gives_the_cli_its_presets() -> None:
    from learnscope import cli

    assert cli.PRESETS == ("quickstart", "early", "entropycurve", "methods", "equisep",
                           "equisep-depth", "trajectories")
    assert presets.sweepable() == presets.PRESETS == cli.PRESETS[1:-1]
    with pytest.raises(ValueError, match="preset 'quickstart' has no runs to expand: quickstart "
                                         "and trajectories run with `learnscope run`"):
        presets.expand("QuickStart")


def test_a_model_registered_by_decorator_is_built_by_create() -> None:
    @ls.models.register("tiny-net", "Tiny")
    def tiny_net(in_features: int = 4, hidden: int = 3, num_classes: int = 2) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))

    model = ls.models.create("TINY_NET", hidden=5)
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [5, 2]
    assert isinstance(ls.models.create("tiny"), nn.Sequential)
    assert "tiny-net" in ls.models.list() and ls.models.canonical("tinynet") == "tiny-net"
    with pytest.raises(TypeError, match="model 'tiny-net' has no option 'depth'; its options "
                                        "are hidden, in_features, num_classes"):
        ls.models.create("tiny-net", depth=3)
    with pytest.raises(ValueError, match="is taken by the registered model 'mlp'"):
        ls.models.register("MLP")(tiny_net)
    # a fixed-name model gets no conv-family options in a preset
    (spec,) = presets.expand("early", models=["tiny-net"])
    assert spec.model_options == {}


def test_a_family_registered_by_decorator_takes_any_depth() -> None:
    @ls.models.register_family("widenet")
    def widenet(blocks_per_stage: int, width: int = 2) -> nn.Module:
        return nn.Sequential(*[nn.Linear(width, width) for _ in range(3 * blocks_per_stage)])

    assert len(ls.models.create("WideNet-14", width=3)) == 3 * 2
    assert len(ls.models.create("widenet8", blocks_per_stage=4)) == 12
    assert "widenet20" in ls.models.list()
    with pytest.raises(ValueError, match=r"unknown model 'widenet9' \(depth 9 is not 6n\+2"):
        ls.models.create("widenet9")


def test_a_dataset_registered_by_decorator_is_loaded_with_the_common_options() -> None:
    @ls.data.register("two-blobs")
    def read_two_blobs(num_samples: int = 40) -> Source:
        labels = torch.arange(num_samples) % 2
        inputs = torch.randn(num_samples, 3, generator=torch.Generator().manual_seed(0))
        return Source(inputs + 5.0 * labels[:, None], labels, None, None, num_classes=2)

    splits = ls.data.load("Two_Blobs", per_class=7, val_fraction=0, num_samples=60)
    assert len(splits.train) == 14 and splits.num_classes == 2
    assert splits.config["dataset"] == "two-blobs" and splits.config["num_samples"] == 60
    assert "two-blobs" in ls.data.list()
    with pytest.raises(TypeError, match="no option"):
        ls.data.load("two-blobs", root="/nowhere")


def test_projections_presets_and_probes_take_registrations() -> None:
    PROJECTIONS.add("pca3", lambda random_state: PCAProjection(n_components=3,
                                                               random_state=random_state))
    assert make_projection("PCA-3").n_components == 3

    @presets.register_preset("tiny-early")
    def tiny_early(preset, scale, overrides):
        return [presets.RunSpec(preset, f"{preset}-{scale}", "mlp", probe="my-probe")]

    @presets.register_probe("my-probe")
    def my_probe(data, **options):
        return ("probe over", len(data[0]))

    (spec,) = presets.expand("Tiny_Early", seed=3)
    assert (spec.name, spec.seed) == ("tiny-early-small", 3)
    assert "tiny-early" in presets.sweepable()
    assert presets._make_probe(spec, (torch.zeros(5, 2), None)) == ("probe over", 5)


def test_the_model_modules_register_their_blocks_as_feature_blocks() -> None:
    from learnscope.models.fixup import FixupBlock
    from learnscope.models.pyramidnet import PyramidBlock
    from learnscope.models.resnet import PreActBlock

    assert dict(registry.feature_blocks) == {"preact-block": PreActBlock,
                                             "pyramid-block": PyramidBlock,
                                             "fixup-block": FixupBlock}
