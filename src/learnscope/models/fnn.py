"""Fully connected ReLU networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from learnscope.models.activations import activation as make_activation


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation per hidden layer, then a linear classifier.

    Args:
        in_features: input size (inputs of any shape are flattened).
        hidden: widths of the hidden layers.
        num_classes: outputs.
        activation: "relu", "lrelu", "prelu", "relu6" or "hardtanh".
        batchnorm: BatchNorm1d after each hidden linear layer.
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: Sequence[int] = (64, 64),
        num_classes: int = 10,
        activation: str = "relu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batchnorm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(make_activation(activation))
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for inputs x of shape (n, ...), flattened to (n, in_features)."""
        return self.classifier(self.features(x.flatten(1)))
