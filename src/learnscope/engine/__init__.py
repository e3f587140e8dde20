"""The measurement engine: one pass for every probe, accumulators, and their reduction.

- `batches`: the data in fixed batches, sharding, the frozen model copy, RNG restore, and
  `unwrap_model` (the module inside torch.compile / DDP / DataParallel, which is measured);
- `passes`: `run_pass(model, taps, state, update)`, `Taps`, `Batch`, `PassState`;
- `accumulators`: `Accumulator` (pure `merge`, a declared `Reduction`), `Sum`;
- `reduction`: every cross-process reduction, in one place and one order;
- `evaluation`: `evaluate(model, data)`, loss and accuracy;
- `observers`: where passes report progress (imports nothing).

Names are loaded on first use, so `learnscope.engine.observers` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Accumulator": "accumulators", "Reduction": "accumulators", "Sum": "accumulators",
    "EmptyDatasetError": "batches", "MeasurementData": "batches", "Shard": "batches",
    "iter_batches": "batches", "measurement_copy": "batches", "preserved_rng": "batches",
    "unwrap_model": "batches",
    "Batch": "passes", "PassState": "passes", "Taps": "passes", "run_pass": "passes",
    "reduce_across_ranks": "reduction", "evaluate": "evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'learnscope.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"learnscope.engine.{_EXPORTS[name]}"), name)
