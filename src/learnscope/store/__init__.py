"""Embedded SQLite run store for learnscope.

>>> import learnscope.store as store_mod
>>> with store_mod.open("runs/learnscope.db") as s:          # doctest: +SKIP
...     run_id = s.create_run("mlp", {"lr": 0.1}, total_steps=100)
...     s.write_measurement(run_id, 0, 0, "patterns", [("fc1", 0, "n_patterns", 12.0)])
...     s.set_status(run_id, "finished")
...     s.metrics(run_id)

See :mod:`learnscope.store.db` for the concurrency, durability and NaN conventions.
"""

from .db import BUSY_TIMEOUT_S, JOURNAL_ENV, JOURNAL_MODES, RUN_STATUSES, Store, StoreError, open
from .snapshots import SnapshotSeries

__all__ = [
    "BUSY_TIMEOUT_S", "JOURNAL_ENV", "JOURNAL_MODES", "RUN_STATUSES", "SnapshotSeries", "Store",
    "StoreError", "open",
]
