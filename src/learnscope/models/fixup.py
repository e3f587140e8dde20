"""FixUp ResNet for CIFAR (Zhang, Dauphin & Ma 2019): a residual net without normalisation.

    stem: conv3x3(in_channels -> 16) -> +stem_bias -> stem_relu
    block: x -> +bias1a -> conv1 -> +bias1b -> relu1 -> +bias2a -> conv2 -> *scale -> +bias2b,
           then + option-A shortcut of x, then relu2 (the activation after the addition)
    head: global average pool -> +classifier_bias -> classifier (linear)

Every scalar bias and multiplier is a 0-dimensional nn.Parameter; nothing else in the model is
0-dimensional, which is how `parameter_groups` finds them. fixup_resnet20 has 1 + 2 x 9 = 19
activation layers (the stem's, and two per block), as many as resnet20.

Initialisation: the first conv of each of the L blocks is He-normal (fan_in) scaled by L^(-1/2),
the second conv is zero, the classifier's weight and bias are zero, scalar biases are 0 and
multipliers 1, so every block starts as its shortcut and the net starts with zero logits.
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
    option_a_shortcut,
)
from learnscope.registry import feature_blocks

SCALAR_LR_FACTOR = 0.1


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(float(value)))


@feature_blocks.register('fixup-block')  # its output is one layer's features (separation)
class FixupBlock(nn.Module):
    """A FixUp basic block; see the module docstring for its order of operations.

    Args:
        in_channels, out_channels: channels in and out (out >= in).
        stride: stride of the first conv and the shortcut's subsampling.
        activation: activation name (see models.activations).
        width_multiplier: scales every width (rounded, at least 1).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 activation: str = "relu") -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("an option-A shortcut needs out_channels >= in_channels, got "
                             f"{in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.bias1a = _scalar(0.0)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bias1b = _scalar(0.0)
        self.relu1 = make_activation(activation)
        self.bias2a = _scalar(0.0)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.scale = _scalar(1.0)
        self.bias2b = _scalar(0.0)
        self.relu2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output for x of shape (n, in_channels, h, w)."""
        out = self.relu1(self.conv1(x + self.bias1a) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        return self.relu2(out + option_a_shortcut(x, self.out_channels, self.stride))


class FixupResNet(nn.Module):
    """FixUp CIFAR ResNet (no normalisation layers, so no batchnorm / bn_momentum options).

    Args:
        blocks_per_stage: blocks per stage (depth 6n+2 with three stages).
        widths: filters per stage; stage 0 has stride 1, later stages stride 2.
        in_channels: image channels.
        image_size: image height and width (any size: global average pooling); kept as
            `input_shape`.
        num_classes: outputs.
        activation: activation name (see models.activations).
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
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        widths = check_common_options(blocks_per_stage, widths, in_channels, image_size,
                                      num_classes, width_multiplier)
        self.input_shape = (in_channels, image_size, image_size)
        width = widths[0]
        self.stem = conv3x3(in_channels, width)
        self.stem_bias = _scalar(0.0)
        self.stem_relu = make_activation(activation)
        stages = []
        for index, stage_width in enumerate(widths):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(FixupBlock(width, stage_width, stride, activation=activation))
                width = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.classifier_bias = _scalar(0.0)
        self.classifier = nn.Linear(width, num_classes)
        self.num_blocks = blocks_per_stage * len(widths)
        self._fixup_init()

    def _fixup_init(self) -> None:
        he_normal_(self.stem)
        for block in self.blocks():
            # L^(-1/(2m-2)) with m = 2 layers per residual branch keeps the sum of the L branches'
            # output variance bounded at init, which is what replaces normalisation
            he_normal_(block.conv1, gain=self.num_blocks ** -0.5)
            nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def blocks(self) -> list[FixupBlock]:
        """All residual blocks, in forward order."""
        return [block for stage in self.stages for block in stage]

    def scalar_parameters(self) -> list[nn.Parameter]:
        """The scalar biases and multipliers (0-d parameters); recipes give them lr/10."""
        return [p for p in self.parameters() if p.ndim == 0]

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups: scalar biases and multipliers at lr/10, the rest at lr."""
        return fixup_parameter_groups(self, lr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images x of shape (n, in_channels, h, w)."""
        x = self.stem_relu(self.stem(x) + self.stem_bias)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x.mean(dim=(2, 3)) + self.classifier_bias)


def fixup_parameter_groups(model: nn.Module, lr: float) -> list[dict]:
    """Parameter groups for a torch optimizer: FixUp's scalars at lr/10, everything else at lr.

    Scalars are the model's 0-dimensional parameters (FixUp's biases and multipliers). Each
    parameter appears in exactly one group. Pass the result to e.g. `torch.optim.SGD(groups, ...)`.

    Args:
        model: a FixupResNet (or any model whose 0-d parameters should get the reduced rate).
        lr: the base learning rate.
    """
    scalars = [p for p in model.parameters() if p.ndim == 0]
    others = [p for p in model.parameters() if p.ndim != 0]
    return [
        {"params": others, "lr": lr},
        {"params": scalars, "lr": lr * SCALAR_LR_FACTOR},
    ]


def fixup_resnet(blocks_per_stage: int = 3, **options) -> FixupResNet:
    """FixUp CIFAR ResNet (fixup_resnet20: 3 blocks per stage)."""
    return FixupResNet(blocks_per_stage, **options)
