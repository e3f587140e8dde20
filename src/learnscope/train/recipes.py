"""Training recipes of the activation-pattern paper (and Adam), by name, every setting overridable.

    recipe = recipes.get("multistep", epochs=20)            # override any field
    optimizer, scheduler = recipe.build(model, steps_per_epoch=390)
    # per optimizer update: optimizer.step(); scheduler.step()

All learning-rate schedules are stepped once per update (epoch milestones are converted to steps),
so a run can stop and resume at any update.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Recipe:
    """Optimizer and learning-rate schedule settings.

    Attributes:
        name: recipe name.
        optimizer: "sgd" or "adam".
        lr: base (peak, for one-cycle; maximum, for cyclic) learning rate.
        momentum, nesterov, weight_decay: optimizer settings (momentum/nesterov: SGD only).
        epochs: training epochs; batch_size: training batch size.
        scheduler: "multistep", "cyclic", "onecycle" or "constant".
        milestones: epochs after which the lr is multiplied by `gamma` (multistep).
        milestone_fractions: if set, replaces `milestones` by floor(f * epochs) for each
            fraction f, so the drops stay at the same share of training when `epochs` changes
            (equisep: (1/3, 2/3), the reference's `epoch == int(epochs / 3)` and
            `int(epochs * 2 / 3)`).
        cycle_epochs_up: epochs of the rising half of a triangular cycle (cyclic).
        cycle_base_lr: lowest lr of the cycle (cyclic).
        warmup_fraction, div_factor, final_div_factor: one-cycle settings (cosine annealing).
        bn_momentum: BatchNorm momentum to set on the model (None: leave as built).
        scalar_lr_factor: lr factor for parameter groups a model marks as scalars (FixUp's biases
            and multipliers get lr/10).
    """

    name: str
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    epochs: int = 200
    batch_size: int = 128
    scheduler: str = "multistep"
    milestones: tuple[int, ...] = (100, 150)
    milestone_fractions: tuple[float, ...] | None = None
    gamma: float = 0.1
    cycle_epochs_up: int = 10
    cycle_base_lr: float = 0.001
    warmup_fraction: float = 0.1
    div_factor: float = 10.0
    final_div_factor: float = 1e3
    bn_momentum: float | None = None
    scalar_lr_factor: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> Recipe:
        """A copy with some settings changed; unknown names fail with the list of settings."""
        known = set(asdict(self))
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe setting(s) {unknown}; settings: {sorted(known)}")
        for key in ("milestones", "milestone_fractions"):
            if overrides.get(key) is not None:
                overrides[key] = tuple(overrides[key])
        return replace(self, **overrides)

    def epoch_milestones(self) -> tuple[int, ...]:
        """Epochs after which the multistep lr drops (from the fractions when they are set)."""
        if self.milestone_fractions is None:
            return self.milestones
        # the small epsilon keeps int(600 * 2 / 3) = 400 whatever the float rounding of 2/3
        return tuple(math.floor(f * self.epochs + 1e-9) for f in self.milestone_fractions)

    def config(self) -> dict[str, Any]:
        """The settings as a JSON-friendly dict (stored with the run)."""
        return {k: ([*v] if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def build(
        self, model: nn.Module, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """Optimizer and per-update lr scheduler for `model`."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if self.bn_momentum is not None:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = self.bn_momentum
        groups = _parameter_groups(model, self.lr, self.scalar_lr_factor)
        if self.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                weight_decay=self.weight_decay,
            )
        elif self.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use 'sgd' or 'adam'")
        return optimizer, self._scheduler(optimizer, steps_per_epoch)

    def check_updates(self, updates: int, steps_per_epoch: int) -> None:
        """Raise ValueError if this recipe's schedule cannot run `updates` optimizer updates.

        A one-cycle schedule is fixed in length (epochs x updates per epoch): it cannot be
        stepped past its end, so a run may stop early but not go on longer. The other
        schedules run as long as asked (multistep keeps its last rate, cyclic keeps cycling).
        """
        length = self.epochs * steps_per_epoch
        if self.scheduler == "onecycle" and updates > length:
            raise ValueError(
                f"{updates} updates asked for, but the one-cycle schedule ends after {length} "
                f"({self.epochs} epochs x {steps_per_epoch} updates); ask for at most {length} "
                "updates (--steps), or more epochs (--epochs)"
            )

    def _scheduler(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        sched = torch.optim.lr_scheduler
        total = self.epochs * steps_per_epoch
        if self.scheduler == "multistep":
            return sched.MultiStepLR(
                optimizer, [m * steps_per_epoch for m in self.epoch_milestones()],
                gamma=self.gamma,
            )
        if self.scheduler == "cyclic":
            return sched.CyclicLR(
                optimizer,
                base_lr=[self.cycle_base_lr * g["lr"] / self.lr for g in optimizer.param_groups],
                max_lr=[g["lr"] for g in optimizer.param_groups],
                step_size_up=self.cycle_epochs_up * steps_per_epoch,
                mode="triangular",
                cycle_momentum=self.optimizer == "sgd" and self.momentum > 0,
            )
        if self.scheduler == "onecycle":
            return sched.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in optimizer.param_groups],
                total_steps=max(total, 1),
                pct_start=self.warmup_fraction,
                anneal_strategy="cos",
                div_factor=self.div_factor,
                final_div_factor=self.final_div_factor,
            )
        if self.scheduler == "constant":
            return sched.LambdaLR(optimizer, lambda _: 1.0)
        raise ValueError(
            f"unknown scheduler {self.scheduler!r}; use multistep, cyclic, onecycle or constant"
        )


