"""Weight-space trajectories: parameter snapshots of several networks and their 2-D projections."""
