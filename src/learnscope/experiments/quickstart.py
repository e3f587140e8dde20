"""The quickstart: a small ReLU MLP and a small ReLU conv net on the embedded digits dataset.

Both train for a few epochs with Adam; every `every_k` steps (and at the last step) the
ActivationPatterns probe counts every pattern of every layer over the whole training set, with
labels, so entropy, turnover and pattern-label mutual information are all recorded.

Under torchrun (`torchrun --nproc-per-node 2 -m learnscope.cli run quickstart`) the ranks join a
gloo process group, train with DistributedDataParallel (each rank a slice of every batch) and
share every measurement pass; rank 0 alone writes the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import learnscope as ls
from learnscope import data as datasets
from learnscope import distributed, models
from learnscope.train.trainer import batch_objective

NETS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: models.create("mlp", in_features=64, hidden=(64, 48, 32), num_classes=10),
    "cnn": lambda: models.create("small_cnn", in_channels=1, channels=(16, 32), num_classes=10),
}


@dataclass
class QuickstartRun:
    """What one quickstart network produced."""

    net: str
    run_id: str | None
    test_accuracy: float
    probe: ls.ActivationPatterns
    results: dict = field(default_factory=dict)


def _accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inputs, labels = dataset.tensors
        accuracy = (model(inputs).argmax(1) == labels).float().mean().item()
    model.train(was_training)
    return accuracy


def run_quickstart(
    store: str | Path | None,
    *,
    epochs: int = 8,
    every_k: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    nets: tuple[str, ...] = ("mlp", "cnn"),
    on_step: Callable[[str, int, int], None] | None = None,
) -> list[QuickstartRun]:
    """Train the quickstart nets, measuring every `every_k` steps; one store run per net.

    Args:
        store: store path (None keeps results in memory only).
        epochs: training epochs per net.
        every_k: measure every k steps (and at step 0 and the last step).
        batch_size: training batch size.
        seed: seed of initialisation and batch order.
        nets: which of "mlp", "cnn" to train.
        on_step: progress callback(net, step, total_steps).
    """
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        raise ValueError(f"unknown quickstart net(s) {unknown}; available: {sorted(NETS)}")
    if epochs < 1 or every_k < 1:
        raise ValueError(f"epochs and every_k must be >= 1, got {epochs} and {every_k}")
    context = distributed.init_from_env(backend="gloo")
    splits = datasets.load("digits", val_fraction=0)  # the whole training split, no validation
    train, test = splits.train, splits.test
    steps_per_epoch = -(-len(train) // batch_size)
    total = epochs * steps_per_epoch
    outcome = []
    for net in nets:
        torch.manual_seed(seed)
        model = NETS[net]()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loader = DataLoader(
            train, batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        probe = ls.ActivationPatterns(train.tensors, labels=True, batch_size=512)
        config = {"net": net, "dataset": "digits", "epochs": epochs, "batch_size": batch_size,
                  "optimizer": "adam", "lr": 3e-3, "seed": seed, "every": every_k}
        with ls.Scope(
            model, [probe], ls.every(every_k) | ls.end(), store,
            name=f"quickstart-{net}", experiment="quickstart", config=config, total_steps=total,
            steps_per_epoch=steps_per_epoch, distributed=context.distributed,
        ) as scope:
            step = 0  # optimizer updates done: step 0 measures the initial network
            scope.step(step, epoch=0)
            wrapped = nn.parallel.DistributedDataParallel(model) if context.distributed else model
            batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                            for m in model.modules())
            for epoch in range(epochs):
                wrapped.train()
                for inputs, labels in loader:
                    loss, batch_loss, _ = batch_objective(wrapped, inputs, labels, context,
                                                          batchnorm=batchnorm)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    step += 1
                    scope.log(step, {"loss": batch_loss}, epoch=epoch)
                    scope.step(step, epoch=epoch)
                    if on_step is not None:
                        on_step(net, step, total)
                scope.log(step, {"test_accuracy": _accuracy(model, test)}, epoch=epoch)
            accuracy = _accuracy(model, test)
        outcome.append(QuickstartRun(net, scope.run_id, accuracy, probe, scope.results))
    return outcome
