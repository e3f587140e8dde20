"""Projections applied in turn, as one scikit-learn Pipeline (:func:`chain`)."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline, make_pipeline


def chain(*steps: BaseEstimator) -> Pipeline:
    """A scikit-learn Pipeline applying the projections in turn.

    ``chain(AutoencoderProjection(n_components=32), SOMProjection())`` compresses to 32
    dimensions, then maps those onto a SOM. Every step keeps the number of snapshots.
    ``fit_transform`` of a chain ending in t-SNE or UMAP returns their fitted embedding.
    """
    if not steps:
        raise ValueError("chain needs at least one projection")
    for step in steps:
        if not (hasattr(step, "fit") and hasattr(step, "transform")):
            raise TypeError(f"every step must have fit and transform, got {step!r}")
    return make_pipeline(*steps)
