"""Seconds per measured step of the `early` preset at small scale, and the share spent measuring.

Runs `early --scale small` (digits, measured after every update) for each net with `--steps`
updates, timing the whole run and the time inside `Scope.measure` (the measurement passes and
writing their rows). Repeats are interleaved across nets; medians are printed as Markdown.

    python benchmarks/bench_early.py [--steps 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from learnscope.experiments.presets import execute, expand
from learnscope.scope import Scope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    measuring = [0.0]
    original = Scope.measure

    def timed_measure(self, *a, **k):
        start = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            measuring[0] += time.perf_counter() - start

    Scope.measure = timed_measure
    specs = expand("early", "small", steps=args.steps)
    results: dict[str, list[tuple[float, float]]] = {s.model: [] for s in specs}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for spec in specs:
                measuring[0] = 0.0
                start = time.perf_counter()
                execute(spec, Path(folder) / f"r{repeat}.db")
                results[spec.model].append((time.perf_counter() - start, measuring[0]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} updates, "
          f"{args.steps + 1} measured steps per run, {args.repeats} repeats")
    print("| net | run s | measuring s | s per measured step | share measuring |")
    print("|---|---|---|---|---|")
    for net, values in results.items():
        total = statistics.median(v[0] for v in values)
        spent = statistics.median(v[1] for v in values)
        print(f"| {net} | {total:.1f} | {spent:.1f} | {spent / (args.steps + 1):.2f} | "
              f"{spent / total:.0%} |")


if __name__ == "__main__":
    main()
