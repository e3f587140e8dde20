"""The trainer loop: a recipe, a model, data splits and a Scope; resumable at any update.

Steps count optimizer updates: the Scope is asked at step 0 (the initial network) and after every
update. The loop logs train loss / accuracy / learning rate per update and validation / test
accuracy and loss per epoch, stops a diverging run (non-finite loss) and marks it `diverged`, and
writes a checkpoint (model, optimizer, scheduler, RNG states, probe references, position in the
epoch) every `checkpoint_every` updates and at every measurement, so a killed run continues from
its last checkpoint with the same batches, the same augmentation draws and the same measurements.
The probe references it holds are small (an ActivationPatterns probe keeps the weights of its
init and last states, not their pattern counts, and counts them again on resume), so its size
does not grow with the measurement data. When the Scope's run is then marked finished (or
diverged), the checkpoint is rewritten with the final training state and without the probe
references: a finished run is reused, never resumed.
The logged rows are written to the store in one transaction per epoch and before every
checkpoint, so a killed run has every row up to its last checkpoint and logs the later ones
again as it replays them. A plain TensorDataset is indexed a batch at a time (the batches a
shuffling DataLoader would draw, without fetching samples one by one).

With `save_weights=True` the model's weights are kept at every measured step; `measure_since_final`
then measures the final network once more and compares every kept state with it, writing
`<comparison>_since_final` into the same run (the paper's Figures 3 and 4).

Launched with torchrun (the default process group initialised with several ranks, e.g. by
`learnscope.distributed.init_from_env()`), `train` trains with DistributedDataParallel: every rank
draws the same global batches as one process would (same order, same augmentation draws) and takes
a contiguous slice of each (sizes differing by at most one); the loss is scaled so the averaged
gradient is that of the whole batch, and the logged loss and accuracy are the whole batch's. Only
rank 0 writes checkpoints, weights and the store; on resume rank 0 reads the checkpoint and sends
it to the others. Give it a Scope created with `distributed=True` on every rank: the measurement
pass is then shared and exact (the single-process values). Training itself is not bit-identical
to one process: gradients are summed in another order and BatchNorm normalises each rank's slice
with that slice's statistics (its running statistics are rank 0's); a model without BatchNorm
(or dropout) takes the same steps up to float rounding.
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from learnscope import distributed
from learnscope.diagnostics import interruption_in
from learnscope.engine.batches import unwrap_model
from learnscope.engine.evaluation import evaluate
from learnscope.store import layout
from learnscope.train.recipes import Recipe

CHECKPOINT = layout.CHECKPOINT_FILE

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """How a training run ended."""

    status: str  # "finished" or "diverged"
    steps: int
    epochs_done: float
    metrics: dict[str, float]


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _save_atomic(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` so that `path` always holds a whole file, old or new.

    Written to a temporary file beside it, synced, then renamed over it; a failure (a full disk)
    removes the temporary file and leaves `path` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        interrupt = interruption_in(error)
        if interrupt is not None and interrupt is not error:
            # torch.save turns a Ctrl-C landing in its writer into a RuntimeError
            raise interrupt from error
        raise


def slim_checkpoint_when_finished(scope: Any, path: Path,
                                  final_state: Callable[[], dict[str, Any]]) -> None:
    """Once `scope`'s run is finished (or diverged), rewrite its checkpoint as `final_state()`.

    A checkpoint carries the probes' references (the weights of the init and last measured
    states) so that a killed run resumes measuring exactly; a finished run is reused, never
    resumed, so `final_state()` (the final training state, without the probes' references) is
    all it keeps. A run without a checkpoint gets none; temporary files left by killed writes
    are removed. Nothing happens while the run fails or is interrupted: it resumes from the full
    checkpoint.
    """
    def slim() -> None:
        for leftover in path.parent.glob(f"{path.name}.tmp*"):
            leftover.unlink(missing_ok=True)
        if not path.exists():  # none was written (a run too short for one): none is made
            return
        try:
            _save_atomic(final_state(), path)
        except OSError as error:
            warnings.warn(f"run {scope.run_id} is finished, but its checkpoint {path} could not "
                          f"be rewritten without the probes' references ({error}); it is not "
                          "needed any more: delete it to free the space", stacklevel=2)

    scope.when_finished(slim)


def train(
    model: nn.Module,
    train_set: Dataset,
    recipe: Recipe,
    *,
    scope: Any = None,
    val_set: Dataset | None = None,
    test_set: Dataset | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 200,
    resume: bool = False,
    save_weights: bool = False,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `model` with `recipe`, measuring through `scope` (a learnscope.Scope or None).

    Args:
        model: the model (moved to `device`); it may be wrapped by torch.compile (trained
            through the compiled forward, measured through the module it wraps); checkpoints
            and kept weights hold the inner module's state dict, without wrapper prefixes.
        train_set: training Dataset of (input, label) items (augmentation, if any, inside it).
        recipe: optimizer and schedule settings (`learnscope.train.recipes.get(name)`).
        scope: measures at step 0 and after every update when its schedule fires.
        val_set, test_set: evaluated at the end of every epoch.
        max_steps: stop after this many updates (default: recipe.epochs full epochs).
        seed: seeds initial RNG state and every epoch's batch order.
        device: where to train.
        checkpoint_dir: where to keep the checkpoint (default: the scope's run artifact folder).
        checkpoint_every: updates between checkpoints (also written at every measurement).
        resume: continue from the checkpoint in `checkpoint_dir` if there is one.
        save_weights: keep the weights at every measured step (for `measure_since_final`).
        on_step: progress callback(step, total_steps). Independently of it, the steps are
            reported to the job's progress display if one is active (learnscope.progress).
    """
    from learnscope import progress as progress_display

    device = torch.device(device)
    model.to(device)
    context = distributed.context()
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    if steps_per_epoch == 0:
        raise ValueError("the training set is empty; nothing to train on")
    total = recipe.epochs * steps_per_epoch if max_steps is None else max_steps
    recipe.check_updates(total, steps_per_epoch)
    optimizer, scheduler = recipe.build(model, steps_per_epoch)
    folder = _checkpoint_folder(scope, checkpoint_dir) if context.is_main else None
    step = 0
    checkpoint = None
    with distributed.fail_together(context.distributed):
        if resume and folder is not None and (folder / CHECKPOINT).exists():
            checkpoint = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)
    checkpoint = distributed.broadcast_object(checkpoint)  # rank 0's decision, for every rank
    if checkpoint is not None:
        step = _apply_checkpoint(checkpoint, model, optimizer, scheduler, scope)
        log.info("resumed from the checkpoint in %s at step %d", folder, step)
    else:
        if scope is not None:  # a resumed run killed before its first checkpoint starts over
            scope.restart()
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        _measure(scope, model, 0, 0.0, folder, save_weights)

    val_data, test_data = _in_memory(val_set) or val_set, _in_memory(test_set) or test_set

    def evaluate_epoch() -> dict[str, float]:
        """Validation / test loss and accuracy at the end of an epoch, logged at `step`."""
        distributed.broadcast_module_state(model, parameters=False)  # rank 0's BN statistics
        with distributed.sharded():
            evaluation = {f"val_{k}": v for k, v in evaluate(model, val_data).items()}
            evaluation.update({f"test_{k}": v for k, v in evaluate(model, test_data).items()})
        if scope is not None:
            if evaluation:
                scope.log(step, evaluation, epoch=step / steps_per_epoch, defer=True)
            scope.flush()  # the epoch's rows, in one transaction
        return evaluation

    if checkpoint is not None and 0 < step and (step % steps_per_epoch == 0 or step >= total):
        # the checkpoint of an epoch's last update is written before that epoch's evaluation:
        # a run killed in between would otherwise never log it (rewriting it is idempotent)
        evaluate_epoch()

    net = model
    if context.distributed:
        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    metrics: dict[str, float] = {}
    status = "finished"
    reporter = progress_display.current() if context.is_main else None
    run_name = (scope.name if scope is not None else None) or type(model).__name__
    task = None if reporter is None else reporter.task(f"train {run_name}", total)
    if task is not None:
        task.update(completed=step)
    net.train()
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        for inputs, labels in epoch_batches(train_set, recipe.batch_size, seed, epoch, skip):
            inputs, labels = inputs.to(device), labels.to(device)
            loss, batch_loss, accuracy = batch_objective(net, inputs, labels, context,
                                                         batchnorm=batchnorm)
            if not math.isfinite(batch_loss):
                status = "diverged"
                metrics = {"loss": batch_loss}
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]  # the rate this update uses
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_progress = step / steps_per_epoch
            metrics = {"loss": batch_loss, "accuracy": accuracy, "lr": lr}
            if scope is not None:
                scope.log(step, metrics, epoch=epoch_progress, defer=True)
            measured = _measure(scope, model, step, epoch_progress, folder, save_weights)
            if folder is not None and (measured or step % checkpoint_every == 0):
                if scope is not None:
                    scope.flush()  # every row up to the checkpoint is stored before it
                _save_checkpoint(folder / CHECKPOINT, model, optimizer, scheduler, scope, step)
                log.info("checkpoint saved at step %d: %s", step, folder / CHECKPOINT)
            if on_step is not None:
                on_step(step, total)
            if task is not None:
                task.update(completed=step)
            if step >= total or step % steps_per_epoch == 0:
                break
        if status == "diverged":
            break
        if step % steps_per_epoch == 0 or step >= total:
            metrics.update(evaluate_epoch())
    if task is not None:
        task.finish()
    if scope is not None:
        scope.flush()
    if folder is not None and scope is not None:
        slim_checkpoint_when_finished(
            scope, folder / CHECKPOINT,
            lambda: _checkpoint_state(model, optimizer, scheduler, None, step))
    if status == "diverged" and scope is not None:
        scope.finish("diverged", error=f"non-finite training loss at step {step + 1}")
    return TrainResult(status, step, step / steps_per_epoch, metrics)


