"""Worker for tests/test_partitioned_counting.py: partitioned pattern counting, per rank.

Run with: IN_FILE (torch.save of {"models": {name: model}, "data": {name: (x, y)}, "steps": n})
OUT_DIR, by torchrun (any number of processes) or as a plain process (one). Every rank writes
under OUT_DIR/rank<r>/:
- counts/<model>/<layer>.npz: its partition of each layer's labelled counts (merge="partition");
- results.json: the measures of those counts (measures.* functions, collective), comparisons of
  the counts with those of the model after a perturbation, the rows of a Scope run of a few
  steps (ActivationPatterns, since init and last, counts saved to OUT_DIR/store.db: one file
  per partition) and of since-final comparisons, how many
  times the gather collective (all_gather_arrays) and the all-to-all ran, and, for comparison,
  the gather calls of one merge="gather" count, and the errors of a comparison that fails on the
  last rank only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import learnscope as ls
import learnscope.patterns as P
from learnscope import distributed
from learnscope.patterns import measures as M

BATCH = 16


def count_calls(name: str, calls: dict) -> None:
    """Count the calls of distributed.<name> (the reduction calls it through the module)."""
    original = getattr(distributed, name)

    def counted(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)

    setattr(distributed, name, counted)


def perturb(model: torch.nn.Module, seed: int) -> None:
    """The same change of the weights on every rank (a stand-in for a training step)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))


def single_measures(counts: P.PatternCounts) -> dict:
    values = {name: fn(counts) for name, fn in {**M.SINGLE, **M.LABELLED}.items()}
    values["label_entropy"] = M.label_entropy(counts)
    return values


def comparisons(before: P.PatternCounts, after: P.PatternCounts) -> dict:
    return {"added": M.added(before, after), "removed": M.removed(before, after),
            "jaccard": M.jaccard(before, after), "jaccard_t": M.jaccard(before, after, threshold=2),
            "weighted_jaccard": M.weighted_jaccard(before, after)}


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    context = distributed.init_from_env()
    saved = torch.load(source, weights_only=False)
    calls: dict[str, int] = {}
    for name in ("all_gather_arrays", "all_to_all_arrays"):
        count_calls(name, calls)
    folder = out / f"rank{context.rank}"
    results: dict = {"rank": context.rank, "world": context.world_size, "models": {}}
    with distributed.sharded():
        for name, model in saved["models"].items():
            data = saved["data"][name]
            counts = P.count(model, data, batch_size=BATCH, labels=True)
            for layer, c in counts.items():
                c.save(folder / "counts" / name / f"{layer}.npz")
            perturbed = _copy(model)
            perturb(perturbed, 1)
            after = P.count(perturbed, data, batch_size=BATCH, labels=True)
            results["models"][name] = {
                "partition": {layer: list(c.partition) if c.partition else None
                              for layer, c in counts.items()},
                "single": {layer: single_measures(c) for layer, c in counts.items()},
                "compared": {layer: comparisons(counts[layer], after[layer]) for layer in counts},
                "scope": scope_rows(_copy(model), data, saved["steps"], out / "store.db", name),
            }
        results["one_rank_fails"] = one_rank_fails(counts) if context.distributed else None
        results["calls_partition"] = dict(calls)
        calls.clear()
        name, model = next(iter(saved["models"].items()))
        P.count(model, saved["data"][name], batch_size=BATCH, labels=True, merge="gather")
        results["calls_gather"] = dict(calls)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))


def one_rank_fails(counts: dict) -> list[str]:
    """The error every rank gets when only the last rank's comparison fails (it compares its
    partition with another rank's): [type, message]."""
    rank, world = distributed.context().rank, distributed.context().world_size
    mine = next(iter(counts.values()))
    other = mine.restricted_to(((rank + 1) % world, world)) if rank == world - 1 else mine
    try:
        M.jaccard(mine, other)
    except Exception as error:  # noqa: BLE001 - the test checks type and message
        return [type(error).__name__, str(error)]
    return ["no error", ""]


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def scope_rows(model: torch.nn.Module, data, steps: int, store: Path, name: str) -> dict:
    """Rows of a Scope run (since init and last, counts saved in `store`) over `steps`
    perturbations, then the rows of every measured state compared with the final one."""
    probe = ls.ActivationPatterns(data, labels=True, batch_size=BATCH, jaccard_threshold=2,
                                  save_counts=True)
    rows = []
    states = []
    with ls.Scope(model, [probe], store=store, name=f"partitioned-{name}",
                  distributed=distributed.context().distributed) as scope:
        for step in range(steps):
            if step:
                perturb(model, 100 + step)
            states.append(_copy(model))
            rows += [[step, *row] for row in scope.step(step)["patterns"].rows]
        with distributed.sharded():
            final = probe.final_reference(model)
            for step, state in enumerate(states):
                rows += [[step, *row] for row in probe.since_final_rows(state, final, step)]
    return {"rows": rows}


if __name__ == "__main__":
    distributed.run_and_end(main)
