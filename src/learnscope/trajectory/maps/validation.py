"""Checks and conversions of a map's fields, and the error they raise
(:class:`TrajectoryMapError`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class TrajectoryMapError(ValueError):
    """A trajectory map (or a landscape) is inconsistent, or a map file cannot be read."""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TrajectoryMapError(f"{what} must be a string, got {value!r}")
    return value


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TrajectoryMapError(f"{what} must be a list of strings, got {values!r}")
    return [_text(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _float_array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)  # a copy: the map owns its arrays
    except (TypeError, ValueError) as exc:
        raise TrajectoryMapError(f"{what} must be an array of numbers ({exc})") from None
    return array


def _step_array(value: Any, what: str) -> np.ndarray:
    raw = np.asarray(value)
    if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer)
                                 or np.issubdtype(raw.dtype, np.floating)):
        raise TrajectoryMapError(f"{what} must be integer training steps, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise TrajectoryMapError(f"{what} must be whole numbers (training steps), got {raw}")
    return np.array(raw, dtype=np.int64)


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types (checked)."""
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TrajectoryMapError(
                    f"meta{where} has the key {key!r}; meta keys must be strings (JSON)"
                )
            out[key] = _jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TrajectoryMapError(
        f"meta{where} is {type(value).__name__} {value!r}, which cannot be stored as JSON; "
        "use strings, numbers, booleans, None, lists and dicts"
    )
