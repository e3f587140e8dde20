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

Names compare without case, "-", "_" and spaces ("ResNet-20" is "resnet20"). Your own model:
decorate its factory with `@learnscope.models.register("mynet")` (a conv family taking the
blocks per stage first: `register_family`); `create("mynet", **options)` then builds it.
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
from learnscope.registry import Registry, normalise


def _fnn(batchnorm: bool, activation: str) -> Callable[..., nn.Module]:
    def factory(depth: int = 2, width: int = 100, **options) -> nn.Module:
        options.setdefault("batchnorm", batchnorm)
        options.setdefault("activation", activation)
        return MLP(depth=depth, width=width, **options)

    return factory


#: Models by fixed name: factories taking the model's options (see the module docstring).
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
#: Conv families, named `<family><depth>`: factories taking (blocks_per_stage, **options).
FAMILIES: Registry[Callable[..., nn.Module]] = Registry("model family")
#: Decorator registering a model factory under a fixed name: ``@register("mynet")``; then
#: ``create("mynet", **options)`` calls it with the options (checked against its signature).
register = MODELS.register
#: Decorator registering a conv family: ``create("<family><6n+2>")`` calls it with n first.
register_family = FAMILIES.register

MODELS.add("mlp", MLP)
MODELS.add("small_cnn", SmallCNN)
# feed-forward nets of the equi-separation paper: `depth` hidden blocks of `width` units
MODELS.add("fnn", _fnn(batchnorm=True, activation="relu"))
MODELS.add("fnn_nobn", _fnn(batchnorm=False, activation="relu"))
MODELS.add("fnn_linear", _fnn(batchnorm=True, activation="none"))
for _family, _factory in (("resnet", resnet), ("convnet", convnet), ("toynet", toynet),
                          ("pyramidnet", pyramidnet), ("fixup_resnet", fixup_resnet)):
    FAMILIES.add(_family, _factory)

# models that flatten their input and take `in_features`
FLAT_INPUT = ("mlp", "fnn", "fnn_nobn", "fnn_linear")

# the class whose constructor takes a built-in model's options (families: blocks_per_stage
# too); a registered model's options are those of its factory
_OPTIONS_OF: dict[str, type[nn.Module]] = {
    "mlp": MLP, "fnn": MLP, "fnn_nobn": MLP, "fnn_linear": MLP, "small_cnn": SmallCNN,
    "resnet": CifarResNet, "convnet": CifarResNet, "toynet": CifarResNet,
    "pyramidnet": PyramidNet, "fixup_resnet": FixupResNet,
}
_NOT_OPTIONS = {"self", "shortcut"}  # set by the family itself

# the depths listed by `list()`; any other 6n+2 is accepted as well
_LISTED_DEPTHS = (8, 14, 20, 26, 32, 44, 56, 110)
_FAMILY_NAME = re.compile(r"^(?P<family>.+?)(?P<depth>\d+)$")


def list() -> list[str]:  # noqa: A001 - registry convention: models.list()
    """Names of the available models (conv families also accept any other depth 6n+2)."""
    names = set(MODELS.names())
    names.update(f"{family}{depth}" for family in FAMILIES.names() for depth in _LISTED_DEPTHS)
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> tuple[str, int]:
    # "resnet8" before "resnet110", which plain string order gets wrong
    match = _FAMILY_NAME.match(name)
    return (name, 0) if match is None else (match["family"], int(match["depth"]))


def canonical(name: str) -> str:
    """The registered spelling of model `name`: "ResNet-20" -> "resnet20", "FNN_NoBN" ->
    "fnn_nobn" (names compare without case, "-", "_" and spaces); unknown names fail."""
    return _resolve(name)[0]


def flattens_input(name: str) -> bool:
    """Whether model `name` (any spelling) flattens its input: one of FLAT_INPUT."""
    return name in MODELS and MODELS.canonical(name) in FLAT_INPUT


def _resolve(name: str) -> tuple[str, str, int | None]:
    """(canonical name, the entry's name: fixed name or family, depth of a family or None)."""
    if name in MODELS:
        fixed = MODELS.canonical(name)
        return fixed, fixed, None
    match = _FAMILY_NAME.match(normalise(name))
    if match is None or match["family"] not in FAMILIES:
        raise _unknown(name)
    family = FAMILIES.canonical(match["family"])
    depth = int(match["depth"])
    if depth < 8 or (depth - 2) % 6:
        raise _unknown(name, f" (depth {depth} is not 6n+2 with n >= 1)")
    return f"{family}{depth}", family, depth


def _unknown(name: str, reason: str = "") -> ValueError:
    return MODELS.unknown(
        name, reason, known=list(),
        note=f" (families {', '.join(FAMILIES.names())} take any depth 6n+2, e.g. 'resnet1202')")


def create(name: str, **options) -> nn.Module:
    """Build model `name` with its options; unknown names fail with the list of known ones.

    Args:
        name: a fixed name ("mlp", "small_cnn") or `<family><depth>` such as "resnet20"; case,
            "-", "_" and spaces do not matter ("ResNet-20").
        **options: keyword arguments of the model's constructor (see the module docstring).
    """
    _, entry, depth = _resolve(name)
    if depth is None:
        _check_options(name, entry, MODELS[entry], options)
        return MODELS[entry](**_input_options(entry, options))
    _check_options(name, entry, FAMILIES[entry], options)
    blocks = options.pop("blocks_per_stage", (depth - 2) // 6)
    return FAMILIES[entry](blocks, **options)


def _check_options(name: str, kind: str, factory: Callable[..., nn.Module],
                   options: dict) -> None:
    """Unknown option names fail with the model's options (a TypeError, as for any call)."""
    parameters = inspect.signature(_OPTIONS_OF.get(kind, factory)).parameters
    if kind not in _OPTIONS_OF and any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return  # a registered factory taking **options checks them itself
    known = set(parameters) - _NOT_OPTIONS
    if kind not in _OPTIONS_OF and kind in FAMILIES:
        known.discard(next(iter(parameters), None))  # blocks per stage, set from the name
        known.add("blocks_per_stage")
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
    "FAMILIES",
    "FLAT_INPUT",
    "MLP",
    "MODELS",
    "CifarResNet",
    "FixupResNet",
    "PyramidNet",
    "SmallCNN",
    "canonical",
    "create",
    "flattens_input",
    "fixup_parameter_groups",
    "list",
    "register",
    "register_family",
]
