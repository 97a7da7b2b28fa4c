"""A tiny CNN student."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

from .layers import check_args, conv_bn, init_weights, scale
from .zoo import MODELS


@MODELS.register("tiny_cnn")
class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks -> ``pool`` -> ``classifier``.

    Hook names: ``features.block1`` (full resolution), ``features.block2``
    (max-pool then conv, 1/2), ``features.block3`` (1/4); inside each block
    ``.conv``, ``.bn``, ``.act`` (and ``.pool`` for blocks 2 and 3); ``pool``;
    ``classifier`` (nn.Linear). Downsampling sits at the start of a block so
    block N has the resolution of the ResNet teacher's ``layerN``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        channels: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        if len(channels) != 3:
            raise ValueError(f"channels needs 3 entries, got {channels}")
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = in_channels
        for i, c in enumerate(channels, start=1):
            block = conv_bn(in_ch, scale(c, width), 3)
            if i > 1:  # pool before the conv: cheaper than a strided conv at full resolution
                block = nn.Sequential(OrderedDict(pool=nn.MaxPool2d(2), **dict(block.named_children())))
            blocks[f"block{i}"] = block
            in_ch = scale(c, width)
        self.features = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
