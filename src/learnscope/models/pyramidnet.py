"""PyramidNet for CIFAR (Han et al. 2017) with additive widening.

Widening rule: with B blocks in all, a start width w0 = widths[0] and a final width
wf = widths[-1], block k (1..B) has round(w0 + (wf - w0) * k / B) filters, so the width grows by
about (wf - w0) / B per block and the last block ends exactly at wf. For pyramidnet20 (B = 9,
16 -> 64) the block widths are 21, 27, 32, 37, 43, 48, 53, 59, 64. Only the first and last entries
of `widths` are used; its length sets the number of stages (stride 2 at the start of every stage
after the first).

Block: BN-conv3x3-BN-ReLU-conv3x3-BN (a single activation per block) plus a parameter-free
shortcut that subsamples with ::2 where the block has stride 2 and zero-pads the new channels.
The stem is conv3x3 + BN without activation, and the head is BN, global average pooling and a
linear layer without a final activation, so pyramidnet20 has exactly 9 activation layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from learnscope.models.activations import activation as make_activation
from learnscope.models.resnet import (
    DEFAULT_WIDTHS,
    check_common_options,
    conv3x3,
    he_normal_,
    norm_layer,
    option_a_shortcut,
)
from learnscope.registry import feature_blocks


def additive_widths(start: int, final: int, blocks: int) -> list[int]:
    """Filters of each of `blocks` blocks under additive widening from `start` to `final`."""
    return [round(start + (final - start) * k / blocks) for k in range(1, blocks + 1)]


@feature_blocks.register('pyramid-block')  # its output is one layer's features (separation)
class PyramidBlock(nn.Module):
    """BN-conv3x3-BN-act-conv3x3-BN plus a zero-padded, subsampled shortcut.

    Args:
        in_channels, out_channels: channels in and out (out >= in).
        stride: stride of the first conv and the shortcut's subsampling.
        activation: activation name (see models.activations).
        width_multiplier: scales every width (rounded, at least 1).
        batchnorm: use BatchNorm2d (else Identity).
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        activation: str = "relu",
        batchnorm: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"pyramid widths must not shrink: {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.bn1 = norm_layer(in_channels, batchnorm, bn_momentum)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = norm_layer(out_channels, batchnorm, bn_momentum)
        self.relu = make_activation(activation)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn3 = norm_layer(out_channels, batchnorm, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output for x of shape (n, in_channels, h, w)."""
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(self.relu(self.bn2(out))))
        return out + option_a_shortcut(x, self.out_channels, self.stride)


class PyramidNet(nn.Module):
    """Additive PyramidNet; see the module docstring for the widening rule.

    Args:
        blocks_per_stage: blocks per stage (depth 6n+2 with three stages).
        widths: (start width, ..., final width); len(widths) stages, the middle entries unused.
        in_channels: image channels.
        image_size: image height and width (any size: global average pooling); kept as
            `input_shape`.
        num_classes: outputs.
        activation: activation name (see models.activations).
        batchnorm: BatchNorm2d layers (False replaces every one with Identity).
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        *,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        activation: str = "relu",
        batchnorm: bool = True,
        bn_momentum: float = 0.1,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        widths = check_common_options(blocks_per_stage, widths, in_channels, image_size,
                                      num_classes, width_multiplier)
        if widths[-1] < widths[0]:
            raise ValueError(f"PyramidNet's final width must be >= its start width, got {widths}")
        self.input_shape = (in_channels, image_size, image_size)
        block_widths = iter(additive_widths(widths[0], widths[-1],
                                            blocks_per_stage * len(widths)))
        width = widths[0]
        self.stem = conv3x3(in_channels, width)
        self.stem_bn = norm_layer(width, batchnorm, bn_momentum)
        stages = []
        for index in range(len(widths)):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                out = next(block_widths)
                blocks.append(PyramidBlock(width, out, stride, activation=activation,
                                           batchnorm=batchnorm, bn_momentum=bn_momentum))
                width = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_bn = norm_layer(width, batchnorm, bn_momentum)
        self.classifier = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_normal_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images x of shape (n, in_channels, h, w)."""
        x = self.stem_bn(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(self.final_bn(x).mean(dim=(2, 3)))


def pyramidnet(blocks_per_stage: int = 3, **options) -> PyramidNet:
    """Additive PyramidNet (pyramidnet20: 3 blocks per stage, widths 16 -> 64)."""
    return PyramidNet(blocks_per_stage, **options)
