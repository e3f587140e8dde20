"""Fully connected networks: Linear -> [BatchNorm] -> activation blocks and a linear classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from learnscope.models.activations import activation as make_activation


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation per hidden layer, then a linear classifier.

    Args:
        in_features: input size (inputs of any shape are flattened).
        hidden: widths of the hidden layers (ignored when `depth` is given).
        num_classes: outputs.
        activation: "relu", "lrelu", "prelu", "relu6", "hardtanh", or "none" (linearised: an
            nn.Identity takes the activation's place, so the block layout stays the same).
        batchnorm: BatchNorm1d after each hidden linear layer.
        depth: number of hidden blocks (Linear [-> BN] -> activation); with `width`, shorthand
            for hidden=(width,) * depth. The network then has depth + 1 Linear layers.
        width: width of every hidden layer when `depth` is given (default 100).

    Hidden block i (0-based) ends at module `features.{k * i + k - 1}` with k = 3 with
    batchnorm, 2 without: the features after layer i + 1.
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: Sequence[int] = (64, 64),
        num_classes: int = 10,
        activation: str = "relu",
        batchnorm: bool = False,
        depth: int | None = None,
        width: int = 100,
    ) -> None:
        super().__init__()
        if depth is not None:
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
                raise ValueError(f"depth must be an int >= 0 (hidden blocks), got {depth!r}")
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(f"width must be an int >= 1, got {width!r}")
            hidden = (width,) * depth
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batchnorm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.Identity() if activation == "none" else make_activation(activation))
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for inputs x of shape (n, ...), flattened to (n, in_features)."""
        return self.classifier(self.features(x.flatten(1)))