def _parameter_groups(model: nn.Module, lr: float, scalar_factor: float) -> list[dict]:
    """One group, or two when the model marks scalar parameters (`scalar_parameters()`).

    (`list` is this module's registry function, hence the `[*...]` spelling.)
    """
    marked: Iterable[nn.Parameter] = ()
    if hasattr(model, "scalar_parameters"):
        marked = [*model.scalar_parameters()]
    scalar_ids = {id(p) for p in marked}
    rest = [p for p in model.parameters() if id(p) not in scalar_ids]
    groups = [{"params": rest, "lr": lr}]
    if scalar_ids:
        groups.append({"params": [*marked], "lr": lr * scalar_factor})
    return groups


_RECIPES: dict[str, Recipe] = {
    # SGD 0.1, momentum 0.9, wd 1e-4, 200 epochs, lr x0.1 after epochs 100 and 150
    "multistep": Recipe("multistep"),
    # SGD up to 0.2 in triangular cycles of 10 epochs up, wd 5e-4, 100 epochs
    "cyclic": Recipe("cyclic", lr=0.2, weight_decay=5e-4, epochs=100, scheduler="cyclic"),
    # SGD Nesterov peak 0.8, wd 2e-4, batch 256, 50 epochs, cosine one-cycle, 10% warm-up
    "onecycle": Recipe(
        "onecycle", lr=0.8, nesterov=True, weight_decay=2e-4, epochs=50, batch_size=256,
        scheduler="onecycle", bn_momentum=0.05,
    ),
    # FixUp: multistep with wd 5e-4, scalar biases and multipliers at lr/10
    "fixup": Recipe("fixup", weight_decay=5e-4, scalar_lr_factor=0.1),
    # PyramidNet: multistep with Nesterov momentum
    "pyramid": Recipe("pyramid", nesterov=True),
    # Adam at a constant 1e-3
    "adam": Recipe(
        "adam", optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=0.0, epochs=100,
        scheduler="constant",
    ),
    # Equi-separation (He & Su): 600 epochs, batch 128, wd 5e-4, lr / 10 at 1/3 and / 100 at 2/3
    # of training; Adam 1e-3 by default (see EQUISEP_OPTIMIZERS for sgd and momentum)
    "equisep": Recipe(
        "equisep", optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=5e-4, epochs=600,
        batch_size=128, milestone_fractions=(1 / 3, 2 / 3),
    ),
}

# The equi-separation paper's three optimizers as overrides of the "equisep" recipe: plain SGD,
# SGD with momentum 0.9 ("momentum"), Adam (torch's L2 weight decay in every case).
EQUISEP_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd", "momentum": 0.0},
    "momentum": {"optimizer": "sgd", "momentum": 0.9},
    "adam": {"optimizer": "adam", "momentum": 0.0},
}


def list() -> list[str]:  # noqa: A001 - registry convention: recipes.list()
    """Names of the available recipes."""
    return sorted(_RECIPES)


def get(name: str, **overrides: Any) -> Recipe:
    """The recipe `name`, with any settings overridden; unknown names list the known ones."""
    if name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {sorted(_RECIPES)}")
    return _RECIPES[name].with_overrides(**overrides)
