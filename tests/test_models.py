"""The model zoo: registry, architecture facts of the CIFAR nets, initialisation and training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learnscope import models, patterns
from learnscope.models.fixup import fixup_parameter_groups

CONV_FAMILIES = ("resnet20", "convnet20", "toynet20", "pyramidnet20", "fixup_resnet20")
# activation layers per model: 2 per block x 9 + final (pre-activation nets), 1 per block
# (PyramidNet), stem + 2 per block (FixUp)
ACTIVATION_LAYERS = {"resnet20": 19, "convnet20": 19, "toynet20": 19, "pyramidnet20": 9,
                     "fixup_resnet20": 19}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_modules(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name, published", [("resnet20", 0.27e6), ("resnet56", 0.85e6)])
def test_parameter_count_matches_published(name: str, published: float) -> None:
    assert abs(n_parameters(models.create(name)) - published) / published < 0.02


@pytest.mark.parametrize("name", CONV_FAMILIES)
def test_activation_layer_count(name: str) -> None:
    model = models.create(name)
    counts = patterns.count(model, torch.randn(4, 3, 32, 32))
    assert len(counts) == ACTIVATION_LAYERS[name]
    assert count_modules(model, nn.ReLU) == ACTIVATION_LAYERS[name]
    # distinct module instances give plain module paths, never "name#1" for a reused module
    assert not any("#" in layer for layer in counts)


def test_activation_layer_names_are_readable() -> None:
    counts = patterns.count(models.create("resnet20"), torch.randn(4, 3, 32, 32))
    names = list(counts)
    assert names[:2] == ["stages.0.0.relu1", "stages.0.0.relu2"]
    assert names[-1] == "final_relu"


def _zero_block_convs(block: nn.Module) -> None:
    with torch.no_grad():
        block.conv1.weight.zero_()
        block.conv2.weight.zero_()


def test_convnet_block_has_no_shortcut() -> None:
    block = models.create("convnet20").stages[1][0]
    x = torch.randn(2, 16, 8, 8)
    assert block(x).abs().sum() > 0
    _zero_block_convs(block)
    out = block(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.count_nonzero(out) == 0


def test_resnet_block_adds_option_a_shortcut() -> None:
    model = models.create("resnet20")
    x = torch.randn(2, 16, 8, 8)
    down = model.stages[1][0]  # 16 -> 32 channels, stride 2
    expected = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert not torch.allclose(down(x), expected)
    _zero_block_convs(down)
    assert torch.equal(down(x), expected)
    same = model.stages[0][1]  # 16 -> 16, stride 1: identity shortcut
    _zero_block_convs(same)
    assert torch.equal(same(x), x)


def test_toynet_has_32_channels_in_every_conv() -> None:
    model = models.create("toynet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19
    assert all(c.out_channels == 32 for c in convs)
    assert [c.in_channels for c in convs] == [3] + [32] * 18


def test_fixup_initialisation() -> None:
    model = models.create("fixup_resnet20")
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 9
    for block in blocks:
        assert torch.count_nonzero(block.conv2.weight) == 0
        weight = block.conv1.weight
        fan_in = weight[0].numel()
        expected = math.sqrt(2 / fan_in) * len(blocks) ** -0.5
        # the sample std's relative standard error is about 1 / sqrt(2 n); allow 5 of them
        tolerance = 5 / math.sqrt(2 * weight.numel())
        assert abs(weight.std().item() / expected - 1) < tolerance
        assert abs(weight.mean().item()) < 5 * expected / math.sqrt(weight.numel())
    assert torch.count_nonzero(model.classifier.weight) == 0
    assert torch.count_nonzero(model.classifier.bias) == 0
    # every block starts as its shortcut and the classifier is zero, so logits start at zero
    assert torch.count_nonzero(model(torch.randn(2, 3, 16, 16))) == 0


def test_fixup_has_no_normalisation() -> None:
    model = models.create("fixup_resnet20")
    assert count_modules(model, nn.BatchNorm2d) == 0
    with pytest.raises(TypeError):
        models.create("fixup_resnet20", batchnorm=True)


def test_fixup_parameter_groups() -> None:
    model = models.create("fixup_resnet20")
    lr = 0.1
    groups = fixup_parameter_groups(model, lr)
    assert [len(g["params"]) for g in groups] == [len(g["params"]) for g in
                                                  model.parameter_groups(lr)]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    scalars = [g for g in groups if g["lr"] == pytest.approx(lr / 10)]
    others = [g for g in groups if g["lr"] == pytest.approx(lr)]
    assert len(scalars) == 1 and len(others) == 1
    # 4 biases and 1 multiplier per block, plus the stem's and the classifier's bias
    assert len(scalars[0]["params"]) == 5 * 9 + 2
    assert all(p.ndim == 0 for p in scalars[0]["params"])
    assert all(p.ndim > 0 for p in others[0]["params"])
    torch.optim.SGD(groups, lr=lr, momentum=0.9)


def _pyramid_widths(model: nn.Module) -> list[int]:
    return [block.out_channels for stage in model.stages for block in stage]


def test_pyramidnet_widths_grow_block_by_block() -> None:
    model = models.create("pyramidnet20")
    widths = _pyramid_widths(model)
    assert len(widths) == 9
    assert all(b > a for a, b in zip([16] + widths, widths, strict=False))
    assert widths[-1] == 64
    assert model.classifier.in_features == 64
    wide = models.create("pyramidnet20", widths=(16, 32, 100))
    assert _pyramid_widths(wide)[-1] == 100
    assert wide(torch.randn(2, 3, 8, 8)).shape == (2, 10)


TRAINABLE = [
    ("resnet20", {}, (3, 32, 32)),
    ("convnet20", {}, (3, 32, 32)),
    ("toynet20", {}, (3, 32, 32)),
    ("pyramidnet20", {}, (3, 32, 32)),
    ("fixup_resnet20", {}, (3, 32, 32)),
    ("mlp", {"in_features": 64}, (64,)),
    ("small_cnn", {"in_channels": 1}, (1, 8, 8)),
    ("resnet8", {"in_channels": 1, "image_size": 8}, (1, 8, 8)),
]


@pytest.mark.parametrize("name, options, shape", TRAINABLE, ids=[t[0] for t in TRAINABLE])
def test_trains_three_sgd_steps(name: str, options: dict, shape: tuple[int, ...]) -> None:
    model = models.create(name, **options)
    before = [p.detach().clone() for p in model.parameters()]
    params = model.parameter_groups(0.05) if hasattr(model, "parameter_groups") else \
        model.parameters()
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    inputs, labels = torch.randn(8, *shape), torch.randint(0, 10, (8,))
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(),
                                                               strict=True))


@pytest.mark.parametrize("name", CONV_FAMILIES)
@pytest.mark.parametrize("activation, kind", [("prelu", nn.PReLU), ("lrelu", nn.LeakyReLU)])
def test_activation_option(name: str, activation: str, kind: type[nn.Module]) -> None:
    model = models.create(name, activation=activation)
    assert count_modules(model, kind) == ACTIVATION_LAYERS[name]
    assert count_modules(model, nn.ReLU) == 0


@pytest.mark.parametrize("name", ["resnet20", "convnet20", "toynet20", "pyramidnet20"])
def test_batchnorm_options(name: str) -> None:
    plain = models.create(name, batchnorm=False)
    assert count_modules(plain, nn.BatchNorm2d) == 0
    assert count_modules(plain, nn.Identity) > 0
    assert plain(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    normed = models.create(name, bn_momentum=0.05)
    norms = [m for m in normed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.05 for m in norms)
    assert all(m.momentum == 0.1 for m in models.create(name).modules()
               if isinstance(m, nn.BatchNorm2d))


def test_depth_and_blocks_per_stage() -> None:
    assert len(models.create("resnet56").stages[0]) == 9
    assert len(models.create("convnet14").stages[2]) == 2
    assert len(models.create("resnet20", blocks_per_stage=1).stages[1]) == 1
    assert len(models.create("fixup_resnet44").stages[0]) == 7
    assert len(models.create("resnet200").stages[0]) == 33  # unlisted 6n+2 depths work too


def test_other_options() -> None:
    model = models.create("resnet20", widths=(8, 16, 24), num_classes=5, in_channels=1)
    assert model.stem.out_channels == 8 and model.classifier.in_features == 24
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)


def test_list_and_fixed_names() -> None:
    names = models.list()
    for name in ("mlp", "small_cnn", "resnet20", "resnet110", "convnet20", "toynet20",
                 "pyramidnet20", "fixup_resnet20"):
        assert name in names
    assert isinstance(models.create("mlp"), models.MLP)
    assert isinstance(models.create("small_cnn"), models.SmallCNN)


@pytest.mark.parametrize("name", ["resnet", "resnet21", "resnet2", "densenet40", "nope"])
def test_unknown_name_lists_known_names(name: str) -> None:
    with pytest.raises(ValueError, match="unknown model") as info:
        models.create(name)
    assert "resnet20" in str(info.value) and "mlp" in str(info.value)


def test_flat_nets_take_the_input_as_the_conv_nets_do() -> None:
    # in_channels x image_size^2 inputs: the very net that in_features=75 builds
    torch.manual_seed(0)
    by_shape = models.create("mlp", in_channels=3, image_size=5, hidden=(7,))
    torch.manual_seed(0)
    by_features = models.create("mlp", in_features=75, hidden=(7,))
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(by_shape(x), by_features(x))
    assert models.create("fnn_nobn", depth=2, in_channels=1, image_size=8).features[0].in_features \
        == 64
    assert models.create("mlp", in_channels=1, image_size=8, in_features=64)  # agreeing: fine
    small = models.create("small_cnn", in_channels=1, image_size=8)
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_model_options_are_checked_with_the_model_s_options_named() -> None:
    with pytest.raises(ValueError, match="in_channels and image_size together"):
        models.create("mlp", in_channels=1)
    with pytest.raises(ValueError, match="disagrees with in_channels x image_size"):
        models.create("fnn", in_channels=1, image_size=8, in_features=65)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        models.create("mlp", in_channels=1, image_size=0)
    with pytest.raises(TypeError, match="no option 'hiden'.*hidden"):
        models.create("mlp", hiden=(3,))
    with pytest.raises(TypeError, match="no option 'image_sise'.*image_size"):
        models.create("resnet8", image_sise=8)


@pytest.mark.parametrize("name, full, quarter", [
    ("resnet20", (16, 32, 64), (4, 8, 16)),
    ("convnet20", (16, 32, 64), (4, 8, 16)),
    ("toynet20", (32, 32, 32), (8, 8, 8)),
    ("fixup_resnet20", (16, 32, 64), (4, 8, 16)),
])
def test_width_multiplier_scales_every_conv(name: str, full: tuple, quarter: tuple) -> None:
    def conv_widths(model: nn.Module) -> list[int]:
        return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]

    wide = conv_widths(models.create(name))
    narrow = conv_widths(models.create(name, width_multiplier=0.25))
    # every conv keeps its place and gets a quarter of the filters (stem included)
    assert narrow == [{f: q for f, q in zip(full, quarter, strict=True)}[w] for w in wide]
    out = models.create(name, width_multiplier=0.25, in_channels=1, image_size=8)(
        torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10)


def test_width_multiplier_of_pyramidnet_scales_start_and_final_width() -> None:
    model = models.create("pyramidnet20", width_multiplier=0.5)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0] == 8 and convs[-1] == 32  # 16 -> 64 becomes 8 -> 32


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "half", True])
def test_width_multiplier_must_be_positive(bad) -> None:
    with pytest.raises(ValueError, match="width_multiplier must be a number > 0"):
        models.create("resnet8", width_multiplier=bad)
