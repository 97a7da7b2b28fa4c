"""FitNets hint loss with learned adapters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import DistillLoss, FeaturePair, LossInputs, register


@register("fitnet")
class FitNet(DistillLoss):
    """FitNets hints (Romero et al., 2015, "FitNets: Hints for Thin Deep Nets"):

        L = sum_pairs mean( (r(pool(f_s)) - f_t)^2 )

    ``r`` is a learned regressor: a 1x1 ``Conv2d`` for (B, C, H, W) features or a
    ``Linear`` for (B, C) features, built in ``setup`` when the channel counts differ
    (identity when equal). ``pool`` adaptive-average-pools the student map to the
    teacher's spatial size when they differ. The adapters are parameters of this
    module, so the optimizer trains them together with the student.
    """

    needs_features = True

    def __init__(self) -> None:
        super().__init__()
        self.adapters = nn.ModuleList()  # aligned with self.pairs (module names contain dots: no ModuleDict)

    def setup(self, pairs: list[FeaturePair], student_shapes: dict[str, torch.Size], teacher_shapes: dict[str, torch.Size]) -> None:
        super().setup(pairs, student_shapes, teacher_shapes)
        self.adapters = nn.ModuleList(
            self._adapter(p, student_shapes[p.student], teacher_shapes[p.teacher]) for p in self.pairs
        )

    def _adapter(self, pair: FeaturePair, s: torch.Size, t: torch.Size) -> nn.Module:
        if len(s) != len(t) or len(s) not in (2, 4):
            raise ConfigError(
                f"distill.features: fitnet pairs need both features 2-D (B, C) or both 4-D (B, C, H, W); "
                f"{pair.student!r} is {tuple(s)} and {pair.teacher!r} is {tuple(t)}"
            )
        if s[1] == t[1]:
            return nn.Identity()
        return nn.Conv2d(s[1], t[1], kernel_size=1) if len(s) == 4 else nn.Linear(s[1], t[1])

    def forward(self, inputs: LossInputs) -> Tensor:
        if len(self.adapters) != len(self.pairs):
            raise ConfigError("fitnet: setup() was not called with the feature pairs before training")
        total = inputs.student_logits.new_zeros(())
        for adapter, (_, s, t) in zip(self.adapters, self.feature_pairs(inputs)):
            if s.dim() == 4 and s.shape[2:] != t.shape[2:]:
                s = F.adaptive_avg_pool2d(s, t.shape[2:])  # pooling commutes with the 1x1 adapter; do it first (cheaper)
            total = total + F.mse_loss(adapter(s), t)
        return total
