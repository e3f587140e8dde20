"""Checks and normalisation of the arguments of the store's writes and queries."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any


def _as_int(value: Any, what: str) -> int:
    """``operator.index(value)`` with a readable error (rejects floats and bools)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None


def _name_list(names: str | list[str] | None, what: str) -> list[str] | None:
    """Normalise a ``str | list[str] | None`` filter argument."""
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    result = list(names)
    for name in result:
        if not isinstance(name, str):
            raise TypeError(f"{what} names must be strings, got {name!r}")
    return result


def _listing(names: list[str], limit: int = 50) -> str:
    """``a, b, c`` (at most ``limit`` names, then how many more)."""
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def _prepare_rows(run_id: str, step: Any, epoch: Any, probe: Any, rows: Iterable[tuple]
                  ) -> tuple[int, float | None, list[tuple]]:
    """Checked (step, epoch, metric rows) of one measurement, as ``write_measurement`` stores."""
    step = _as_int(step, "step")
    if epoch is not None:
        if isinstance(epoch, bool):
            raise TypeError(f"epoch must be a number or None, got {epoch!r}")
        epoch = float(epoch)
    if not isinstance(probe, str) or not probe:
        raise ValueError(f"probe must be a non-empty string, got {probe!r}")
    prepared: list[tuple[str, int, str, str, int, str, float | None]] = []
    for i, row in enumerate(rows):
        try:
            layer, layer_index, measure, value = row
            if not isinstance(layer, str) or not isinstance(measure, str):
                raise TypeError("layer and measure must be strings")
            index = _as_int(layer_index, "layer_index")
            number = None if value is None else float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Row {i} of measurement (step {step}, probe {probe!r}) is {row!r}: "
                f"expected (layer: str, layer_index: int, measure: str, value: float) "
                f"({exc})"
            ) from exc
        if number is not None and math.isnan(number):
            number = None  # SQLite stores NaN as NULL anyway; be explicit about it
        prepared.append((run_id, step, probe, layer, index, measure, number))
    return step, epoch, prepared
