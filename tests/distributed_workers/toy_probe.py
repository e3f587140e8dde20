"""Worker for tests/test_toy_probe.py: the toy probe of docs/architecture.md under torchrun.

Launched by torchrun with: SNIPPET (the probe's source, extracted from the docs by the test)
IN_FILE (torch.save of {"model", "x"}) OUT_DIR. Every rank measures the saved model with a
distributed Scope (no store) and writes its result rows to OUT_DIR/rank<r>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import learnscope as ls
from learnscope import distributed


def main() -> None:
    snippet, source, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    context = distributed.init_from_env(backend="gloo")
    torch.set_num_threads(1)
    namespace: dict = {}
    exec(compile(snippet.read_text(), str(snippet), "exec"), namespace)
    saved = torch.load(source, weights_only=False)
    probe = namespace["MeanActivation"](saved["x"], layer="1", batch_size=16)
    scope = ls.Scope(saved["model"], [probe], store=None, name="toy", distributed=True)
    rows = scope.measure(0)["mean_activation"].rows
    scope.finish()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{context.rank}.json").write_text(json.dumps(
        {"rows": rows, "world": context.world_size}))


if __name__ == "__main__":
    distributed.run_and_end(main)
