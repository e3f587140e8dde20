"""Time a full activation-pattern measurement pass against a plain forward pass.

Network: learnscope.models.create("resnet20") (pre-activation CIFAR ResNet-20: 19 ReLU layers,
7 of 16, 6 of 32 and 6 of 64 channels). Data: N random CIFAR-shaped inputs (3x32x32, default
2,048), batch 128, BatchNorm in train mode (as the pass uses). Variants, interleaved in every
repeat so drift hits all alike:
  forward          plain no-grad forward pass over all batches (what a pass costs at the least)
  exact-BACKEND    learnscope.patterns.count(mode="exact", backend=BACKEND): every evaluation of
                   every layer counted; "numpy" counts on the host, "torch" on the activations'
                   device (only the final tables cross to the host)
  hashlist-BACKEND learnscope.patterns.count(mode="hashlist", backend=BACKEND): a fixed-size
                   table of --table-size counters per layer (splitmix64 hash of the packed key)
  paper-hashlist   the paper's Algorithm 1 as its published code runs it (`PaperHashLists`
                   below): per layer a table of int32 counters on the activations' device; per
                   batch the unit states (relu(sign(z)) as bool) are summed into int64 numbers
                   (64 units each, unit i weighs 2**i except the 64th of a full word, which weighs
                   -1 because int64 has no 2**63), hashed (h = 37; h = (number * 76963) ^
                   (h * 54059) per number, wrapping int64), taken mod the table size, counted into
                   a fresh zeroed table with index_add_ and added to the layer's running table;
                   at the end each layer's occupied slots, entropy and largest count are computed
                   on the device. Tables of --paper-table-size counters (default 1,048,573, the
                   largest prime below 2**20: the paper's sizes are not powers of two, and with a
                   power of two its multiply-xor hash keeps only the low bits of every number, so
                   a 32-unit layer's slot would depend on its first 20 units only), or the sizes
                   the paper's code gives ResNet-20 with --paper-table-sizes (8e8 counters,
                   3.2 GB in all).
`--backend all` (the default) times both backends, `--backend auto` the one `count` picks for the
device. Prints medians and ratios to the forward pass as a Markdown table (wall time, and the
process's CPU time, all threads: on a shared machine less disturbed by other processes than wall
time, though it also counts spinning threads), and the peak memory of
each variant, measured in a fresh process per variant (one pass): on the CPU the peak RSS above
the RSS once model and inputs are built (VmHWM, reset through /proc/self/clear_refs), on CUDA
torch.cuda.max_memory_allocated above the memory allocated before the pass.

Before timing, the paper variant is checked on one batch against learnscope's exact counts: the
table it filled must equal the table computed independently (NumPy, uint64) from the exact
patterns with the paper's packing and hash; the script also prints, per layer width, how many
distinct patterns there are, how many distinct numbers the paper's packing makes of them (the
-1 weight merges patterns of 64-unit words), and the occupied slots of both hash lists.

Allocator: glibc malloc adapts its mmap/trim thresholds to what was freed before, so whether a
forward pass's big intermediate tensors cost fresh page faults depends on what ran just before it;
on this machine that alone swings a forward pass between 2.3 s and 4.5 s. The script therefore
re-runs itself with fixed thresholds (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_: the steady
state of a long training process) unless --default-malloc is given.

    python benchmarks/bench_patterns.py [--device cpu|cuda] [--inputs 2048] [--repeats 3]
        [--backend all|auto|numpy|torch] [--table-size 1048576]
        [--paper-table-size 1048573 | --paper-table-sizes] [--check-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import learnscope as ls
import learnscope.patterns as P
from learnscope.measurement import measurement_copy

# the paper's hash: h = FIRST, then h = (number * MULTIPLIER) ^ (h * STEP) for each int64 number
PAPER_FIRST, PAPER_STEP, PAPER_MULTIPLIER = 37, 54059, 76963
# the share of an 8e8-counter budget the paper's code gives each of ResNet-20's 19 ReLU layers
# (5e8 counters x 1.6, split in proportion to these factors), in forward order
PAPER_RESNET20_FACTORS = (0.75, 1, 1, 1, 1, 1, 1, 120, 150, 150, 150, 160, 150, 50, 50, 50, 50,
                          50, 50)
PAPER_COUNTER_BUDGET = 5e8 * 1.6


def paper_table_sizes(layers: int) -> list[int]:
    if layers != len(PAPER_RESNET20_FACTORS):
        raise SystemExit(f"--paper-table-sizes: the paper's sizes are for ResNet-20's "
                         f"{len(PAPER_RESNET20_FACTORS)} ReLU layers, this model has {layers}; "
                         "drop the option to use --paper-table-size for every layer")
    total = sum(PAPER_RESNET20_FACTORS)
    return [int(f / total * PAPER_COUNTER_BUDGET) for f in PAPER_RESNET20_FACTORS]


def paper_numbers(z: torch.Tensor) -> torch.Tensor:
    """(n, d, *positions) activation inputs -> (n, words, *positions) int64, as the paper packs."""
    on = torch.relu(torch.sign(z)).to(torch.bool)
    numbers = []
    for first in range(0, on.shape[1], 64):
        block = on[:, first : first + 64]
        weights = 2 ** torch.arange(block.shape[1], device=z.device, dtype=torch.int64)
        if block.shape[1] == 64:
            weights[-1] = -1
        weights = weights.view(1, -1, *([1] * (on.dim() - 2)))
        numbers.append((block * weights).sum(1))
    return torch.stack(numbers, dim=1)


def paper_hash(numbers: torch.Tensor) -> torch.Tensor:
    """(n, words, *positions) int64 -> (n, *positions) int64 hashes (multiplications wrap)."""
    numbers = numbers * PAPER_MULTIPLIER
    h = torch.full_like(numbers[:, 0], PAPER_FIRST)
    for word in range(numbers.shape[1]):
        h = numbers[:, word] ^ (h * PAPER_STEP)
    return h


class PaperHashLists:
    """The paper's Algorithm 1, run as its code runs it, over a frozen copy of `model`.

    Args:
        model: the network; every nn.ReLU is counted (forward pre-hooks see its input).
        table_sizes: counters per layer, in forward order of the ReLU modules.
    """

    def __init__(self, model: nn.Module, table_sizes: list[int]) -> None:
        self.model = model
        self.table_sizes = table_sizes

    def tables(self, inputs: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Each layer's int32 counter table after counting every batch of `inputs`."""
        frozen = measurement_copy(self.model, "train")
        relus = [(n, m) for n, m in frozen.named_modules() if isinstance(m, nn.ReLU)]
        tables: dict[str, torch.Tensor] = {}
        hooks = []
        for (name, module), size in zip(relus, self.table_sizes, strict=True):
            def count(module, args, name=name, size=size) -> None:
                slots = paper_hash(paper_numbers(args[0])) % size
                batch = torch.zeros(size, dtype=torch.int32, device=slots.device)
                ones = torch.ones(1, dtype=torch.int32, device=slots.device)
                batch.index_add_(0, slots.view(-1), ones.expand(slots.numel()))
                if name in tables:
                    tables[name] += batch
                else:
                    tables[name] = batch

            hooks.append(module.register_forward_pre_hook(count))
        try:
            with torch.no_grad():
                for start in range(0, inputs.shape[0], batch_size):
                    frozen(inputs[start : start + batch_size])
        finally:
            for hook in hooks:
                hook.remove()
        return tables

    def measure(self, inputs: torch.Tensor, batch_size: int) -> dict[str, tuple[int, float, int]]:
        """Per layer (occupied slots, entropy in bits, largest count), computed on the device."""
        results = {}
        for name, table in self.tables(inputs, batch_size).items():
            occupied = table[table != 0].double()
            p = occupied / occupied.sum()
            results[name] = (occupied.numel(), float(-(p * torch.log2(p)).sum()),
                             int(occupied.max()))
        return results


