"""Attention transfer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import DistillLoss, LossInputs, register


def attention_map(f: Tensor, p: float) -> Tensor:
    """Spatial attention: mean over channels of ``|f|^p``, flattened and L2-normalized."""
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


@register("at")
class AttentionTransfer(DistillLoss):
    """Attention transfer (Zagoruyko & Komodakis, 2017, "Paying More Attention to
    Attention"), activation-based, as implemented in RepDistiller:

        a(f) = normalize( vec( mean_c |f_c|^p ) )
        L    = sum_pairs mean( (a(f_s) - a(f_t))^2 )

    Features must be (B, C, H, W); channel counts may differ. When the spatial sizes
    differ, the larger map is adaptive-average-pooled to the smaller one first.
    """

    needs_features = True

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if not p > 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = float(p)

    def forward(self, inputs: LossInputs) -> Tensor:
        total = inputs.student_logits.new_zeros(())
        for pair, s, t in self.feature_pairs(inputs):
            if s.dim() != 4 or t.dim() != 4:
                raise ConfigError(
                    f"distill.features: 'at' needs 4-D (B, C, H, W) features; "
                    f"{pair.student!r} is {tuple(s.shape)} and {pair.teacher!r} is {tuple(t.shape)}"
                )
            size = (min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3]))
            if s.shape[2:] != size:
                s = F.adaptive_avg_pool2d(s, size)
            if t.shape[2:] != size:
                t = F.adaptive_avg_pool2d(t, size)
            total = total + (attention_map(s, self.p) - attention_map(t, self.p)).pow(2).mean()
        return total
