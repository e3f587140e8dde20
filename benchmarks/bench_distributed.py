"""Time one pattern measurement pass on 1, 2 and 4 CPU ranks (gloo): wall time, bytes, memory.

Network: learnscope.models.create("resnet20") (pre-activation CIFAR ResNet-20, 19 ReLU layers).
Data: N random CIFAR-shaped inputs (3x32x32, default 10,000) with 10 labels, batch 128,
BatchNorm in train mode. The pass: learnscope.patterns.count(labels=True), exact, every pattern
of every layer with its label-joint counts. Nothing else is timed.

Variants (world size x merge), each run in fresh processes per repeat, interleaved so that drift
hits all alike:
  world 1       one plain process
  world W > 1   torchrun --nproc-per-node W, gloo; batch i on rank i % W, the results merged
                inside the timing (measured on rank 0 from a barrier to the merged result)
  merge         "gather" (every rank's counted rows gathered and merged: today's path) and
                "partition" (keys routed by hash to an owner rank) when `count` accepts
                `merge=`; without it the partition variants are skipped with a note
Every rank runs with OMP_NUM_THREADS=1 and torch.set_num_threads(1), so world W uses W cores;
on a machine with fewer cores than W the ranks share cores (oversubscribed: the script says so).

Per rank it records:
  bytes sent    counted by wrapping the torch.distributed collectives learnscope calls (only
                during the timed pass), per collective: all_gather / all_gather_into_tensor:
                input nbytes x (W - 1); all_gather_object: pickled size x (W - 1); broadcast /
                broadcast_object_list: nbytes (pickled size) x (W - 1) on the source rank, 0
                elsewhere; all_reduce: nbytes x 2 (W - 1) / W (a ring all-reduce's traffic);
                all_to_all / all_to_all_single: the input chunks addressed to other ranks;
                gather / reduce: nbytes on non-destination ranks. Also the time spent inside them.
  CPU seconds   time.process_time() of the pass (all threads of the rank): on a shared machine
                wall times are dominated by other processes, CPU time much less so.
Table cells with one value per rank are medians over the repeats, rank 0 first.
  peak memory   resource.getrusage(RUSAGE_SELF).ru_maxrss (the process's lifetime high-water
                mark, model and data included) and the measurement's own peak: VmHWM after the
                timed pass (reset through /proc/self/clear_refs once model and data are built,
                before a small warm-up pass) minus VmRSS at that point (measured in the same
                place for every variant, so the warm-up's smaller peak is inside it).
The script checks that every variant gave the same counts as world 1: per layer, an order-free
checksum of the counted rows (rank 0's with gather; with partition each rank holds a disjoint
part of every layer's rows, and the parts' checksums add up to the whole's). Like
bench_patterns.py it pins glibc's malloc thresholds for the measured processes
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) unless --default-malloc is given.

    python benchmarks/bench_distributed.py [--inputs 10000] [--worlds 1,2,4] [--repeats 3]
        [--merges gather,partition] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import pickle
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

MERGES = ("gather", "partition")


class CollectiveLedger:
    """Wraps torch.distributed's collectives to count the bytes this rank sends and the time
    spent inside them, while `recording` is True."""

    def __init__(self) -> None:
        self.recording = False
        self.bytes_sent = 0
        self.seconds = 0.0
        self.calls: dict[str, int] = {}

    def install(self) -> None:
        for name, rule in self._rules().items():
            original = getattr(dist, name, None)
            if original is not None:
                setattr(dist, name, self._wrap(name, original, rule))

    def _wrap(self, name, original, rule):
        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            if not self.recording:
                return original(*args, **kwargs)
            bound = inspect.signature(original).bind(*args, **kwargs)
            bound.apply_defaults()
            self.bytes_sent += int(rule(bound.arguments, dist.get_rank(), dist.get_world_size()))
            self.calls[name] = self.calls.get(name, 0) + 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return wrapped

    @staticmethod
    def _rules() -> dict:
        def nbytes(tensor) -> int:
            return tensor.numel() * tensor.element_size()

        def pickled(objects) -> int:
            return sum(len(pickle.dumps(o)) for o in objects)

        def to_all_single(a, rank, world) -> int:
            tensor, splits = a["input"], a.get("input_split_sizes")
            if not splits:
                return nbytes(tensor) * (world - 1) // world
            row = nbytes(tensor) // max(1, tensor.shape[0])
            return sum(size * row for j, size in enumerate(splits) if j != rank)

        return {
            "all_gather": lambda a, rank, world: nbytes(a["tensor"]) * (world - 1),
            "all_gather_into_tensor": lambda a, rank, world: nbytes(a["input_tensor"])
            * (world - 1),
            "all_gather_object": lambda a, rank, world: pickled([a["obj"]]) * (world - 1),
            "broadcast": lambda a, rank, world: nbytes(a["tensor"]) * (world - 1)
            if rank == a["src"] else 0,
            "broadcast_object_list": lambda a, rank, world: pickled(a["object_list"])
            * (world - 1) if rank == a["src"] else 0,
            "all_reduce": lambda a, rank, world: nbytes(a["tensor"]) * 2 * (world - 1) // world,
            "all_to_all": lambda a, rank, world: sum(
                nbytes(t) for j, t in enumerate(a["input_tensor_list"]) if j != rank),
            "all_to_all_single": to_all_single,
            "gather": lambda a, rank, world: nbytes(a["tensor"]) if rank != a["dst"] else 0,
            "reduce": lambda a, rank, world: nbytes(a["tensor"]) if rank != a["dst"] else 0,
        }


def resident_kib(field: str) -> int:
    """VmRSS or VmHWM of this process, in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def row_checksum(counts) -> str:
    """An order-free checksum of a layer's counted rows (keys, label, count): the sum, modulo
    2**64, of a 64-bit hash of every row. Disjoint partitions of the rows add up to the whole's."""
    from learnscope.patterns.counts import hash_rows

    return str(int(hash_rows(counts.to_rows()).sum(dtype=np.uint64)))


