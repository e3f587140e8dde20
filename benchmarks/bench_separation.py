"""Time one separation measurement (learnscope.separation.measure) and its peak memory.

Cases, interleaved in every repeat so drift hits all alike, medians reported:
  mlp18        registry mlp, 18 hidden Linear-BN-ReLU layers of width 100, 1,000 samples of 100
               features, 10 classes: 19 feature points (input + 18), per-class p x p moments
  resnet20     resnet20 on N CIFAR-shaped random inputs (3x32x32), 10 classes: input (3,072) and
               9 blocks (16,384 / 8,192 / 4,096 features), exact two-pass subspace method
  forward      resnet20: one plain no-grad forward pass over the same batches (the floor)
  mlp18-pca    mlp18 with max_dim=20 (PCA of each 100-wide layer on its top 20 directions)
max_dim on resnet20 is left out: it needs per-class p x p moments (10 x 2 GiB for the 16,384-wide
blocks); the default subspace method is exact without it.
Peak memory: each case is run once more in a fresh process (--only) that reports the growth of
its peak RSS (VmHWM) during the case.

    python benchmarks/bench_separation.py [--repeats 3] [--samples 10000] [--only CASE]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import learnscope as ls
from learnscope.measurement import measurement_copy
from learnscope.separation import measure


def cases(samples: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x_mlp, y_mlp = torch.randn(1000, 100, generator=g), torch.arange(1000) % 10
    torch.manual_seed(0)
    mlp = ls.models.create("mlp", in_features=100, hidden=[100] * 18, num_classes=10,
                           batchnorm=True)
    x_img = torch.randn(samples, 3, 32, 32, generator=g)
    y_img = torch.arange(samples) % 10
    resnet = ls.models.create("resnet20", num_classes=10)

    def forward() -> None:
        frozen = measurement_copy(resnet, "train")
        with torch.no_grad():
            for start in range(0, samples, 256):
                frozen(x_img[start:start + 256])

    return {
        "mlp18": lambda: measure(mlp, (x_mlp, y_mlp), batch_size=250),
        "forward": forward,
        "resnet20": lambda: measure(resnet, (x_img, y_img), batch_size=256),
        "mlp18-pca": lambda: measure(mlp, (x_mlp, y_mlp), batch_size=250, max_dim=20),
    }


def max_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--only", default=None, help="run one case once, print its peak memory")
    args = parser.parse_args()
    todo = cases(args.samples)
    if args.only:
        before = max_rss_mib()
        start = time.perf_counter()
        todo[args.only]()
        print(f"{time.perf_counter() - start:.2f} {max_rss_mib() - before:.0f}", flush=True)
        return
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(args.repeats):
        for name, run in todo.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, N={args.samples}, "
          f"{args.repeats} interleaved repeats")
    print("| case | median s | min s | peak RSS growth MiB (fresh process) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        out = subprocess.run([sys.executable, __file__, "--only", name, "--samples",
                              str(args.samples)], capture_output=True, text=True, check=True)
        memory = out.stdout.split()[-1]
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {memory} |")


if __name__ == "__main__":
    main()
