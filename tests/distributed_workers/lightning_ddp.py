"""Worker for tests/test_distributed.py: the Lightning callback under DDP, one run per rank pair.

Launched by torchrun with: STORE OUT_DIR. Lightning's "ddp" strategy joins the torchrun process
group (gloo on CPU); every rank gets the same LearnscopeCallback. Writes of the store are logged
per rank to OUT_DIR/writes-rank<r>.txt (as in train.py); rank 0 saves the final weights to
OUT_DIR/final.pt so the test can recount them in one process.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from train import log_writes  # the sibling worker's store-write logger

import learnscope as ls
from learnscope import distributed
from learnscope.integrations.lightning import LearnscopeCallback


class DigitsMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> None:
    store, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    x, y = ls.data.load("digits", val_fraction=0, flatten=True).train.tensors
    module = DigitsMLP()
    probe = ls.ActivationPatterns((x, y), labels=True, batch_size=256)
    callback = LearnscopeCallback([probe], schedule=ls.every(2), store=store, name="ddp-mlp")
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=6,
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    rank = trainer.global_rank
    out.mkdir(parents=True, exist_ok=True)
    (out / f"writes-rank{rank}.txt").touch()
    log_writes(out, rank)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=64))
    (out / f"run-rank{rank}.txt").write_text(str(callback.run_id))
    if trainer.is_global_zero:
        torch.save(module.net.state_dict(), out / "final.pt")


if __name__ == "__main__":
    distributed.run_and_end(main)
