"""Worker for tests/test_wrapped_models.py: a sharded measurement of a saved model wrapped by
DistributedDataParallel (and by torch.compile around that), per rank.

Launched by torchrun with: IN_FILE (torch.save of {"model", "x", "y"}) OUT_DIR. Every rank
writes under OUT_DIR/rank<r>/: the pattern counts (with labels) of DDP(model) and of
torch.compile(DDP(model)) as .npz files, and the separation and weight rows, as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

import learnscope as ls
from learnscope import distributed, separation

BATCH = 16


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    context = distributed.init_from_env(backend="gloo")
    assert context.world_size == 2, context
    torch.set_num_threads(1)
    saved = torch.load(source, weights_only=False)
    ddp = nn.parallel.DistributedDataParallel(saved["model"])
    data = (saved["x"], saved["y"])
    folder = out / f"rank{context.rank}"
    results: dict = {}
    with distributed.sharded():
        for kind, wrapped in (("ddp", ddp), ("compiled_ddp", torch.compile(ddp))):
            counts = ls.patterns.count(wrapped, data, batch_size=BATCH, labels=True,
                                       merge="gather")  # every rank: the whole counts
            for layer, c in counts.items():
                c.save(folder / kind / f"{layer}.npz")
            results[f"{kind}_layers"] = list(counts)
        for layer, c in ls.patterns.count(ddp, data, batch_size=BATCH, labels=True).items():
            c.save(folder / "ddp-partitioned" / f"{layer}.npz")  # this rank's partition
        results["separation"] = separation.measure(ddp, data, batch_size=BATCH)
        results["weights"] = ls.Weights(first_layers=2).measure(ddp, 0).rows
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    distributed.run_and_end(main)  # as learnscope's CLI does: tear down, then exit
