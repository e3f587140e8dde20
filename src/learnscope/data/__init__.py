"""Datasets by name: `learnscope.data.load("digits")` -> (train, test) TensorDatasets."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import TensorDataset

from learnscope.data.digits import load_digits

_LOADERS: dict[str, Callable[..., tuple[TensorDataset, TensorDataset]]] = {
    "digits": load_digits,
}


def list() -> list[str]:  # noqa: A001 - registry convention: data.list()
    """Names of the available datasets."""
    return sorted(_LOADERS)


def load(name: str, **options) -> tuple[TensorDataset, TensorDataset]:
    """Load dataset `name` as (train, test); unknown names fail with the list of known ones."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(_LOADERS)}")
    return _LOADERS[name](**options)


__all__ = ["list", "load", "load_digits"]
