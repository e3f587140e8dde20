"""Pre-activation (v2) CIFAR ResNets and their shortcut-free relatives ConvNet and ToyNet.

Layout of a depth-(6n+2) net with the default widths (16, 32, 64):

    stem: conv3x3(in_channels -> 16), no activation
    stages.0 .. stages.2: n blocks each, 16 / 32 / 64 filters, stride 1 / 2 / 2
        block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 (+ option-A shortcut of the block input)
    final_bn, final_relu, global average pool, classifier (linear)

ResNet-20 therefore has 2 x 9 + 1 = 19 activation layers, each its own module
(`stages.0.0.relu1`, ..., `final_relu`) so that learnscope names them readably and counts every one.
ConvNet is the same net without shortcuts; ToyNet is ConvNet with 32 filters everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learnscope.models.activations import activation as make_activation
from learnscope.registry import feature_blocks

DEFAULT_WIDTHS = (16, 32, 64)


def option_a_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Parameter-free "option A" shortcut: subsample with `::stride`, zero-pad the channels.

    The extra channels are split between both sides, the smaller half first
    (`(out - in) // 2` zero channels before the input's channels, the rest after).

    Args:
        x: input of shape (n, c, h, w) with c <= out_channels.
        out_channels: channels of the result.
        stride: spatial subsampling step (1 keeps the resolution).
    """
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    if extra < 0:
        raise ValueError(f"option-A shortcut cannot shrink {x.shape[1]} to {out_channels} channels")
    if extra:
        before = extra // 2
        x = F.pad(x, (0, 0, 0, 0, before, extra - before))
    return x


def norm_layer(channels: int, batchnorm: bool, momentum: float) -> nn.Module:
    """BatchNorm2d with the given momentum, or Identity when batchnorm is off."""
    if batchnorm:
        return nn.BatchNorm2d(channels, momentum=momentum)
    return nn.Identity()


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a norm layer or scalar bias follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def check_common_options(
    blocks_per_stage: int, widths: Sequence[int], in_channels: int, image_size: int,
    num_classes: int, width_multiplier: float = 1.0,
) -> tuple[int, ...]:
    """Validate the options shared by all conv families; returns the widths to build.

    `width_multiplier` scales every width (rounded, at least 1): 0.25 turns ResNet-20's
    16/32/64 filters into 4/8/16.
    """
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
    widths = tuple(scale_width(w, width_multiplier) for w in widths)
    for name, value in (("blocks_per_stage", blocks_per_stage), ("in_channels", in_channels),
                        ("image_size", image_size), ("num_classes", num_classes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return widths


def scale_width(width: int, multiplier: float) -> int:
    """`width` times `multiplier`, rounded half up, at least 1."""
    if (isinstance(multiplier, bool) or not isinstance(multiplier, (int, float))
            or not multiplier > 0 or multiplier != multiplier or multiplier == float("inf")):
        raise ValueError(f"width_multiplier must be a number > 0, got {multiplier!r}; e.g. 0.25 "
                         "for a quarter of the filters")
    return max(1, int(width * multiplier + 0.5))


def he_normal_(conv: nn.Conv2d, gain: float = 1.0) -> None:
    """He-normal init with std = gain * sqrt(2 / fan_in) (fan_in = in_channels * k * k)."""
    fan_in = conv.weight[0].numel()
    with torch.no_grad():
        conv.weight.normal_(0.0, gain * (2.0 / fan_in) ** 0.5)


@feature_blocks.register('preact-block')  # its output is one layer's features (separation)
class PreActBlock(nn.Module):
    """BN-act-conv3x3-BN-act-conv3x3, plus an option-A shortcut of the input if enabled.

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the first conv (and subsampling of the shortcut).
        shortcut: add the option-A shortcut (ResNet) or not (ConvNet).
        activation: activation name (see models.activations).
        batchnorm: use BatchNorm2d (else Identity).
        bn_momentum: BatchNorm momentum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        shortcut: bool = True,
        activation: str = "relu",
        batchnorm: bool = True,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if shortcut and out_channels < in_channels:
            raise ValueError("an option-A shortcut needs out_channels >= in_channels, got "
                             f"{in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.shortcut = shortcut
        self.bn1 = norm_layer(in_channels, batchnorm, bn_momentum)
        self.relu1 = make_activation(activation)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = norm_layer(out_channels, batchnorm, bn_momentum)
        self.relu2 = make_activation(activation)
        self.conv2 = conv3x3(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output for x of shape (n, in_channels, h, w)."""
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        if self.shortcut:
            # the shortcut takes the raw input, not its pre-activation (He et al. 2016, v2)
            out = out + option_a_shortcut(x, self.out_channels, self.stride)
        return out


class CifarResNet(nn.Module):
    """Pre-activation CIFAR ResNet (shortcut=True) or the same net without shortcuts (ConvNet).

    Args:
        blocks_per_stage: blocks per stage n (depth 6n+2 with three stages).
        widths: filters per stage; stage 0 has stride 1, later stages stride 2.
        stem_width: filters of the first conv (default widths[0]).
        width_multiplier: scales `widths` and `stem_width` (rounded, at least 1; 0.25 turns
            16/32/64 into 4/8/16).
        shortcut: option-A shortcuts (ResNet) or none (ConvNet).
        in_channels: image channels.
        image_size: image height and width; any size works because of global average pooling.
            Kept as `input_shape` for callers that need an example input.
        num_classes: outputs.
        activation: "relu", "prelu", "lrelu", ... (see models.activations).
        batchnorm: BatchNorm2d layers (False replaces every one with Identity).
        bn_momentum: BatchNorm momentum (0.1 is PyTorch's default; the one-cycle recipe uses 0.05).
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        *,
        stem_width: int | None = None,
        shortcut: bool = True,
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
        self.input_shape = (in_channels, image_size, image_size)
        width = widths[0] if stem_width is None else scale_width(int(stem_width),
                                                                 width_multiplier)
        self.stem = conv3x3(in_channels, width)
        stages = []
        for index, stage_width in enumerate(widths):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(PreActBlock(width, stage_width, stride, shortcut=shortcut,
                                          activation=activation, batchnorm=batchnorm,
                                          bn_momentum=bn_momentum))
                width = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_bn = norm_layer(width, batchnorm, bn_momentum)
        self.final_relu = make_activation(activation)
        self.classifier = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_normal_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images x of shape (n, in_channels, h, w)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.final_relu(self.final_bn(x))
        return self.classifier(x.mean(dim=(2, 3)))


def resnet(blocks_per_stage: int = 3, **options) -> CifarResNet:
    """Pre-activation CIFAR ResNet with option-A shortcuts (resnet20: 3 blocks per stage)."""
    return CifarResNet(blocks_per_stage, shortcut=True, **options)


def convnet(blocks_per_stage: int = 3, **options) -> CifarResNet:
    """The pre-activation ResNet without shortcuts."""
    return CifarResNet(blocks_per_stage, shortcut=False, **options)


def toynet(blocks_per_stage: int = 3, *, widths: Sequence[int] = (32, 32, 32),
           **options) -> CifarResNet:
    """ConvNet with the same number of filters everywhere (32 by default, the first conv too)."""
    return CifarResNet(blocks_per_stage, widths, shortcut=False, **options)
