"""Worker for tests/test_distributed.py: one sharded measurement of a saved model, per rank.

Launched by torchrun with: IN_FILE (torch.save of {"model", "x", "y", "tiny_x", "tiny_y",
"nan_x"}) OUT_DIR BACKEND. Every rank writes what it measured under OUT_DIR/rank<r>/:
pattern counts (exact and hash-list, with labels, merged by gathering; exact counts merged by
partition, each rank's own part) as .npz files, separation values, scores, and the errors of a
pass in which one rank's batch holds NaN.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import learnscope.patterns as P
from learnscope import distributed, separation
from learnscope.measurement import evaluate

BATCH = 16


def main() -> None:
    source, out, backend = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    context = distributed.init_from_env(backend=backend)
    assert context.world_size == 2 and context.backend == backend, context
    torch.set_num_threads(1)
    saved = torch.load(source, weights_only=False)
    device = torch.device("cuda") if backend == "nccl" else torch.device("cpu")
    model = saved["model"].to(device)
    data = (saved["x"], saved["y"])
    folder = out / f"rank{context.rank}"
    results: dict = {"rank": context.rank}
    with distributed.sharded() as shard:
        results["shard"] = [shard.rank, shard.world]
        for mode in ("exact", "hashlist"):  # gathered: every rank gets the whole counts
            counts = P.count(model, data, batch_size=BATCH, labels=True, mode=mode,
                             table_size=4096, merge="gather")
            for layer, c in counts.items():
                c.save(folder / mode / f"{layer}.npz")
            results[f"{mode}_layers"] = list(counts)
        partitioned = P.count(model, data, batch_size=BATCH, labels=True)  # the default
        for layer, c in partitioned.items():
            c.save(folder / "partitioned" / f"{layer}.npz")
        tiny = P.count(model, (saved["tiny_x"], saved["tiny_y"]), batch_size=BATCH, labels=True,
                       merge="gather")
        for layer, c in tiny.items():
            c.save(folder / "tiny" / f"{layer}.npz")
        tiny = P.count(model, (saved["tiny_x"], saved["tiny_y"]), batch_size=BATCH, labels=True)
        for layer, c in tiny.items():
            c.save(folder / "tiny-partitioned" / f"{layer}.npz")
        for method in ("moments", "subspace"):
            results[f"separation_{method}"] = separation.measure(
                model, data, batch_size=BATCH, method=method)
        results["scores"] = evaluate(model, data, batch_size=BATCH)
        try:
            P.count(model, saved["nan_x"], batch_size=BATCH)
            results["nan_error"] = None
        except Exception as error:  # noqa: BLE001 - the test checks type and message
            results["nan_error"] = [type(error).__name__, str(error)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    distributed.run_and_end(main)  # as learnscope's CLI does: tear down, then exit
