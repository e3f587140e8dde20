"""PyTorch Lightning: measure a LightningModule while `Trainer.fit` trains it.

    import learnscope as ls
    from learnscope.integrations.lightning import LearnscopeCallback

    probe = ls.ActivationPatterns(train_x_y, labels=True)        # an un-augmented training view
    callback = LearnscopeCallback([probe], schedule=ls.every(50) | ls.end(),
                                  store="runs/learnscope.db", name="mlp-lightning")
    trainer = L.Trainer(max_epochs=10, callbacks=[callback])
    trainer.fit(module, train_loader)
    callback.run_id                                              # the run in the store

Steps follow learnscope's convention: step s is the network after s optimizer updates, which is
Lightning's `trainer.global_step` (it counts optimizer steps, so with
`accumulate_grad_batches=k` one step is k batches). Step 0, the initial network, is measured
before the first update when the schedule includes it.

Imports `lightning.pytorch`, or the older `pytorch_lightning` package when that is the one
installed; with neither, importing this module raises ImportError naming the extra
(`pip install 'learnscope[lightning]'`).
"""

from __future__ import annotations

import math
import operator
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import lightning.pytorch as pl
except ImportError as _lightning_error:
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError(
            "learnscope.integrations.lightning needs PyTorch Lightning, which could not be "
            f"imported ({_lightning_error}): pip install 'learnscope[lightning]'"
        ) from _lightning_error

from learnscope.probe import Probe
from learnscope.schedules import Schedule
from learnscope.scope import DEFAULT_STORE, Scope
from learnscope.store import Store

__all__ = ["LearnscopeCallback"]


