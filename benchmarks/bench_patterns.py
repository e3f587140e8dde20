"""Time a full activation-pattern measurement pass against a plain forward pass.

Network: a ResNet-20-shaped pre-activation CIFAR net (19 ReLU layers of 16/32/64 channels).
Data: 2,048 CIFAR-shaped inputs (3x32x32), batch 128, BatchNorm in train mode (as the pass uses).
Variants, interleaved in every repeat so drift hits all alike:
  forward          plain no-grad forward pass over all batches (what a pass costs at the least)
  exact-BACKEND    learnscope.patterns.count(mode="exact", backend=BACKEND): every evaluation of
                   every layer counted; "numpy" counts on the host, "torch" on the activations'
                   device (only the final tables cross to the host)
  hashlist-BACKEND learnscope.patterns.count(mode="hashlist", backend=BACKEND): the paper's
                   fixed-size table (2**20 slots per layer)
`--backend all` (the default) times both backends, `--backend auto` the one `count` picks for the
device. Prints medians and ratios to the forward pass as a Markdown table, with the peak device
memory of each variant on CUDA.

Allocator: glibc malloc adapts its mmap/trim thresholds to what was freed before, so whether a
forward pass's big intermediate tensors cost fresh page faults depends on what ran just before it;
on this machine that alone swings a forward pass between 2.3 s and 4.5 s. The script therefore
re-runs itself with fixed thresholds (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_: the steady
state of a long training process) unless --default-malloc is given.

    python benchmarks/bench_patterns.py [--repeats 5] [--samples 2048] [--device cpu|cuda]
        [--backend all|auto|numpy|torch]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import learnscope.patterns as P
from learnscope.measurement import measurement_copy


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an option-A (subsample + zero-pad) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x))))))
        shortcut = x
        if self.stride != 1 or self.extra:
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
        return out + shortcut


class ResNet20Shape(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(PreActBlock(cin, width, stride if b == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.relu = nn.BatchNorm2d(64), nn.ReLU()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="all", choices=("all", "auto", "numpy", "torch"),
                        help="counting backend(s) to time (default: numpy and torch)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's adaptive malloc thresholds (noisier timings)")
    args = parser.parse_args()
    if not args.default_malloc and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 28),
                   MALLOC_TRIM_THRESHOLD_=str(1 << 30))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    allocator = "default" if args.default_malloc else "fixed malloc thresholds"

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ResNet20Shape().to(device)
    inputs = torch.randn(args.samples, 3, 32, 32, device=device)
    layers = sum(isinstance(m, nn.ReLU) for m in model.modules())

    def forward() -> None:
        frozen = measurement_copy(model, "train")
        with torch.no_grad():
            for start in range(0, args.samples, args.batch_size):
                frozen(inputs[start : start + args.batch_size])

    def measurement(mode: str, backend: str):
        def run() -> None:
            P.count(model, inputs, batch_size=args.batch_size, mode=mode, backend=backend)

        return run

    backends = ("numpy", "torch") if args.backend == "all" else (args.backend,)
    variants = {"forward": forward}
    for mode in ("exact", "hashlist"):
        for backend in backends:
            variants[f"{mode}-{backend}"] = measurement(mode, backend)
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0), torch.cuda.max_memory_allocated())

    counts = P.count(model, inputs, batch_size=args.batch_size)
    evaluations = sum(c.evaluations for c in counts.values())
    base = statistics.median(times["forward"])
    where = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {args.samples} inputs, batch {args.batch_size}, "
          f"{layers} ReLU layers, {evaluations:,} evaluations counted, {args.repeats} repeats, "
          f"allocator: {allocator}")
    memory = " peak device MiB |" if peaks else ""
    print("| variant | median s | min s | max s | ratio of medians | median of paired ratios |"
          + memory)
    print("|---|---|---|---|---|---|" + ("---|" if peaks else ""))
    for name, values in times.items():
        median = statistics.median(values)
        paired = statistics.median(v / f for v, f in zip(values, times["forward"], strict=True))
        peak = f" {peaks[name] / 2**20:.0f} |" if peaks else ""
        print(f"| {name} | {median:.3f} | {min(values):.3f} | {max(values):.3f} | "
              f"{median / base:.2f}x | {paired:.2f}x |" + peak)


if __name__ == "__main__":
    main()