def batch_objective(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                    context: distributed.Context | None = None, *, batchnorm: bool = True,
                    ) -> tuple[torch.Tensor, float, float]:
    """The loss to back-propagate for one global batch, and the batch's mean loss and accuracy.

    In one process: the mean cross-entropy of the batch. With several ranks (`net` wrapped in
    DistributedDataParallel, every rank holding the same global batch), each rank takes its
    contiguous slice and back-propagates sum-of-losses x world / batch size, so that DDP's
    average over ranks is the gradient of the whole batch's mean loss; the reported loss and
    accuracy are summed over ranks, hence the whole batch's (the same on every rank, so every
    rank agrees on a non-finite loss).
    """
    context = context or distributed.context()
    if not context.distributed:
        logits = net(inputs)
        loss = nn.functional.cross_entropy(logits, labels)
        return loss, loss.item(), (logits.argmax(1) == labels).float().mean().item()
    n = labels.shape[0]
    part = distributed.batch_slice(n, context.rank, context.world_size)
    if batchnorm and part.stop - part.start < 2:
        smallest = n // context.world_size
        raise ValueError(
            f"a training batch of {n} samples split over {context.world_size} processes leaves "
            f"{smallest} sample(s) to a process, and BatchNorm in train mode needs at least 2 "
            "per process; choose a batch size (and a training set size) whose batches, the last "
            f"one included, hold at least {2 * context.world_size} samples, or fewer processes"
        )
    logits = net(inputs[part])
    loss_sum = nn.functional.cross_entropy(logits, labels[part], reduction="sum")
    correct = (logits.argmax(1) == labels[part]).sum()
    sums = distributed.all_reduce_sum(torch.stack([loss_sum.detach().double(),
                                                   correct.double()]))
    return loss_sum * (context.world_size / n), float(sums[0]) / n, float(sums[1]) / n


