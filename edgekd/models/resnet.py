"""ResNet-style teacher for small images."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .layers import check_args, conv_bn, init_weights, scale
from .zoo import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a residual add (1x1 conv shortcut when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_ch, out_ch, 3, stride)
        self.conv2 = conv_bn(out_ch, out_ch, 3, act=None)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = conv_bn(in_ch, out_ch, 1, stride, act=None)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


@MODELS.register("resnet")
class ResNet(nn.Module):
    """ResNet-style teacher: ``stem`` -> ``layer1`` -> ``layer2`` -> ``layer3`` -> ``pool`` -> ``classifier``.

    Hook names: ``stem`` (conv3x3-BN-ReLU, full resolution), ``layer1`` (full
    resolution), ``layer2`` (1/2), ``layer3`` (1/4), each a Sequential of
    BasicBlocks (``layer2.0``, ``layer2.1``, ...); ``pool`` (N, C, 1, 1);
    ``classifier`` (nn.Linear). At 28x28 the layers give 28x28, 14x14 and 7x7
    maps, matching ``tiny_cnn``'s ``features.block1..3``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        channels: Sequence[int] = (24, 48, 96),
        blocks: Sequence[int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        if len(channels) != 3 or len(blocks) != 3 or min(blocks) < 1:
            raise ValueError(f"channels and blocks need 3 stages with >= 1 block, got {channels}, {blocks}")
        chans = [scale(c, width) for c in channels]
        self.stem = conv_bn(in_channels, chans[0], 3)
        stages, in_ch = [], chans[0]
        for i, (out_ch, n) in enumerate(zip(chans, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(in_ch if j == 0 else out_ch, out_ch, stride if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*stage))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))
