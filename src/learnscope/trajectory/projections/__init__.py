"""Projections of weight snapshots to two dimensions, as scikit-learn estimators.

Input everywhere is a 2-D array ``X`` of shape ``(n_snapshots, n_parameters)``: one flattened
parameter vector per row (float16, float32, float64 or integer; a ``np.memmap`` works). Rows are
read in chunks of about 64 MiB and cast to float32 chunk by chunk, so a float16 or float64 input
is never copied whole to float64. Every projection is a scikit-learn transformer (``fit`` returns
``self``, ``transform``, ``fit_transform``, ``get_params`` / ``clone`` / ``Pipeline`` work, fitted
attributes end with ``_``), returns float32 arrays, and is deterministic: the same input and the
same ``random_state`` (an int, default 0) give bit-identical output on the same machine and
thread count. Global RNGs (torch, NumPy) are neither read nor changed.

Which projection when
---------------------
``"pca"`` (:class:`PCAProjection`)
    The first thing to look at. Linear, exact, seconds for 500 snapshots of 100k parameters,
    invertible, and the axes mean something (the two directions of weight space along which the
    snapshots vary most), so distances are comparable across networks and across runs.
    ``explained_variance_ratio_`` says how much of the picture two axes show; when it is small the
    nonlinear projections below may show more. ``solver="incremental"`` streams a memmap in
    batches for snapshot files larger than memory.
``"autoencoder"`` (:class:`AutoencoderProjection`)
    A nonlinear map that still generalises to new snapshots and has an inverse (decode a 2-D
    point back to weights). Needs training, early-stopped (about 2.6 s per epoch for 500
    snapshots of 100k parameters on 2 CPU cores, so minutes to tens of minutes; ``device="cuda"``
    helps), and its picture depends on hyperparameters; use when PCA's two components explain
    little.
``"som"`` (:class:`SOMProjection`)
    A self-organising map: a grid of prototype weight vectors that follows the snapshots
    (MiniSom, extra ``som``). Shows which regions of weight space the networks visit and in what
    order; coordinates are positions on the grid (topology-preserving, not metric), and the
    inverse is an interpolated prototype.
``"tsne"`` (:class:`TSNEProjection`)
    t-SNE (openTSNE, extra ``tsne``): keeps local neighbourhoods, so trajectories that pass
    through similar weights end up close; distances between far-apart groups and the global
    layout carry no meaning. Fit on all networks at once (``fit_on="all"``); new points are
    placed against the fixed map.
``"umap"`` (:class:`UMAPProjection`)
    UMAP (umap-learn, extra ``umap``): like t-SNE, with somewhat more global structure. The first
    call in a process compiles numba code (about 20 s).
``"autoencoder-som"``, ``"autoencoder-tsne"``
    The seed project's two-stage options: an autoencoder compresses to 32 dimensions first
    (which also denoises), then a SOM or t-SNE maps those to 2-D (:func:`chain`).

Use :func:`make_projection` to build one by name, :func:`project_trajectories` to project the
trajectories of several networks into one common map, and :func:`save_projection` /
:func:`load_projection` to keep a fitted projection.

One module per job: :mod:`.base` (input checks and base classes), one module per estimator
(:mod:`.pca`, :mod:`.autoencoder`, :mod:`.som`, :mod:`.tsne`, :mod:`.umap`), :mod:`.chain`,
:mod:`.registry` (names), :mod:`.common_map` (several networks) and :mod:`.io` (files).
Everything public is importable from this package.
"""

from learnscope.trajectory.projections.autoencoder import AutoencoderProjection
from learnscope.trajectory.projections.chain import chain
from learnscope.trajectory.projections.common_map import project_trajectories
from learnscope.trajectory.projections.io import load_projection, save_projection
from learnscope.trajectory.projections.pca import PCAProjection
from learnscope.trajectory.projections.registry import PROJECTIONS, make_projection
from learnscope.trajectory.projections.som import SOMProjection
from learnscope.trajectory.projections.tsne import TSNEProjection
from learnscope.trajectory.projections.umap import UMAPProjection

__all__ = [
    "PROJECTIONS",
    "AutoencoderProjection",
    "PCAProjection",
    "SOMProjection",
    "TSNEProjection",
    "UMAPProjection",
    "chain",
    "load_projection",
    "make_projection",
    "project_trajectories",
    "save_projection",
]

# Saved projections (joblib pickles) name a class by its module: keep naming this package, as
# before the split, so that files stay readable whatever module inside it holds the class.
for _estimator in (AutoencoderProjection, PCAProjection, SOMProjection, TSNEProjection,
                   UMAPProjection):
    _estimator.__module__ = __name__
del _estimator
