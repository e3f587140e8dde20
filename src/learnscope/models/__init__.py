"""Models by name: `learnscope.models.create("mlp", in_features=64, num_classes=10)`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from learnscope.models.cnn import SmallCNN
from learnscope.models.fnn import MLP

_FACTORIES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "small_cnn": SmallCNN}


def list() -> list[str]:  # noqa: A001 - registry convention: models.list()
    """Names of the available models."""
    return sorted(_FACTORIES)


def create(name: str, **options) -> nn.Module:
    """Build model `name` with its options; unknown names fail with the list of known ones."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available: {sorted(_FACTORIES)}")
    return _FACTORIES[name](**options)


__all__ = ["MLP", "SmallCNN", "create", "list"]
