"""The equi-separation law: log D_l = a + l·log ρ, fitted by least squares over layers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LawFit:
    """A least-squares fit of log D_l = intercept + slope·l over layers first..last.

    rho = exp(slope) is the decay ratio of D per layer; pearson_r the correlation of (l, log D_l)
    (−1: perfectly geometric decay); r2 the coefficient of determination of the fit.
    """

    slope: float
    intercept: float
    rho: float
    pearson_r: float
    r2: float
    first: int
    last: int
    n_layers: int

    def predict(self, layer_index) -> np.ndarray:
        """Fitted D at layer indices."""
        return np.exp(self.intercept + self.slope * np.asarray(layer_index, dtype=np.float64))

    def to_dict(self) -> dict[str, float]:
        """The fields as a dict."""
        return asdict(self)


def fit_law(
    values: Mapping[str, float] | Sequence[float], *, first: int = 1, last: int | None = None
) -> LawFit:
    """Fit log D_l = a + l·slope over layer indices l in [first, last].

    Args:
        values: D per layer, index 0 being the input: a dict from `measure` (in forward order)
            or a sequence.
        first: first layer index fitted (default 1: the layers after the input).
        last: last layer index fitted (default: the last layer).
    """
    d = np.asarray(list(values.values()) if isinstance(values, Mapping) else list(values),
                   dtype=np.float64)
    last = d.size - 1 if last is None else int(last)
    if first < 0 or last >= d.size:
        raise ValueError(f"layers {first}..{last} are out of range for {d.size} values")
    index = np.arange(first, last + 1, dtype=np.float64)
    if index.size < 2:
        raise ValueError(
            f"fitting the law needs at least 2 layers, got {index.size} (layers {first}..{last} "
            f"of {d.size} values); measure a deeper net or lower `first`"
        )
    y = d[first:last + 1]
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"the law needs finite positive D at every fitted layer, got {y.tolist()}")
    log_d = np.log(y)
    dx, dy = index - index.mean(), log_d - log_d.mean()
    slope = float((dx @ dy) / (dx @ dx))
    intercept = float(log_d.mean() - slope * index.mean())
    ss_tot = float(dy @ dy)
    residual = log_d - (intercept + slope * index)
    if ss_tot > 0:
        r2 = 1.0 - float(residual @ residual) / ss_tot
        pearson = float((dx @ dy) / math.sqrt(float(dx @ dx) * ss_tot))
    else:  # constant D: a perfect (flat) fit, no correlation defined
        r2, pearson = 1.0, math.nan
    return LawFit(slope=slope, intercept=intercept, rho=math.exp(slope), pearson_r=pearson,
                  r2=r2, first=int(first), last=int(last), n_layers=int(index.size))
