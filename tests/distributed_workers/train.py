"""Worker for tests/test_distributed.py: a preset run shared by two ranks, through execute().

Launched by torchrun with: STORE OUT_DIR SPEC_JSON. Every call of the store's writing methods is
logged per rank to OUT_DIR/writes-rank<r>.txt, so the test can check that only rank 0 writes.
With LEARNSCOPE_TEST_FAIL_AT=<step>, rank 1 raises right after that update. With
LEARNSCOPE_TEST_TRAIN_MLP=1 it also trains an MLP without BatchNorm with train() and no Scope,
and rank 0 saves its final weights to OUT_DIR/mlp.pt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from learnscope import distributed
from learnscope.experiments.presets import RunSpec, execute
from learnscope.store.db import Store

WRITERS = ("create_run", "claim_run", "update_run", "release_run", "set_status",
           "write_measurement")


def log_writes(out: Path, rank: int) -> None:
    """Wrap the store's writing methods so every call is appended to this rank's log."""
    log = out / f"writes-rank{rank}.txt"
    for name in WRITERS:
        original = getattr(Store, name)

        def logged(self, *args, _original=original, _name=name, **kwargs):
            with open(log, "a") as handle:
                handle.write(f"{_name}\n")
            return _original(self, *args, **kwargs)

        setattr(Store, name, logged)


def main() -> None:
    store, out, spec = sys.argv[1], Path(sys.argv[2]), RunSpec(**json.loads(sys.argv[3]))
    torch.set_num_threads(1)
    context = distributed.init_from_env()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"writes-rank{context.rank}.txt").touch()
    (out / f"pid-rank{context.rank}.txt").write_text(str(os.getpid()))
    log_writes(out, context.rank)
    fail_at = int(os.environ.get("LEARNSCOPE_TEST_FAIL_AT", "-1"))

    def on_step(step: int, total: int) -> None:
        if context.rank == 1 and step == fail_at:
            raise RuntimeError(f"injected failure on rank 1 after update {step}")

    run_id, status = execute(spec, store, on_step=on_step)
    (out / f"status-rank{context.rank}.txt").write_text(f"{run_id} {status}")
    if os.environ.get("LEARNSCOPE_TEST_TRAIN_MLP"):
        train_mlp(out, context)


def train_mlp(out: Path, context: distributed.Context) -> None:
    """Six updates of an MLP without BatchNorm: the test compares with one process."""
    import learnscope as ls
    from learnscope.train import recipes
    from learnscope.train.trainer import train

    splits = ls.data.load("digits", normalize=True, val_fraction=0.0, flatten=True)
    torch.manual_seed(3)
    model = ls.models.create("mlp", in_features=64, num_classes=10)
    recipe = recipes.get("multistep", batch_size=100)
    train(model, splits.train, recipe, max_steps=6, seed=3)
    if context.is_main:
        torch.save(model.state_dict(), out / "mlp.pt")


if __name__ == "__main__":
    distributed.run_and_end(main)  # as learnscope's CLI does: tear down, then exit
