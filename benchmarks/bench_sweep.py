"""Throughput of `learnscope sweep` (local backend): 1 worker x all threads vs 2 workers x half.

Workload: the `entropycurve` preset at small scale restricted to ToyNet with 1-3 blocks per
stage (toynet8, toynet14, toynet20) x seeds 0 and 1, 2 epochs each: 6 runs on digits, measured
at initialisation, after 8 and 40 updates and at the end (every activation pattern of every
layer over the 1,797 training images). The runs differ in size (toynet20 takes about twice as
long as toynet8), as the runs of a real sweep do.

Cases, interleaved in every repeat (for r in repeats: for case in cases, the order alternating
between repeats) so that drift hits both alike; each case starts from a fresh, empty store:
  1 worker     sweep(..., workers=1, threads=T): one process, T torch threads
  2 workers    sweep(..., workers=2, threads=T // 2): two processes sharing the T cores
with T = os.cpu_count() unless --threads says otherwise. The wall time covers everything a user
waits for: starting the spawned workers (each imports torch and learnscope), training,
measuring and writing the store. Reported: medians over the repeats of the wall time, runs per
minute, the median time of one run inside its worker, and the speed-up over 1 worker (ratio
of medians, and the median of the per-repeat ratios).

    python benchmarks/bench_sweep.py [--repeats 3] [--threads T] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from learnscope.experiments.presets import expand
from learnscope.experiments.sweep import sweep


def workload() -> list:
    """The fixed list of runs every case sweeps."""
    return expand("entropycurve", "small", models=["toynet"], blocks=[1, 2, 3], seeds=[0, 1],
                  epochs=2)


def run_case(workers: int, threads: int) -> dict:
    """One sweep of the workload into a fresh store; wall time and per-run times."""
    specs = workload()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        store = Path(folder) / "s.db"
        started = time.perf_counter()
        results = sweep(specs, store, workers=workers, threads=threads, device="cpu")
        wall = time.perf_counter() - started
    bad = [r for r in results if r.status != "finished"]
    if bad:
        raise RuntimeError(f"runs did not finish: {[(r.name, r.status, r.error) for r in bad]}")
    return {"wall": wall, "runs": len(specs), "run_seconds": [r.seconds for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                        help="torch threads in all (default: the CPU cores)")
    parser.add_argument("--json", type=Path, help="write the raw timings here")
    args = parser.parse_args()
    total = max(2, args.threads)
    cases = {"1 worker": (1, total), "2 workers": (2, total // 2)}
    timings: dict[str, list[dict]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        order = list(cases) if repeat % 2 == 0 else list(reversed(cases))
        for name in order:
            workers, threads = cases[name]
            timings[name].append(run_case(workers, threads))
            last = timings[name][-1]
            print(f"repeat {repeat + 1}, {name} x {threads} thread(s): {last['wall']:.1f} s",
                  flush=True)

    runs = timings["1 worker"][0]["runs"]
    base = statistics.median(t["wall"] for t in timings["1 worker"])
    print(f"\n{runs} runs (entropycurve small, toynet8/14/20 x 2 seeds, 2 epochs), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, medians of {args.repeats} interleaved repeats\n")
    print("| workers x threads | wall s | runs / min | one run in its worker, s | speed-up "
          "(ratio of medians) | speed-up (median of paired ratios) |")
    print("|---|---|---|---|---|---|")
    for name, (workers, threads) in cases.items():
        walls = [t["wall"] for t in timings[name]]
        wall = statistics.median(walls)
        per_run = statistics.median(s for t in timings[name] for s in t["run_seconds"])
        paired = statistics.median(
            one["wall"] / mine["wall"] for one, mine in zip(timings["1 worker"], timings[name],
                                                            strict=True))
        print(f"| {workers} x {threads} | {wall:.1f} | {60 * runs / wall:.2f} | {per_run:.2f} | "
              f"{base / wall:.2f} | {paired:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"cases": {k: list(v) for k, v in cases.items()},
                                         "timings": timings}, indent=1))


if __name__ == "__main__":  # the sweep's workers are spawned: they import this file as a module
    main()