class LearnscopeCallback(pl.Callback):
    """Drives a learnscope `Scope` from a Lightning training loop.

    The Scope is created when training starts (`on_train_start`, once the training data and
    any checkpoint are loaded) around the LightningModule, or the submodule chosen with
    `module`. It measures step 0 before the first update and calls `scope.step(global_step)`
    after every optimizer update (batches that only accumulate gradients are not steps). The run
    is marked `finished` when `fit` ends and `failed` when it raises (Ctrl-C included).

    Under DDP (`strategy="ddp"`, several processes, e.g. launched by torchrun) every process
    creates the Scope with `distributed=True`: each measurement pass is shared among the
    processes as `Scope`'s is (each counts its share of the batches, results merged exactly), and
    only the global-zero process creates the run and writes. Every process must therefore get
    the same callback (same probes, data and schedule), as Lightning's DDP launch gives it.

    The run's `total_steps` is `trainer.estimated_stepping_batches` (so `ls.end()` fires at the
    last update of a run that is not stopped early) and `steps_per_epoch` is the number of
    updates per epoch, ceil(num_training_batches / accumulate_grad_batches), for epoch-based
    schedules. Epochs are stored as completed fractions: epoch e + (batch + 1) / batches.

    Args:
        probes: probe instances, e.g. `[ls.ActivationPatterns(train_x_y)]`.
        schedule: when to measure (default: every update).
        store: store path, an open `Store`, or None to keep results in memory
            (`callback.scope.results`).
        name, experiment, config: as in `Scope`. The stored config also records the module's
            `hparams` (under "hparams") and the trainer settings (under "lightning") unless
            `config` has those keys.
        log_metrics: also log per update, under probe "train" (layer "model"), `loss` (the mean
            training-step loss of the update's batches) and `lr` (the learning rate of the first
            optimizer's first parameter group used by the update).
        module: what to measure: None for the LightningModule itself (its `forward` is used),
            an attribute path such as "net" or "backbone.encoder", or a function of the
            LightningModule returning an `nn.Module`.
        resume: id (or name) of an unfinished run to continue.

    Resuming: the run id is saved in Lightning checkpoints (the callback's state), so
    `trainer.fit(module, ckpt_path=...)` with a new LearnscopeCallback continues the same run:
    steps after the checkpoint's step are measured again (replacing values written before an
    interruption) and nothing is measured twice. Every probe's references are rebuilt by the
    Scope from what the store kept of its measurements up to the checkpoint's step
    (`Scope.rewind`): a Weights probe's first and previous snapshots; with `save_counts=True`
    the pattern probes' init/last counts, without it the resumed part's `*_since_init` /
    `*_since_last` comparisons are NaN. An explicit `resume=` wins over the checkpoint's run.
    """

    def __init__(
        self,
        probes: Sequence[Probe],
        schedule: Schedule | None = None,
        store: str | Path | Store | None = DEFAULT_STORE,
        *,
        name: str = "run",
        experiment: str | None = None,
        config: Mapping[str, Any] | None = None,
        log_metrics: bool = True,
        module: str | Callable[[Any], nn.Module] | None = None,
        resume: str | None = None,
    ) -> None:
        super().__init__()
        probes = list(probes)
        if not probes:
            raise ValueError(
                "LearnscopeCallback needs at least one probe, e.g. [ls.ActivationPatterns(data)]"
            )
        if module is not None and not isinstance(module, str) and not callable(module):
            raise TypeError(
                f"module must be None, an attribute path or a function, got {module!r}"
            )
        self.probes = probes
        self.schedule = schedule
        self.store = store
        self.name = name
        self.experiment = experiment
        self.config = dict(config) if config is not None else None
        self.log_metrics = log_metrics
        self.module = module
        self.scope: Scope | None = None
        self.run_id: str | None = None
        self._resume = resume
        self._last_step: int | None = None
        self._losses: list[float] = []
        self._lr: float | None = None

    # ------------------------------------------------------------------ checkpoint state

    @property
    def state_key(self) -> str:
        """Unique per run name, so several callbacks can keep their runs in one checkpoint."""
        return self._generate_state_key(name=self.name)

    def state_dict(self) -> dict[str, Any]:
        """The run id, saved in Lightning checkpoints so that resuming continues the run."""
        return {"run_id": self.run_id} if self.run_id is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the checkpoint's run (unless `resume=` was given)."""
        if self._resume is None and state_dict.get("run_id"):
            self._resume = str(state_dict["run_id"])

    # ------------------------------------------------------------------ hooks

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Create the Scope (new run or resumed) and measure the initial network (step 0)."""
        shared = _shares_measurements(trainer)
        if not shared and not trainer.is_global_zero:
            return  # several processes without a process group: global zero measures alone
        resume, self._resume = self._resume, None
        self.scope = Scope(
            self._target(pl_module),
            self.probes,
            self.schedule,
            self.store,
            name=self.name,
            config=self._config(trainer, pl_module),
            experiment=self.experiment,
            total_steps=_total_steps(trainer),
            steps_per_epoch=_updates_per_epoch(trainer),
            resume=resume,
            distributed=shared,
        )
        self.run_id = self.scope.run_id
        step = trainer.global_step
        if resume is not None:
            self._rewind(step)
        self._last_step = step
        self._losses.clear()
        self._lr = None
        if step == 0:
            self.scope.step(0, epoch=0.0)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """Remember the learning rate this update uses (schedulers step before batch end)."""
        if self.scope is None or self._lr is not None:
            return
        groups = getattr(optimizer, "param_groups", None)
        if groups:
            self._lr = float(groups[0]["lr"])

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """After an optimizer update: log loss / lr and measure if the schedule fires."""
        scope = self.scope
        if scope is None or scope.status != "running":
            return
        if self.log_metrics:
            loss = _batch_loss(outputs, trainer, pl_module)
            if loss is not None:
                self._losses.append(loss)
        step = trainer.global_step
        if step == self._last_step:
            return  # gradient accumulation: no update in this batch
        self._last_step = step
        epoch = _epoch(trainer, batch_idx)
        if self.log_metrics:
            values: dict[str, float] = {}
            if self._losses:
                values["loss"] = sum(self._losses) / len(self._losses)
            if self._lr is not None:
                values["lr"] = self._lr
            if values:
                scope.log(step, values, epoch=epoch)
        self._losses.clear()
        self._lr = None
        scope.step(step, epoch=epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Mark the run finished (and close the store if the Scope opened it)."""
        if self.scope is not None:
            self.scope.finish("finished")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Mark the run failed, with the exception as its error."""
        if self.scope is not None:
            last = traceback.format_exception_only(type(exception), exception)[-1].strip()
            self.scope.finish("failed", error=last[:2000])

    # ------------------------------------------------------------------ helpers

    def _target(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.module is None:
            return pl_module
        if isinstance(self.module, str):
            try:
                target = operator.attrgetter(self.module)(pl_module)
            except AttributeError as error:
                raise AttributeError(
                    f"LearnscopeCallback(module={self.module!r}): {type(pl_module).__name__} "
                    f"has no such submodule ({error})"
                ) from None
        else:
            target = self.module(pl_module)
        if not isinstance(target, nn.Module):
            raise TypeError(
                f"LearnscopeCallback(module=...) must give an nn.Module, got "
                f"{type(target).__name__}"
            )
        return target

    def _config(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        config = dict(self.config or {})
        hparams = dict(getattr(pl_module, "hparams", None) or {})
        if hparams:
            config.setdefault("hparams", hparams)
        config.setdefault("lightning", {
            "module": type(pl_module).__name__,
            "max_epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "precision": str(trainer.precision),
            "world_size": trainer.world_size,
            "version": pl.__version__,
        })  # fmt: skip
        return config

    def _rewind(self, step: int) -> None:
        """Resuming at `step`: re-measure later steps, take references from steps <= `step`."""
        self.scope.rewind(step)


def _shares_measurements(trainer: pl.Trainer) -> bool:
    """Whether the processes of this fit share each measurement (DDP with a process group)."""
    return (trainer.world_size > 1 and torch.distributed.is_available()
            and torch.distributed.is_initialized())


def _finite_count(value: Any) -> int | None:
    """A positive finite count as int, else None (Lightning uses inf and -1 for unknown)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number > 0 else None


def _total_steps(trainer: pl.Trainer) -> int | None:
    try:
        return _finite_count(trainer.estimated_stepping_batches)
    except Exception:  # noqa: BLE001 - e.g. a varying accumulation: the end is unknown
        return None


def _updates_per_epoch(trainer: pl.Trainer) -> int | None:
    batches = _finite_count(trainer.num_training_batches)
    if batches is None:
        return None
    return math.ceil(batches / max(int(trainer.accumulate_grad_batches), 1))


def _epoch(trainer: pl.Trainer, batch_idx: int) -> float:
    batches = _finite_count(trainer.num_training_batches)
    if batches is None:
        return float(trainer.current_epoch)
    return trainer.current_epoch + (batch_idx + 1) / batches


def _batch_loss(outputs: Any, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
    """The training-step loss of one batch, from what `on_train_batch_end` receives."""
    value = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        loss = float(value.detach())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        loss = float(value)
    else:
        return None
    if pl_module.automatic_optimization:
        # automatic optimization reports the loss divided by the accumulation factor
        loss *= trainer.accumulate_grad_batches
    return loss
