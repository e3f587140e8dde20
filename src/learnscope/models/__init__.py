"""Models by name: `learnscope.models.create("resnet20")`, `create("mlp", in_features=64)`.

Fixed names: "mlp", "small_cnn", and the equi-separation feed-forward nets "fnn" (Linear-BN-ReLU
blocks, width 100), "fnn_nobn" (Linear-ReLU) and "fnn_linear" (Linear-BN, no activation), which
take `depth` (hidden blocks), `width`, `in_features`, `num_classes`. Every model also takes the
input as the conv nets describe it, `in_channels` and `image_size` (the flat-input nets then
have in_channels x image_size^2 inputs; "small_cnn", like the conv families, works at any image
size). Conv families are matched by
pattern `<family><depth>` with depth = 6n + 2 (n blocks in each of the three stages): "resnet20",
"resnet56", "convnet14", "toynet32", "pyramidnet20", "fixup_resnet110", ... Their options are
keyword arguments of `create`: activation, blocks_per_stage (overrides the depth in the name),
widths, width_multiplier (scales every width, rounded, at least 1: 0.25 gives ResNet-20 4/8/16
filters), in_channels, image_size, num_classes, and, except for fixup_resnet, batchnorm and
bn_momentum.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from torch import nn

from learnscope.models.cnn import SmallCNN
from learnscope.models.fixup import FixupResNet, fixup_parameter_groups, fixup_resnet
from learnscope.models.fnn import MLP
from learnscope.models.pyramidnet import PyramidNet, pyramidnet
from learnscope.models.resnet import CifarResNet, convnet, resnet, toynet


def _fnn(batchnorm: bool, activation: str) -> Callable[..., nn.Module]:
    def factory(depth: int = 2, width: int = 100, **options) -> nn.Module:
        options.setdefault("batchnorm", batchnorm)
        options.setdefault("activation", activation)
        return MLP(depth=depth, width=width, **options)

    return factory


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    # feed-forward nets of the equi-separation paper: `depth` hidden blocks of `width` units
    "fnn": _fnn(batchnorm=True, activation="relu"),
    "fnn_nobn": _fnn(batchnorm=False, activation="relu"),
    "fnn_linear": _fnn(batchnorm=True, activation="none"),
}
# models that flatten their input and take `in_features`
FLAT_INPUT = ("mlp", "fnn", "fnn_nobn", "fnn_linear")

# the class whose constructor takes a model's options (families: blocks_per_stage too)
_OPTIONS_OF: dict[str, type[nn.Module]] = {
    "mlp": MLP, "fnn": MLP, "fnn_nobn": MLP, "fnn_linear": MLP, "small_cnn": SmallCNN,
    "resnet": CifarResNet, "convnet": CifarResNet, "toynet": CifarResNet,
    "pyramidnet": PyramidNet, "fixup_resnet": FixupResNet,
}
_NOT_OPTIONS = {"self", "shortcut"}  # set by the family itself

# family -> factory(blocks_per_stage, **options)
_FAMILIES: dict[str, Callable[..., nn.Module]] = {
    "resnet": resnet,
    "convnet": convnet,
    "toynet": toynet,
    "pyramidnet": pyramidnet,
    "fixup_resnet": fixup_resnet,
}
# the depths listed by `list()`; any other 6n+2 is accepted as well
_LISTED_DEPTHS = (8, 14, 20, 26, 32, 44, 56, 110)
_FAMILY_NAME = re.compile(r"^(?P<family>[a-z_]+?)(?P<depth>\d+)$")


def list() -> list[str]:  # noqa: A001 - registry convention: models.list()
    """Names of the available models (conv families also accept any other depth 6n+2)."""
    names = set(_FACTORIES)
    names.update(f"{family}{depth}" for family in _FAMILIES for depth in _LISTED_DEPTHS)
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> tuple[str, int]:
    # "resnet8" before "resnet110", which plain string order gets wrong
    match = _FAMILY_NAME.match(name)
    return (name, 0) if match is None else (match["family"], int(match["depth"]))


def _unknown(name: str, reason: str = "") -> ValueError:
    return ValueError(
        f"unknown model {name!r}{reason}; available: {list()} "
        f"(families {sorted(_FAMILIES)} take any depth 6n+2, e.g. 'resnet1202')"
    )


def create(name: str, **options) -> nn.Module:
    """Build model `name` with its options; unknown names fail with the list of known ones.

    Args:
        name: a fixed name ("mlp", "small_cnn") or `<family><depth>` such as "resnet20".
        **options: keyword arguments of the model's constructor (see the module docstring).
    """
    if name in _FACTORIES:
        _check_options(name, name, options)
        return _FACTORIES[name](**_input_options(name, options))
    match = _FAMILY_NAME.match(name)
    if match is None or match["family"] not in _FAMILIES:
        raise _unknown(name)
    depth = int(match["depth"])
    if depth < 8 or (depth - 2) % 6:
        raise _unknown(name, f" (depth {depth} is not 6n+2 with n >= 1)")
    _check_options(name, match["family"], options)
    blocks = options.pop("blocks_per_stage", (depth - 2) // 6)
    return _FAMILIES[match["family"]](blocks, **options)


def _check_options(name: str, kind: str, options: dict) -> None:
    """Unknown option names fail with the model's options (a TypeError, as for any call)."""
    known = set(inspect.signature(_OPTIONS_OF[kind]).parameters) - _NOT_OPTIONS
    if kind in FLAT_INPUT or kind == "small_cnn":
        known |= {"in_channels", "image_size"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; its "
                        f"options are {', '.join(sorted(known))}")


def _input_options(name: str, options: dict) -> dict:
    """`in_channels` / `image_size` as the constructors of the flat-input nets and small_cnn
    take them: in_features = in_channels x image_size^2; small_cnn needs no image size."""
    options = dict(options)
    size = options.pop("image_size", None) if name in (*FLAT_INPUT, "small_cnn") else None
    for option, value in (("image_size", size), ("in_channels", options.get("in_channels"))):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"{option} must be a positive int, got {value!r}")
    if name not in FLAT_INPUT:
        return options
    channels = options.pop("in_channels", None)
    if channels is None and size is None:
        return options
    if channels is None or size is None:
        raise ValueError(f"model {name!r} flattens its input: give in_channels and image_size "
                         "together (or in_features), got only "
                         f"{'image_size' if channels is None else 'in_channels'}")
    flat = channels * size * size
    if options.setdefault("in_features", flat) != flat:
        raise ValueError(f"model {name!r}: in_features={options['in_features']} disagrees with "
                         f"in_channels x image_size^2 = {channels} x {size}^2 = {flat}")
    return options


__all__ = [
    "MLP",
    "FLAT_INPUT",
    "CifarResNet",
    "FixupResNet",
    "PyramidNet",
    "SmallCNN",
    "create",
    "fixup_parameter_groups",
    "list",
]
