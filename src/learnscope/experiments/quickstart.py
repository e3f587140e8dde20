"""The quickstart: a small ReLU MLP and a small ReLU conv net on the embedded digits dataset.

Both train for a few epochs with Adam; every `every_k` steps (and at the last step) the
ActivationPatterns probe counts every pattern of every layer over the whole training set, with
labels, so entropy, turnover and pattern-label mutual information are all recorded.

Each network is one run, identified like a preset's (learnscope.experiments.identity): a run
finished with the same settings is reused, an interrupted one (Ctrl-C, a kill) resumes from its
last checkpoint (written at every measurement, beside the run's artifacts) with the same batches,
so its results equal an uninterrupted run's; other settings start a new run. Once a run is
finished its checkpoint keeps the final weights and optimizer state, without the probe's
references.

Under torchrun (`torchrun --nproc-per-node 2 -m learnscope.cli run quickstart`) the ranks join a
gloo process group, train with DistributedDataParallel (each rank a slice of every batch) and
share every measurement pass; rank 0 alone claims the runs and writes the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import learnscope as ls
from learnscope import data as datasets
from learnscope import distributed, models
from learnscope.train.trainer import _save_atomic, batch_objective, slim_checkpoint_when_finished

#: Quickstart settings not given to run_quickstart (part of every quickstart run's identity).
DATASET = "digits"
OPTIMIZER = "adam"
LR = 3e-3
CHECKPOINT = "quickstart-checkpoint.pt"

NETS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: models.create("mlp", in_features=64, hidden=(64, 48, 32), num_classes=10),
    "cnn": lambda: models.create("small_cnn", in_channels=1, channels=(16, 32), num_classes=10),
}


@dataclass
class QuickstartRun:
    """What one quickstart network produced.

    status: "finished" (trained now), "skipped" (reused: finished earlier with the same
    settings; probe and results are then empty) or "busy" (another live process trains it).
    """

    net: str
    run_id: str | None
    test_accuracy: float
    probe: ls.ActivationPatterns
    results: dict = field(default_factory=dict)
    status: str = "finished"


def _accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inputs, labels = dataset.tensors
        accuracy = (model(inputs).argmax(1) == labels).float().mean().item()
    model.train(was_training)
    return accuracy


def quickstart_identity(net: str, *, epochs: int = 8, every_k: int = 10, batch_size: int = 64,
                        seed: int = 0) -> dict[str, Any]:
    """The identity (fingerprinted settings) of the quickstart run of `net`."""
    from learnscope.experiments.identity import with_version

    return with_version({"net": net, "dataset": DATASET, "epochs": epochs,
                         "batch_size": batch_size, "optimizer": OPTIMIZER, "lr": LR,
                         "seed": seed, "every": every_k})


def plan_quickstart(store: str | Path, *, epochs: int = 8, every_k: int = 10,
                    batch_size: int = 64, seed: int = 0, nets: tuple[str, ...] = tuple(NETS),
                    rerun: bool = False) -> list[tuple[str, Any]]:
    """What run_quickstart would do with each net now: (net, RunClaim) pairs; writes nothing."""
    from learnscope.experiments.identity import fingerprint
    from learnscope.store.db import NO_RUN_REASON, RunClaim

    planned = []
    path = Path(store).expanduser()
    opened = ls.store.open(path, read_only=True) if path.exists() else None
    try:
        for net in nets:
            identity = quickstart_identity(net, epochs=epochs, every_k=every_k,
                                           batch_size=batch_size, seed=seed)
            name = f"quickstart-{net}"
            planned.append((net, opened.plan_run(name, fingerprint(identity), identity,
                                                 rerun=rerun) if opened is not None
                            else RunClaim("new", name, reason=NO_RUN_REASON)))
    finally:
        if opened is not None:
            opened.close()
    return planned


def _stored_accuracy(store: str | Path, run_id: str) -> float:
    with ls.store.open(store, read_only=True) as s:
        latest = s.latest(run_id)
    found = latest[latest["measure"] == "test_accuracy"]["value"]
    return float(found.iloc[-1]) if len(found) else float("nan")


def run_quickstart(
    store: str | Path | None,
    *,
    epochs: int = 8,
    every_k: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    nets: tuple[str, ...] = ("mlp", "cnn"),
    on_step: Callable[[str, int, int], None] | None = None,
    rerun: bool = False,
    notify: Callable[[str], None] | None = None,
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
        rerun: train afresh even when a run with the same settings finished in the store.
        notify: receives one line about a net another process trains (skipped), or why a new
            run is started.
    """
    from learnscope.store.db import NO_RUN_REASON

    unknown = [n for n in nets if n not in NETS]
    if unknown:
        raise ValueError(f"unknown quickstart net(s) {unknown}; available: {sorted(NETS)}")
    if epochs < 1 or every_k < 1:
        raise ValueError(f"epochs and every_k must be >= 1, got {epochs} and {every_k}")
    context = distributed.init_from_env(backend="gloo")
    splits = datasets.load(DATASET, val_fraction=0)  # the whole training split, no validation
    train, test = splits.train, splits.test
    steps_per_epoch = -(-len(train) // batch_size)
    total = epochs * steps_per_epoch
    outcome = []
    for net in nets:
        identity = quickstart_identity(net, epochs=epochs, every_k=every_k,
                                       batch_size=batch_size, seed=seed)
        decision = _claim(store, net, identity, total, context, rerun)
        probe = ls.ActivationPatterns(train.tensors, labels=True, batch_size=512)
        if decision is not None and decision.action in ("reuse", "busy"):
            if decision.action == "busy" and notify is not None:
                from learnscope.experiments.identity import busy_message

                notify(busy_message(decision))
            accuracy = _stored_accuracy(store, decision.run_id) \
                if decision.action == "reuse" else float("nan")
            status = "skipped" if decision.action == "reuse" else "busy"
            outcome.append(QuickstartRun(net, decision.run_id, accuracy, probe, {}, status))
            continue
        if (decision is not None and decision.action == "new" and notify is not None
                and decision.reason != NO_RUN_REASON):
            notify(f"{decision.name}: new run ({decision.reason})")
        scope, accuracy = _train_net(net, store, decision, identity, probe, train, test,
                                     epochs=epochs, every_k=every_k, batch_size=batch_size,
                                     seed=seed, context=context, on_step=on_step)
        outcome.append(QuickstartRun(net, scope.run_id, accuracy, probe, scope.results))
    return outcome


def _claim(store: str | Path | None, net: str, identity: dict[str, Any], total: int,
           context: distributed.Context, rerun: bool) -> Any:
    """Rank 0 claims the run of `net` (None without a store); every rank gets its RunClaim."""
    from learnscope.experiments.identity import claim

    if store is None:
        return None
    decision = None
    with distributed.fail_together(context.distributed):
        if context.is_main:
            with ls.store.open(store) as s:
                decision = claim(s, f"quickstart-{net}", identity, {"user": identity},
                                 experiment="quickstart", total_steps=total, rerun=rerun)
    return distributed.broadcast_object(decision)


def _train_net(net: str, store: str | Path | None, decision: Any, identity: dict[str, Any],
               probe: ls.ActivationPatterns, train: TensorDataset, test: TensorDataset, *,
               epochs: int, every_k: int, batch_size: int, seed: int,
               context: distributed.Context,
               on_step: Callable[[str, int, int], None] | None) -> tuple[ls.Scope, float]:
    """Train (or resume) one net under its claimed run; (its Scope, final test accuracy)."""
    steps_per_epoch = -(-len(train) // batch_size)
    total = epochs * steps_per_epoch
    torch.manual_seed(seed)
    model = NETS[net]()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(
        train, batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    with ls.Scope(
        model, [probe], ls.every(every_k) | ls.end(), store,
        name=decision.name if decision is not None else f"quickstart-{net}",
        experiment="quickstart", config={**identity, "net": net}, total_steps=total,
        steps_per_epoch=steps_per_epoch, distributed=context.distributed,
        resume=decision.run_id if decision is not None else None,
    ) as scope:
        folder = scope.run_folder()  # None without a store and on ranks other than 0
        done = 0  # optimizer updates done: step 0 measures the initial network
        if decision is not None and decision.action == "resume":
            done = _resume(folder, model, optimizer, scope, context)
        if done == 0:
            scope.step(0, epoch=0)
        wrapped = nn.parallel.DistributedDataParallel(model) if context.distributed else model
        batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        step = 0
        for epoch in range(epochs):
            wrapped.train()
            for inputs, labels in loader:  # batches before the checkpoint: drawn, not trained
                if step < done:
                    step += 1
                    continue
                loss, batch_loss, _ = batch_objective(wrapped, inputs, labels, context,
                                                      batchnorm=batchnorm)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                scope.log(step, {"loss": batch_loss}, epoch=epoch)
                if scope.step(step, epoch=epoch) is not None and folder is not None:
                    _save_atomic(_checkpoint_state(step, model, optimizer, scope),
                                 folder / CHECKPOINT)
                if on_step is not None:
                    on_step(net, step, total)
            if step > done or step == done > 0:  # this epoch ended here (or at the checkpoint)
                scope.log(step, {"test_accuracy": _accuracy(model, test)}, epoch=epoch)
        accuracy = _accuracy(model, test)
        if folder is not None:  # once the run is finished, without the probes' references
            slim_checkpoint_when_finished(scope, folder / CHECKPOINT,
                                          lambda: _checkpoint_state(step, model, optimizer))
    return scope, accuracy


def _checkpoint_state(step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                      scope: ls.Scope | None = None) -> dict[str, Any]:
    """What a resume needs after `step`: weights, optimizer state and (with `scope`) the probes'
    references."""
    probes = scope.probe_states() if scope is not None else {}
    return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "probes": probes}


def _resume(folder: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
            scope: ls.Scope, context: distributed.Context) -> int:
    """Load the run's last checkpoint (rank 0, shared with the others); the step it holds.

    Without one (killed before its first measurement) the run starts over: 0.
    """
    state = None
    with distributed.fail_together(context.distributed):
        if folder is not None and (folder / CHECKPOINT).exists():
            state = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)
    state = distributed.broadcast_object(state)
    if state is None:  # the probes' references restored from the store belong to that start
        scope.restart()
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scope.load_probe_states(state["probes"])
    scope.forget_measurements_after(state["step"])  # measured again after it: same values
    return int(state["step"])