def whole_checksums(ranks: list[dict]) -> dict[str, int]:
    """The whole counts' checksum per layer: rank 0's, or the sum over ranks of partitions."""
    if not ranks[0]["partitioned"]:
        return {layer: int(v) for layer, v in ranks[0]["checksums"].items()}
    return {layer: sum(int(r["checksums"][layer]) for r in ranks) % 2**64
            for layer in ranks[0]["checksums"]}


def supports_merge_option() -> bool:
    import learnscope as ls

    return "merge" in inspect.signature(ls.patterns.count).parameters


def worker(args: argparse.Namespace) -> None:
    """One rank of one variant: warm up, then one timed pass; writes its figures as JSON."""
    torch.set_num_threads(1)
    ledger = CollectiveLedger()
    ledger.install()
    import learnscope as ls
    from learnscope import distributed

    context = distributed.init_from_env(backend="gloo")
    torch.manual_seed(0)
    model = ls.models.create("resnet20", num_classes=10)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.inputs, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.inputs,), generator=g)
    options = {} if args.merge == "gather" and not supports_merge_option() else {
        "merge": args.merge}
    warm = (x[: 4 * args.batch_size], y[: 4 * args.batch_size])
    rss_before = resident_kib("VmRSS")  # torch, model and data: what a plain forward holds too
    peak_reset = reset_peak_rss()
    with distributed.sharded():
        ls.patterns.count(model, warm, batch_size=args.batch_size, labels=True, **options)
        distributed.barrier()
        ledger.recording = True
        start, cpu_start = time.perf_counter(), time.process_time()
        counts = ls.patterns.count(model, (x, y), batch_size=args.batch_size, labels=True,
                                   **options)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        ledger.recording = False
        pass_peak = resident_kib("VmHWM") - rss_before if peak_reset else None
    partitioned = args.merge == "partition" and context.world_size > 1
    checksums = {layer: row_checksum(c) for layer, c in counts.items()}
    result = {
        "rank": context.rank, "world": context.world_size, "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "bytes_sent": ledger.bytes_sent, "collective_seconds": ledger.seconds,
        "calls": ledger.calls, "rss_before_kib": rss_before, "pass_peak_kib": pass_peak,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "partitioned": partitioned, "checksums": checksums,
        "evaluations": sum(c.evaluations for c in counts.values()),
        "distinct": sum(c.distinct for c in counts.values()),
    }
    Path(args.out, f"rank{context.rank}.json").write_text(json.dumps(result))
    distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_variant(world: int, merge: str, args: argparse.Namespace, env: dict) -> list[dict]:
    """Launch one variant in fresh processes; every rank's figures, in rank order."""
    with tempfile.TemporaryDirectory() as folder:
        common = [__file__, "--worker", "--out", folder, "--inputs", str(args.inputs),
                  "--batch-size", str(args.batch_size), "--merge", merge]
        if world == 1:
            command = [sys.executable, *common]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                       str(world), "--master-port", str(free_port()), *common]
        job = subprocess.run(command, capture_output=True, text=True, env=env)
        if job.returncode != 0:
            raise RuntimeError(f"world {world}, merge {merge} failed:\n{job.stdout[-3000:]}\n"
                               f"{job.stderr[-6000:]}")
        return [json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(world)]


