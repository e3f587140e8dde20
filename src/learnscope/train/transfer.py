"""Start a network from another one's weights (pre-training on one task, training on another).

`transfer_weights(source, target)` copies the state (parameters and buffers such as BatchNorm
statistics) of every module whose entries all agree in name and shape, and leaves the other
modules entirely as the target's own initialisation (a layer is never half transferred, e.g.
a bias without its weight). Layers whose shapes depend on the task - the input layer when the
inputs differ (MNIST-1D's 40 values vs digits' 64 pixels), the classifier when the class counts
differ - are therefore re-initialised, which is the usual way to fine-tune on a new task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Transfer:
    """What `transfer_weights` did: names copied, and names kept with the reason."""

    copied: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        kept = "; ".join(f"{name} ({why})" for name, why in self.kept.items()) or "nothing"
        return f"copied {len(self.copied)} tensors; kept the target's own: {kept}"


def transfer_weights(source: nn.Module | Mapping[str, torch.Tensor], target: nn.Module
                     ) -> Transfer:
    """Copy `source`'s state entries into `target` where name and shape match; see the module."""
    state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    report = Transfer()
    own = target.state_dict()

    def mismatch(name: str, value: torch.Tensor) -> str | None:
        if name not in state:
            return "not in the source"
        if tuple(state[name].shape) != tuple(value.shape):
            return f"shape {tuple(state[name].shape)} in the source, {tuple(value.shape)} here"
        return None

    reasons = {name: mismatch(name, value) for name, value in own.items()}
    bad_modules = {name.rpartition(".")[0]: why for name, why in reasons.items() if why}
    update = {}
    for name, value in own.items():
        module = name.rpartition(".")[0]
        if reasons[name]:
            report.kept[name] = reasons[name]
        elif module in bad_modules:
            report.kept[name] = f"its module {module or 'root'} does not fit the source"
        else:
            update[name] = state[name].detach().to(value.device, value.dtype)
            report.copied.append(name)
    if not update:
        raise ValueError(
            "no weights could be transferred: no state entry of the source has the name and "
            f"shape of one of the target's ({report.summary()}); pre-train the same architecture"
        )
    target.load_state_dict(update, strict=False)
    return report