def _in_memory(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (inputs, labels) tensors of a plain TensorDataset of two tensors, else None."""
    if (isinstance(data, TensorDataset) and len(data.tensors) == 2
            and type(data).__getitem__ is TensorDataset.__getitem__):
        return data.tensors
    return None


def epoch_batches(train_set: Dataset, batch_size: int, seed: int, epoch: int,
                  skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training batches of `epoch` from batch `skip` on, in the run's shuffled order.

    The order is that of `DataLoader(train_set, batch_size, shuffle=True, generator=g)` with
    `g` seeded by `seed` and `epoch`. A plain TensorDataset is indexed with each batch's
    indices at once (the same generator draws, so the same batches) instead of being fetched
    and stacked one sample at a time. Any other dataset goes through that DataLoader; the
    batches before `skip` (done before a checkpoint) are fetched, drawing augmentation
    randomness, and not returned, and the RNG state at the call is put back before batch `skip`
    is fetched, so a resumed run draws what an uninterrupted one did.
    """
    order = torch.Generator().manual_seed(seed * 100_003 + epoch)
    tensors = _in_memory(train_set)
    if tensors is not None:
        # one batch of every index: the loader's draws from `order` and its permutation
        samples = len(train_set)
        permutation = next(iter(DataLoader(range(samples), batch_size=max(1, samples),
                                           shuffle=True, generator=order)))
        for start in range(skip * batch_size, samples, batch_size):
            batch = permutation[start:start + batch_size]
            yield tensors[0][batch], tensors[1][batch]
        return
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=order)
    rng_at_checkpoint = _rng_state() if skip else None
    for index, (inputs, labels) in enumerate(loader):
        if index < skip:
            if index == skip - 1:
                _set_rng_state(rng_at_checkpoint)
            continue
        yield inputs, labels


