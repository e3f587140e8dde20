"""Weight-space trajectories: parameter snapshots of several networks and their 2-D projections.

- `Weights`: the probe (snapshots every measured step, with train / test scores), see
  `learnscope.trajectory.probe`; snapshots are read back with `Store.snapshots(run, trajectory)`.
- `learnscope.trajectory.projections`: PCA, autoencoder, SOM, t-SNE, UMAP and chains, as
  scikit-learn estimators; `project_trajectories(projection, arrays, fit_on="all"|"first")`.
- `learnscope.trajectory.maps`: the drawable result (TrajectoryMap, score landscapes), saved
  with a map run; figures in `learnscope.viz.trajectories`.
- The experiment (scratch vs pre-trained): `learnscope.experiments.trajectories`.

See docs/trajectories.md.
"""

from .probe import Weights, weight_layers

__all__ = ["Weights", "weight_layers"]
