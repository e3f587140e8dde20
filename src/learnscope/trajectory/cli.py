"""The trajectory commands live in :mod:`learnscope.cli.trajectories`; this old path re-exports
them."""

from learnscope.cli.trajectories import project_command, run_trajectories, show_map

__all__ = ["project_command", "run_trajectories", "show_map"]