def expected_paper_table(counts: P.PatternCounts, size: int) -> tuple[np.ndarray, int]:
    """The paper's table for exactly counted patterns, computed independently with NumPy uint64
    arithmetic; and the number of distinct numbers the paper's packing makes of the patterns."""
    states = P.unpack(counts.keys, counts.layout).astype(np.uint64)
    words = []
    for first in range(0, counts.width, 64):
        block = states[:, first : first + 64]
        number = np.zeros(block.shape[0], dtype=np.uint64)
        for unit in range(min(block.shape[1], 63)):
            number |= block[:, unit] << np.uint64(unit)
        if block.shape[1] == 64:
            number -= block[:, 63]  # weight -1, wrapping like int64
        words.append(number)
    words = np.stack(words, axis=1)
    packed_distinct = np.unique(words, axis=0).shape[0]
    with np.errstate(over="ignore"):
        words = words * np.uint64(PAPER_MULTIPLIER)
        h = np.full(words.shape[0], PAPER_FIRST, dtype=np.uint64)
        for word in range(words.shape[1]):
            h = words[:, word] ^ (h * np.uint64(PAPER_STEP))
    slots = np.mod(h.view(np.int64), size)
    table = np.zeros(size, dtype=np.int64)
    np.add.at(table, slots, counts.counts)
    return table, packed_distinct


