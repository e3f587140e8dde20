"""Weight-space trajectories: parameter snapshots of several networks and their 2-D projections.

- `Weights`: the probe (snapshots every measured step, with train / test scores), see
  `learnscope.trajectory.probe`; snapshots are read back with `Store.snapshots(run, trajectory)`.
"""

from .probe import Weights, weight_layers

__all__ = ["Weights", "weight_layers"]
