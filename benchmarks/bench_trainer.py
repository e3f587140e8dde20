"""Trainer overhead: a plain PyTorch loop vs `train()` vs `train()` + Scope vs a preset's execute().

Workload: one run of the `equisep` preset at small scale (depth 2: an input block and two
Linear-BN-ReLU blocks of width 100 on digits, 1,000 training images, batch 128, Adam at 1e-3,
30 epochs = 240 updates; separation measured at epochs 0, 10, 20, 30). Every variant trains a
freshly built copy of the same network, with the same optimizer and lr schedule, over the same
data, batch size and number of updates:

  plain          a plain PyTorch loop (randperm per epoch, slice the tensors, forward, loss,
                 backward, optimizer and scheduler step); nothing else
  train          learnscope.train.trainer.train(...) without a Scope (test set evaluated per
                 epoch, as the preset does; checkpoints need a Scope or a folder: none here)
  train+scope    train(...) with the preset's Scope (Separation probe, its schedule, a store in
                 a temporary folder; per-update train rows, per-epoch test rows, checkpoints)
  execute        learnscope.experiments.presets.execute(spec, fresh store): the whole preset
                 run end to end (data loading, model, store, training, measuring, finishing)

Each repeat runs in a fresh child process (imports and one untimed warm-up pass of every
variant first), then times --rounds rounds of every variant, in an order rotated between
rounds and repeats. With
several --src folders (learnscope source trees, e.g. the main branch's src and this one's) the
children alternate between them, so drift of a shared machine hits both alike. Reported: the
median milliseconds per update of each variant over all rounds, and its ratio to the plain
loop (ratio of medians, and the median of the per-round ratios), in wall time and in CPU time
of the process (which waiting for a core shared with other jobs does not inflate).

    python benchmarks/bench_trainer.py [--repeats 5] [--rounds 3] [--threads 1] [--src PATH ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("plain", "train", "train+scope", "execute")


def workload():
    """The RunSpec every variant trains."""
    from learnscope.experiments.presets import expand

    return expand("equisep", "small", depths=[2], optimizers=["adam"])[1]  # adam, lr 1e-3


def _setup(spec):
    import math

    import torch

    import learnscope as ls
    from learnscope.train import recipes

    splits = ls.data.load(spec.dataset, seed=spec.seed, **spec.data_options)
    recipe = recipes.get(spec.recipe, **spec.recipe_options)

    def build():
        torch.manual_seed(spec.seed)
        return ls.models.create(spec.model, num_classes=splits.num_classes,
                                in_features=math.prod(splits.input_shape), **spec.model_options)

    return splits, recipe, build


def run_variant(variant: str, spec, folder: Path, tag: str) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (this process) the variant took, and the updates made."""
    import torch
    from torch import nn

    import learnscope as ls
    from learnscope.experiments.presets import _make_probe, execute
    from learnscope.train import parse
    from learnscope.train.trainer import train

    if variant == "execute":
        start, cpu = time.perf_counter(), time.process_time()
        _, status = execute(spec, folder / f"{tag}.db")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if status != "finished":
            raise RuntimeError(f"the preset run ended {status}")
        with ls.store.open(folder / f"{tag}.db", read_only=True) as store:
            return seconds, cpu, int(store.runs()["last_step"].iloc[-1])
    splits, recipe, build = _setup(spec)
    model = build()
    steps_per_epoch = -(-len(splits.train) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    if variant == "plain":
        inputs, labels = splits.train.tensors
        optimizer, scheduler = recipe.build(model, steps_per_epoch)
        start, cpu = time.perf_counter(), time.process_time()
        model.train()
        for epoch in range(recipe.epochs):
            order = torch.randperm(len(labels),
                                   generator=torch.Generator().manual_seed(spec.seed + epoch))
            for first in range(0, len(labels), recipe.batch_size):
                index = order[first:first + recipe.batch_size]
                loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
        return time.perf_counter() - start, time.process_time() - cpu, total
    scope = None
    start, cpu = time.perf_counter(), time.process_time()
    if variant == "train+scope":
        probe = _make_probe(spec, splits.measure)
        scope = ls.Scope(model, [probe], parse(spec.schedule), folder / f"{tag}.db",
                         name=spec.name, total_steps=total, steps_per_epoch=steps_per_epoch)
    result = train(model, splits.train, recipe, scope=scope, val_set=splits.val,
                   test_set=splits.test, seed=spec.seed)
    if scope is not None:
        scope.finish(result.status)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.status != "finished":
        raise RuntimeError(f"train() ended {result.status}")
    return seconds, cpu, result.steps


def child(args: argparse.Namespace) -> None:
    """One repeat: warm up every variant, then time each once; JSON on standard output."""
    import torch

    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    os.environ["LEARNSCOPE_PROGRESS"] = "off"
    spec = workload()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as folder:
        for variant in VARIANTS:
            run_variant(variant, spec, Path(folder), f"warm-{variant}")
        for index in range(args.rounds):
            shift = (args.rotate + index) % len(VARIANTS)
            timings = {}
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                seconds, cpu, updates = run_variant(variant, spec, Path(folder),
                                                    f"timed-{index}-{variant}")
                timings[variant] = {"seconds": seconds, "cpu": cpu, "updates": updates}
            rounds.append(timings)
    import learnscope

    json.dump({"rounds": rounds, "learnscope": learnscope.__file__,
               "threads": torch.get_num_threads(), "torch": torch.__version__}, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per repeat")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--src", action="append", type=Path,
                        help="a learnscope source folder (put first on PYTHONPATH); repeat to "
                        "compare trees (default: the learnscope this Python imports)")
    parser.add_argument("--json", type=Path, help="write the raw timings here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rotate", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sources = [str(s.resolve()) for s in args.src] if args.src else [None]
    results: dict[str, list[dict]] = {str(s): [] for s in sources}
    for repeat in range(args.repeats):
        for source in sources if repeat % 2 == 0 else list(reversed(sources)):
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
                   "LEARNSCOPE_PROGRESS": "off"}
            if source is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    [source, *filter(None, [os.environ.get("PYTHONPATH")])])
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--threads", str(args.threads),
                 "--rounds", str(args.rounds), "--rotate", str(repeat)], env=env, check=True,
                capture_output=True, text=True).stdout
            record = json.loads(out)
            results[str(source)].append(record)
            for timings in record["rounds"]:
                line = ", ".join(f"{v} {t['seconds'] * 1e3 / t['updates']:.2f}"
                                 for v, t in timings.items())
                print(f"repeat {repeat + 1}, {record['learnscope']}: ms per update: {line}",
                      flush=True)

    first = next(iter(results.values()))[0]
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{first['torch']}, {first['threads']} thread(s), medians of {args.repeats} "
          f"repeats x {args.rounds} rounds (a fresh process per repeat, interleaved)\n")
    for clock in ("seconds", "cpu"):
        print(f"\n{'wall' if clock == 'seconds' else 'CPU (this process)'} time\n")
        print("| learnscope | variant | ms per update | ratio to plain (of medians) | "
              "ratio to plain (median of paired) |")
        print("|---|---|---|---|---|")
        for records in results.values():
            source = str(Path(records[0]["learnscope"]).parent.parent)  # the src imported
            rounds = [timings for record in records for timings in record["rounds"]]
            per_update = {v: [t[v][clock] * 1e3 / t[v]["updates"] for t in rounds]
                          for v in VARIANTS}
            base = statistics.median(per_update["plain"])
            for variant in VARIANTS:
                value = statistics.median(per_update[variant])
                paired = statistics.median(
                    mine / plain for mine, plain in zip(per_update[variant],
                                                        per_update["plain"], strict=True))
                print(f"| {source} | {variant} | {value:.2f} | {value / base:.2f}x | "
                      f"{paired:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
