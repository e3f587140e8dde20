"""Weight-space trajectories: parameter snapshots of several networks and their 2-D projections.

- `Weights`: the probe (snapshots every measured step, with train / test scores), see
  `learnscope.trajectory.weights_probe`; snapshots are read back with
  `Store.snapshots(run, trajectory)`.
- `learnscope.trajectory.projections`: PCA, autoencoder, SOM, t-SNE, UMAP and chains, as
  scikit-learn estimators; `project_trajectories(projection, arrays, fit_on="all"|"first")`.
- `learnscope.trajectory.maps`: the drawable result (TrajectoryMap, score landscapes), saved
  with a map run; figures in `learnscope.viz.trajectories`.
- The experiment (scratch vs pre-trained): `learnscope.experiments.trajectories`.

See docs/trajectories.md.

`Weights` and `weight_layers` are imported on first use (PEP 562): reading a stored map
(`learnscope.trajectory.maps`, the dashboard) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .weights_probe import Weights, weight_layers

__all__ = ["Weights", "weight_layers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import probe

        return getattr(probe, name)
    raise AttributeError(f"module 'learnscope.trajectory' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