def parse_worlds(text: str) -> list[int]:
    try:
        worlds = [int(w) for w in text.split(",")]
    except ValueError:
        worlds = []
    if not worlds or min(worlds) < 1:
        raise SystemExit(f"--worlds {text!r}: give world sizes >= 1 separated by commas, e.g. "
                         "1,2,4")
    return worlds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", "--samples", dest="inputs", type=int, default=10_000,
                        help="CIFAR-shaped inputs per pass")
    parser.add_argument("--worlds", default="1,2,4", help="world sizes, comma-separated")
    parser.add_argument("--merges", default="gather,partition",
                        help="merge modes to time, comma-separated: gather, partition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's adaptive malloc thresholds (noisier timings)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--merge", default="gather", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    worlds = parse_worlds(args.worlds)
    if min(args.inputs, args.repeats, args.batch_size) < 1:
        raise SystemExit(f"--inputs {args.inputs}, --repeats {args.repeats}, --batch-size "
                         f"{args.batch_size}: each must be >= 1")
    merges = [m for m in args.merges.split(",") if m]
    unknown = sorted(set(merges) - set(MERGES))
    if unknown or not merges:
        raise SystemExit(f"--merges {args.merges!r}: unknown {unknown}; use gather, partition "
                         "or both, comma-separated")
    if "partition" in merges and not supports_merge_option():
        print("note: learnscope.patterns.count has no merge= option in this checkout "
              "(partitioned counting not merged yet): skipping merge=partition", flush=True)
        merges.remove("partition")
    if not merges:
        raise SystemExit("nothing to time: only merge=partition was asked for and it is missing")
    cores = os.cpu_count() or 1
    env = dict(os.environ, LEARNSCOPE_PROGRESS="off", OMP_NUM_THREADS="1")
    if not args.default_malloc:
        env.update(MALLOC_MMAP_THRESHOLD_=str(1 << 28), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    variants = [(w, m) for m in merges for w in worlds if not (w == 1 and m != merges[0])]
    runs: dict[tuple, list[list[dict]]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for world, merge in variants:
            ranks = run_variant(world, merge, args, env)
            runs[(world, merge)].append(ranks)
            print(f"repeat {repeat + 1}/{args.repeats} world {world} {merge}: "
                  f"{ranks[0]['seconds']:.2f} s, sent "
                  + "/".join(f"{r['bytes_sent'] / 2**20:.1f}" for r in ranks) + " MiB",
                  file=sys.stderr, flush=True)
    reference = runs[variants[0]][0][0]
    expected = whole_checksums(runs[variants[0]][0])
    same = all(whole_checksums(rep) == expected for v in variants for rep in runs[v])
    oversubscribed = [w for w in worlds if w > cores]
    print(f"device: cpu ({platform.processor() or platform.machine()}), {cores} cores, torch "
          f"{torch.__version__}, resnet20, {args.inputs:,} inputs, batch {args.batch_size}, "
          f"labels, {reference['evaluations']:,} evaluations and {reference['distinct']:,} "
          f"distinct patterns (all layers) per pass, {args.repeats} repeats, 1 thread per rank, "
          f"allocator: {'default' if args.default_malloc else 'fixed malloc thresholds'}; "
          f"identical counts in every variant and rank: {same}")
    if oversubscribed:
        print(f"oversubscribed: world {', '.join(map(str, oversubscribed))} on {cores} cores "
              "(ranks share cores; their times say nothing about scaling)")
    base = statistics.median(rep[0]["seconds"] for rep in runs[variants[0]])
    print("| world | merge | median s | min s | max s | speed-up vs world 1 | CPU s per rank | "
          "MiB sent per rank | s in collectives (rank 0) | pass peak RSS MiB per rank | "
          "ru_maxrss MiB per rank |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for world, merge in variants:
        reps = runs[(world, merge)]
        seconds = [rep[0]["seconds"] for rep in reps]

        def per_rank(field: str, scale: float, reps=reps, world=world) -> str:
            values = [statistics.median(rep[r][field] or 0 for rep in reps) for r in range(world)]
            return "/".join(f"{v / scale:.1f}" for v in values)

        median = statistics.median(seconds)
        print(f"| {world} | {merge} | {median:.2f} | {min(seconds):.2f} | {max(seconds):.2f} | "
              f"{base / median:.2f}x | {per_rank('cpu_seconds', 1)} | "
              f"{per_rank('bytes_sent', 2**20)} | "
              f"{statistics.median(rep[0]['collective_seconds'] for rep in reps):.2f} | "
              f"{per_rank('pass_peak_kib', 1024)} | {per_rank('maxrss_kib', 1024)} |")


if __name__ == "__main__":
    main()
