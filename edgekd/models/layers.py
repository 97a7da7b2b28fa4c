"""Small building blocks shared by the zoo models."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from torch import nn


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without dropping more than 10% (MobileNetV2 rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale(channels: int, width: float) -> int:
    """Plain width scaling for the CNNs that do not need multiple-of-8 channels."""
    return max(1, int(round(channels * width)))


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    act: Callable[[], nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """``conv`` -> ``bn`` -> optional ``act``; named children keep hook names readable."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_ch),
    )
    if act is not None:
        layers["act"] = act()
    return nn.Sequential(layers)


def check_args(num_classes: int, in_channels: int, width: float) -> None:
    # ValueError here is turned into a ConfigError naming the config key by create_model.
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")


def init_weights(model: nn.Module) -> None:
    """Explicit init so a model is a pure function of ``torch.manual_seed``."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