def check_paper_algorithm(model: nn.Module, inputs: torch.Tensor, table_sizes: list[int],
                          table_size: int) -> str:
    """Fail unless PaperHashLists fills exactly the tables derived from learnscope's exact
    counts; a summary line of how the hash lists differ from exact counting, per width
    (learnscope's hash list with `table_size` counters per layer)."""
    exact = P.count(model, inputs, batch_size=inputs.shape[0])
    paper = PaperHashLists(model, table_sizes).tables(inputs, inputs.shape[0])
    ours = P.count(model, inputs, batch_size=inputs.shape[0], mode="hashlist",
                   table_size=table_size)
    if list(paper) != list(exact):
        raise AssertionError(f"layers differ: paper {list(paper)}, learnscope {list(exact)}")
    summary: dict[int, list[int]] = {}
    for (name, counts), size in zip(exact.items(), table_sizes, strict=True):
        expected, packed_distinct = expected_paper_table(counts, size)
        if not np.array_equal(paper[name].cpu().numpy().astype(np.int64), expected):
            raise AssertionError(f"{name}: the paper-algorithm table differs from the one derived "
                                 "from learnscope's exact counts")
        row = summary.setdefault(counts.width, [0, 0, 0, 0, 0])
        for i, value in enumerate((1, counts.distinct, packed_distinct,
                                   int((paper[name] != 0).sum()), ours[name].distinct)):
            row[i] += value
    return "; ".join(
        f"width {width} ({n} layers): exact distinct {d:,}, after the paper's packing {pd:,}, "
        f"paper slots {ps:,}, learnscope hash-list slots {ls_:,}"
        for width, (n, d, pd, ps, ls_) in sorted(summary.items()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def build(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.device]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ls.models.create("resnet20", num_classes=10).to(device)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(args.inputs, 3, 32, 32, generator=g).to(device)
    return model, inputs, device


def variants(model: nn.Module, inputs: torch.Tensor, args: argparse.Namespace,
             table_sizes: list[int]) -> dict[str, Callable[[], object]]:
    def forward() -> None:
        frozen = measurement_copy(model, "train")
        with torch.no_grad():
            for start in range(0, args.inputs, args.batch_size):
                frozen(inputs[start : start + args.batch_size])

    def measurement(mode: str, backend: str):
        return lambda: P.count(model, inputs, batch_size=args.batch_size, mode=mode,
                               backend=backend, table_size=args.table_size)

    backends = ("numpy", "torch") if args.backend == "all" else (args.backend,)
    chosen: dict[str, Callable[[], object]] = {"forward": forward}
    for mode in ("exact", "hashlist"):
        for backend in backends:
            chosen[f"{mode}-{backend}"] = measurement(mode, backend)
    paper = PaperHashLists(model, table_sizes)
    chosen["paper-hashlist"] = lambda: paper.measure(inputs, args.batch_size)
    return chosen


def peak_memory_of(name: str, args: argparse.Namespace) -> None:
    """Run variant `name` once in this (fresh) process; print its peak memory as JSON."""
    model, inputs, device = build(args)
    fn = variants(model, inputs, args, table_sizes_for(model, args))[name]
    sync(device)
    before_rss = resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    before_device = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before_device = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    peak = {"rss_mib": (resident_kib("VmHWM") - before_rss) / 1024}
    if device.type == "cuda":
        peak["device_mib"] = (torch.cuda.max_memory_allocated(device) - before_device) / 2**20
    print(json.dumps(peak))


def table_sizes_for(model: nn.Module, args: argparse.Namespace) -> list[int]:
    layers = sum(isinstance(m, nn.ReLU) for m in model.modules())
    if args.paper_table_sizes:
        return paper_table_sizes(layers)
    return [args.paper_table_size] * layers


def check_device(text: str) -> None:
    if text != "cpu" and not text.startswith("cuda"):
        raise SystemExit(f"--device {text!r}: use cpu or cuda (cuda:N for another GPU)")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {text}: torch {torch.__version__} sees no CUDA device here "
                         f"(torch.cuda.is_available() is False); run on a machine with a GPU "
                         "and a CUDA build of torch, or use --device cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--inputs", "--samples", dest="inputs", type=int, default=2048,
                        help="CIFAR-shaped inputs per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backend", default="all", choices=("all", "auto", "numpy", "torch"),
                        help="counting backend(s) to time (default: numpy and torch)")
    parser.add_argument("--table-size", type=int, default=P.counts.DEFAULT_TABLE_SIZE,
                        help="counters per layer of learnscope's hash list (default 2**20)")
    parser.add_argument("--paper-table-size", type=int, default=1_048_573,
                        help="counters per layer of the paper's hash list (default 1,048,573, "
                             "the largest prime below 2**20)")
    parser.add_argument("--paper-table-sizes", action="store_true",
                        help="give the paper's hash list the per-layer sizes of the paper's code "
                             "(8e8 int32 counters: 3.2 GB, and as much again per batch)")
    parser.add_argument("--skip-check", action="store_true",
                        help="skip checking the paper's algorithm against exact counts")
    parser.add_argument("--check-only", action="store_true",
                        help="only check the paper's algorithm against exact counts")
    parser.add_argument("--skip-memory", action="store_true",
                        help="skip the per-variant peak-memory runs (fresh processes)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's adaptive malloc thresholds (noisier timings)")
    parser.add_argument("--peak-memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(args.device)
    if min(args.inputs, args.batch_size, args.repeats, args.table_size,
           args.paper_table_size) < 1:
        raise SystemExit("--inputs, --batch-size, --repeats, --table-size and "
                         "--paper-table-size must be >= 1")
    if not args.default_malloc and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 28),
                   MALLOC_TRIM_THRESHOLD_=str(1 << 30))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.peak_memory_of:
        peak_memory_of(args.peak_memory_of, args)
        return
    allocator = "default" if args.default_malloc else "fixed malloc thresholds"

    model, inputs, device = build(args)
    table_sizes = table_sizes_for(model, args)
    if not args.skip_check:
        print("check of the paper's algorithm (one batch): passed; "
              + check_paper_algorithm(model, inputs[: args.batch_size], table_sizes,
                                      args.table_size), flush=True)
    if args.check_only:
        return
    chosen = variants(model, inputs, args, table_sizes)
    for fn in chosen.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in chosen}
    cpu_times: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name, fn in chosen.items():
            sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)

    peaks: dict[str, dict] = {}
    if not args.skip_memory:
        for name in chosen:
            job = subprocess.run([sys.executable, *sys.argv, "--peak-memory-of", name],
                                 capture_output=True, text=True, check=True)
            peaks[name] = json.loads(job.stdout.strip().splitlines()[-1])

    counts = P.count(model, inputs, batch_size=args.batch_size)
    evaluations = sum(c.evaluations for c in counts.values())
    distinct = sum(c.distinct for c in counts.values())
    base = statistics.median(times["forward"])
    on_cuda = device.type == "cuda"
    where = torch.cuda.get_device_name(device) if on_cuda else platform.processor() or "cpu"
    paper_sizes = ("the paper's per-layer sizes" if args.paper_table_sizes
                   else f"{args.paper_table_size:,}")
    sizes = f"learnscope {args.table_size:,} per layer, paper {paper_sizes}"
    print(f"device: {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, resnet20, {args.inputs:,} inputs, batch {args.batch_size}, "
          f"{len(counts)} ReLU layers, {evaluations:,} evaluations and {distinct:,} distinct "
          f"patterns per pass, {args.repeats} repeats, hash-list tables {sizes}, "
          f"allocator: {allocator}")
    memory = ""
    if peaks:
        memory = " peak device MiB | peak RSS MiB |" if on_cuda else " peak RSS MiB |"
    print("| variant | median s | min s | max s | ratio of medians | median of paired ratios | "
          "median CPU s | CPU ratio |" + memory)
    print("|---|---|---|---|---|---|---|---|" + "---|" * memory.count("|"))
    cpu_base = statistics.median(cpu_times["forward"])
    for name, values in times.items():
        median = statistics.median(values)
        paired = statistics.median(v / f for v, f in zip(values, times["forward"], strict=True))
        peak = ""
        if peaks:
            device_peak = f" {peaks[name]['device_mib']:.0f} |" if on_cuda else ""
            peak = f"{device_peak} {peaks[name]['rss_mib']:.0f} |"
        cpu = statistics.median(cpu_times[name])
        print(f"| {name} | {median:.3f} | {min(values):.3f} | {max(values):.3f} | "
              f"{median / base:.2f}x | {paired:.2f}x | {cpu:.3f} | {cpu / cpu_base:.2f}x |"
              + peak)


if __name__ == "__main__":
    main()