def _checkpoint_folder(scope: Any, checkpoint_dir: str | Path | None) -> Path | None:
    if checkpoint_dir is not None:
        return Path(checkpoint_dir)
    return scope.run_folder() if scope is not None else None


def _measure(scope: Any, model: nn.Module, step: int, epoch: float, folder: Path | None,
             save_weights: bool) -> bool:
    if scope is None or not scope.schedule(step):
        return False
    scope.measure(step, epoch=epoch)
    path = scope.weights_file(step) if save_weights else None
    if path is not None:  # None on ranks other than 0
        _save_atomic(unwrap_model(model).state_dict(), path)
    return True


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, scope: Any, step: int) -> None:
    _save_atomic(_checkpoint_state(model, optimizer, scheduler, scope, step), path)


def _checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                      scope: Any, step: int) -> dict[str, Any]:
    """What a resume after `step` needs; the probes' references only with a `scope`."""
    probes = scope.probe_states() if scope is not None else {}
    return {"step": step, "model": unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(), "probes": probes}


def _apply_checkpoint(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler: Any, scope: Any) -> int:
    unwrap_model(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    if scope is not None:
        scope.load_probe_states(state["probes"])
        # steps measured after this checkpoint are measured again (same values, rows replaced),
        # so the probes' "last" reference follows the same path as in an uninterrupted run
        scope.forget_measurements_after(state["step"])
    return int(state["step"])


def measure_since_final(scope: Any, model_factory: Callable[[], nn.Module],
                        final_model: nn.Module) -> int:
    """Compare every measured state kept with `save_weights=True` with the final network.

    For each pattern probe of `scope`, counts the final network, then each kept state, and writes
    `<added|removed|jaccard|jaccard_t|weighted_jaccard>_since_final` at that state's step.
    Returns the number of states compared. With a distributed Scope it is collective: rank 0
    reads each kept state and sends it to the others, every count is shared among the ranks,
    and rank 0 writes.
    """
    from learnscope import progress as progress_display

    shared = scope.distributed
    writes = not shared or distributed.is_main()
    kept: list[tuple[int, Any]] | str = []
    if writes:
        try:
            kept = scope.saved_weights()
        except FileNotFoundError as error:
            kept = str(error)
    if shared:
        kept = distributed.broadcast_object(kept)
    if isinstance(kept, str):
        raise FileNotFoundError(kept)
    reporter = progress_display.current() if writes else None
    compared = 0
    if shared:
        distributed.broadcast_module_state(final_model)
    for probe in scope.probes:
        with distributed.sharded() if shared else nullcontext():
            final = probe.final_reference(final_model)
        if final is None:
            continue  # this probe makes no comparison with the final network
        if reporter is not None:
            done = reporter.track(kept, f"compare with final state ({probe.name})")
        else:
            done = iter(kept)
        for step, file in done:
            state = torch.load(file, map_location="cpu", weights_only=True) if writes else None
            if shared:
                state = distributed.broadcast_object(state)
            model = model_factory()
            unwrap_model(model).load_state_dict(state)  # kept without wrapper prefixes
            model.to(next(final_model.parameters()).device)
            with distributed.sharded() if shared else nullcontext():
                rows = probe.since_final_rows(model, final, step)
            if writes:
                scope.write_rows(step, probe.name, rows)
            compared += 1
    return compared
