"""Time one measurement pass shared by 2 processes (torchrun, gloo) against 1 process.

Network: learnscope.models.create("resnet20") (pre-activation CIFAR ResNet-20, 19 ReLU layers).
Data: N random CIFAR-shaped inputs (3x32x32, default 10,000) with 10 labels, batch 128,
BatchNorm in train mode. Passes, each timed on its own:
  patterns    learnscope.patterns.count(labels=True): every pattern of every layer, exact
  separation  learnscope.separation.measure: input + 9 blocks, exact two-pass subspace method
Variants, interleaved in every repeat so drift hits all alike:
  1 process    one process, torch threads = cores
  2 processes  torchrun --nproc-per-node 2, gloo, torch threads = cores / 2 each; each rank
               passes its share of the batches (batch i on rank i % 2) and the results are
               merged (pattern counts gathered, class moments all-reduced): the time includes
               the merge, measured on rank 0 from a barrier to the merged result
Each variant runs in a fresh process (or pair) per repeat: model and data are built, one small
warm-up pass runs, then one timed pass of each kind. The script reports whether both variants
got the same result (pattern counts of every layer; largest relative difference of the
fuzziness) and prints medians and ratios as a Markdown table. The variants use different numbers
of threads, so their float32 forward passes may round differently, which can move activations
that sit at 0 and the last digits of D; tests/test_distributed.py checks exactness with equal
thread counts. Like bench_patterns.py it pins glibc's malloc thresholds for the measured
processes (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) unless --default-malloc is given.

    python benchmarks/bench_distributed.py [--repeats 3] [--samples 10000] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PASSES = ("patterns", "separation")
VARIANTS = ("1 process", "2 processes")


def worker(args: argparse.Namespace) -> None:
    """One variant's run (one rank of it under torchrun): warm up, time each pass once."""
    import learnscope as ls
    from learnscope import distributed, separation

    context = distributed.init_from_env(backend="gloo")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ls.models.create("resnet20", num_classes=10)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.samples, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.samples,), generator=g)
    warm = (x[: 4 * args.batch_size], y[: 4 * args.batch_size])
    with distributed.sharded():
        ls.patterns.count(model, warm, batch_size=args.batch_size, labels=True)
        separation.measure(model, warm, batch_size=args.batch_size)
        times = {}
        distributed.barrier()
        start = time.perf_counter()
        counts = ls.patterns.count(model, (x, y), batch_size=args.batch_size, labels=True)
        times["patterns"] = time.perf_counter() - start
        distributed.barrier()
        start = time.perf_counter()
        fuzziness = separation.measure(model, (x, y), batch_size=args.batch_size)
        times["separation"] = time.perf_counter() - start
    digest = hashlib.sha256()
    for layer, c in counts.items():
        for array in (c.keys, c.counts, c.joint_index, c.joint_labels, c.joint_counts):
            digest.update(layer.encode() + np.ascontiguousarray(array).tobytes())
    results = {"times": times, "counts": digest.hexdigest(), "fuzziness": fuzziness,
               "evaluations": sum(c.evaluations for c in counts.values()),
               "world": context.world_size, "threads": torch.get_num_threads()}
    if context.is_main:
        Path(args.out).write_text(json.dumps(results))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_variant(variant: str, args: argparse.Namespace, cores: int, env: dict) -> dict:
    """Launch one variant in fresh processes; its rank 0's results."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        processes = 1 if variant == "1 process" else 2
        common = [__file__, "--worker", "--out", str(out), "--samples", str(args.samples),
                  "--batch-size", str(args.batch_size),
                  "--threads", str(max(1, cores // processes))]
        if processes == 1:
            command = [sys.executable, *common]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                       "--master-port", str(free_port()), *common]
        job = subprocess.run(command, capture_output=True, text=True, env=env)
        if job.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{job.stdout[-3000:]}\n{job.stderr[-6000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's adaptive malloc thresholds (noisier timings)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cores = os.cpu_count() or 1
    env = dict(os.environ, LEARNSCOPE_PROGRESS="off")
    if not args.default_malloc:
        env.update(MALLOC_MMAP_THRESHOLD_=str(1 << 28), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    allocator = "default" if args.default_malloc else "fixed malloc thresholds"
    times = {(v, p): [] for v in VARIANTS for p in PASSES}
    results = {}
    for repeat in range(args.repeats):
        for variant in VARIANTS:
            result = run_variant(variant, args, cores, env)
            for name in PASSES:
                times[(variant, name)].append(result["times"][name])
            results.setdefault(variant, result)
            print(f"repeat {repeat + 1}/{args.repeats} {variant}: "
                  + ", ".join(f"{p} {result['times'][p]:.2f} s" for p in PASSES),
                  file=sys.stderr, flush=True)
    one, two = results["1 process"], results["2 processes"]
    same_counts = one["counts"] == two["counts"]
    d_one, d_two = (np.array(list(r["fuzziness"].values())) for r in (one, two))
    d_difference = float(np.max(np.abs(d_one - d_two) / np.abs(d_one)))
    print(f"device: cpu ({platform.processor() or platform.machine()}), {cores} cores, torch "
          f"{torch.__version__}, resnet20, {args.samples} inputs, batch {args.batch_size}, "
          f"{one['evaluations']:,} pattern evaluations per pass, {args.repeats} repeats, "
          f"allocator: {allocator}; threads per process: 1 process {one['threads']}, "
          f"2 processes {two['threads']}; identical pattern counts: {same_counts}, "
          f"largest relative difference of D: {d_difference:.1e}")
    print("| pass | variant | median s | min s | max s | speed-up (ratio of medians) "
          "| median of paired speed-ups |")
    print("|---|---|---|---|---|---|---|")
    for name in PASSES:
        base = times[("1 process", name)]
        for variant in VARIANTS:
            values = times[(variant, name)]
            paired = statistics.median(b / v for b, v in zip(base, values, strict=True))
            median = statistics.median(values)
            print(f"| {name} | {variant} | {median:.2f} | {min(values):.2f} "
                  f"| {max(values):.2f} | {statistics.median(base) / median:.2f}x "
                  f"| {paired:.2f}x |")


if __name__ == "__main__":
    main()
