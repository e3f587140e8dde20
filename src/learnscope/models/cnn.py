"""A small convolutional ReLU network for small images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from learnscope.models.activations import activation as make_activation


class SmallCNN(nn.Module):
    """conv3x3 -> [BN] -> act per stage (stride 2 after the first), global average pool, linear.

    Args:
        in_channels: input channels.
        channels: output channels of each conv stage.
        num_classes: outputs.
        activation: activation name (see models.activations).
        batchnorm: BatchNorm2d after each conv.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16),
        num_classes: int = 10,
        activation: str = "relu",
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for i, size in enumerate(channels):
            layers.append(nn.Conv2d(width, size, 3, stride=1 if i == 0 else 2, padding=1,
                                    bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(size))
            layers.append(make_activation(activation))
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images x of shape (n, in_channels, h, w)."""
        return self.classifier(self.features(x).mean(dim=(2, 3)))
