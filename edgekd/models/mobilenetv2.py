"""MobileNetV2-style student with a stride schedule for small inputs."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

from .layers import check_args, conv_bn, init_weights, make_divisible
from .zoo import MODELS

# (expand ratio t, channels c, repeats n) per stage, as in the MobileNetV2 paper.
STAGES: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1),
)
# Stride of the stem followed by each stage's first block.
IMAGENET_STRIDES = (2, 1, 2, 2, 2, 1, 2, 1)  # /32: 224 -> 7
SMALL_STRIDES = (2, 1, 2, 2, 2, 1, 1, 1)  # /16: 28 -> 2, the last stages still see a 2x2 map


class InvertedResidual(nn.Module):
    """1x1 ``expand`` -> 3x3 ``depthwise`` -> 1x1 linear ``project``; residual add when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[tuple[str, nn.Module]] = []
        if expand_ratio != 1:
            layers.append(("expand", conv_bn(in_ch, hidden, 1, act=nn.ReLU6)))
        layers.append(("depthwise", conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6)))
        layers.append(("project", conv_bn(hidden, out_ch, 1, act=None)))  # linear bottleneck
        self.block = nn.Sequential(OrderedDict(layers))

    def forward(self, x: Tensor) -> Tensor:
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


@MODELS.register("mobilenetv2")
class MobileNetV2(nn.Module):
    """MobileNetV2: ``features`` -> ``pool`` -> ``classifier``.

    Hook names: ``features.0`` is the stem conv-BN-ReLU6; ``features.1`` ..
    ``features.17`` are InvertedResiduals (sub-modules ``.block.expand``,
    ``.block.depthwise``, ``.block.project``); ``features.18`` is the final 1x1
    conv-BN-ReLU6; ``pool``; ``classifier`` (nn.Linear). ``small_input=True``
    (default) downsamples 4 times (/16; 28x28 -> 2x2) with a 1280*width head;
    ``small_input=False`` is the ImageNet schedule (/32, 224 -> 7) with the
    1280*max(1, width) head. ``strides`` overrides either schedule (stem, then
    one value per stage: 8 values). At 28x28 with small_input: ``features.0``
    and ``features.1`` are 14x14 (pair with ResNet ``layer2``), ``features.3``
    is 7x7 (pair with ``layer3``), ``features.6`` 4x4, ``features.7`` onwards 2x2.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        small_input: bool = True,
        strides: Sequence[int] | None = None,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        check_args(num_classes, in_channels, width)
        strides = tuple(strides or (SMALL_STRIDES if small_input else IMAGENET_STRIDES))
        if len(strides) != len(STAGES) + 1 or any(s not in (1, 2) for s in strides):
            raise ValueError(f"strides needs {len(STAGES) + 1} values of 1 or 2, got {strides}")
        if last_channel is None:  # 10-class small inputs do not need the 1280-wide ImageNet head
            last_channel = make_divisible(1280 * (width if small_input else max(1.0, width)))
        in_ch = make_divisible(32 * width)
        layers: list[nn.Module] = [conv_bn(in_channels, in_ch, 3, strides[0], act=nn.ReLU6)]
        for (t, c, n), stride in zip(STAGES, strides[1:]):
            out_ch = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(conv_bn(in_ch, last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channel, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
