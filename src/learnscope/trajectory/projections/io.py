"""Fitted projections kept on disk: :func:`save_projection` (atomic) and :func:`load_projection`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import joblib
from sklearn.base import BaseEstimator


def save_projection(estimator: BaseEstimator, path: str | os.PathLike) -> Path:
    """Write a (fitted) projection with joblib, atomically: a temporary file, then os.replace.

    A crash never leaves a half-written file at `path`. t-SNE and UMAP projections contain the
    snapshots they were fitted on (their transform needs them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            joblib.dump(estimator, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_projection(path: str | os.PathLike) -> BaseEstimator:
    """A projection written by :func:`save_projection`; transform gives identical output."""
    estimator = joblib.load(Path(path))
    if not hasattr(estimator, "transform"):
        raise TypeError(f"{path} does not hold a projection (got {type(estimator).__name__})")
    return estimator
