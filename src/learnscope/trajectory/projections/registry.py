"""Projections by name: the :data:`PROJECTIONS` registry and :func:`make_projection`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from learnscope.registry import Registry
from learnscope.trajectory.projections.autoencoder import AutoencoderProjection
from learnscope.trajectory.projections.chain import chain
from learnscope.trajectory.projections.pca import PCAProjection
from learnscope.trajectory.projections.som import SOMProjection
from learnscope.trajectory.projections.tsne import TSNEProjection
from learnscope.trajectory.projections.umap import UMAPProjection


def _autoencoder_som(random_state: int | None) -> Pipeline:
    return chain(AutoencoderProjection(n_components=32, random_state=random_state),
                 SOMProjection(random_state=random_state))


def _autoencoder_tsne(random_state: int | None) -> Pipeline:
    return chain(AutoencoderProjection(n_components=32, random_state=random_state),
                 TSNEProjection(random_state=random_state))


#: Projection names -> factories taking random_state (see :func:`make_projection`); the seed
#: project's class names are aliases. ``@PROJECTIONS.register("name")`` adds one.
PROJECTIONS: Registry[Callable[[int | None], BaseEstimator]] = Registry("projection")
PROJECTIONS.add("pca", lambda random_state: PCAProjection(random_state=random_state))
PROJECTIONS.add("autoencoder",
                lambda random_state: AutoencoderProjection(random_state=random_state))
PROJECTIONS.add("som", lambda random_state: SOMProjection(random_state=random_state),
                "SelfOrganisingMap", "SelfOrganizingMap")
PROJECTIONS.add("tsne", lambda random_state: TSNEProjection(random_state=random_state))
PROJECTIONS.add("umap", lambda random_state: UMAPProjection(random_state=random_state))
PROJECTIONS.add("autoencoder-som", _autoencoder_som, "AutoencoderWithSOM")
PROJECTIONS.add("autoencoder-tsne", _autoencoder_tsne, "AutoencoderWithTsne")


def make_projection(name: str, random_state: int | None = 0, **options: Any) -> BaseEstimator:
    """A new, unfitted projection by name.

    Names: ``pca``, ``autoencoder``, ``som``, ``tsne``, ``umap``, ``autoencoder-som`` (an
    autoencoder to 32 dimensions, then a SOM), ``autoencoder-tsne`` (the same, then t-SNE).
    The seed project's class names are accepted too (names compare without case, "-", "_"):
    ``PCA``, ``SelfOrganisingMap`` (or ``SelfOrganizingMap``), ``Autoencoder``,
    ``AutoencoderWithSOM`` / ``AutoencoderSOM``, ``AutoencoderWithTsne`` / ``AutoencoderTSNE``.

    random_state goes to every step. ``options`` set parameters of the (last) estimator, e.g.
    ``make_projection("autoencoder-som", grid=8)``; for a chain, ``"<step>__<param>"`` reaches
    an earlier step, e.g. ``autoencoderprojection__epochs=200``. An unknown name raises
    ValueError, an unknown option TypeError; both list what is valid.
    """
    key = PROJECTIONS.canonical(name)
    estimator = PROJECTIONS[key](random_state)
    if not options:
        return estimator
    last = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    valid = sorted(last.get_params(deep=False))
    plain = {k: v for k, v in options.items() if "__" not in k}
    nested = {k: v for k, v in options.items() if "__" in k}
    unknown = [k for k in plain if k not in valid]
    valid_nested: list[str] = []
    if isinstance(estimator, Pipeline):
        valid_nested = sorted(k for k in estimator.get_params(deep=True) if "__" in k)
    unknown += [k for k in nested if k not in valid_nested]
    if unknown:
        hint = f"; for an earlier step: {', '.join(valid_nested)}" if valid_nested else ""
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for projection {key!r}; "
            f"valid: {', '.join(valid)}{hint}"
        )
    last.set_params(**plain)
    if nested:
        estimator.set_params(**nested)
    return estimator
