"""Multi-teacher distillation by averaging per-teacher KD terms."""

from __future__ import annotations

from torch import Tensor

from ..errors import ConfigError
from .base import DistillLoss, LossInputs, register
from .logits import check_temperature, kd_term


@register("multi_teacher")
class MultiTeacherKD(DistillLoss):
    """Weighted average of Hinton KD terms, one per teacher (e.g. You et al., 2017,
    "Learning from Multiple Teacher Networks"; Fukuda et al., 2017):

        L = sum_m w_m * T^2 * KL(softmax(t_m / T) || softmax(s / T)),   sum_m w_m = 1

    This differs from ``kd`` on an ensemble: ``kd`` distils towards one target,
    ``softmax(sum_m w_m t_m / T)`` (logits averaged first), while here the student is
    pulled towards each teacher's distribution separately, so where teachers disagree
    it is asked to sit between them rather than to match their consensus.
    ``weights`` default to uniform and are normalized to sum to 1.
    """

    def __init__(self, temperature: float = 4.0, weights: list[float] | None = None) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
            weights = [w / sum(weights) for w in weights]
        self.weights = weights

    def forward(self, inputs: LossInputs) -> Tensor:
        each = inputs.teacher_logits_each
        if not each:
            raise ConfigError(f"loss {self.name!r} needs per-teacher logits, but none were given")
        weights = self.weights or [1.0 / len(each)] * len(each)
        if len(weights) != len(each):
            raise ConfigError(f"loss {self.name!r}: {len(weights)} weights given for {len(each)} teachers")
        s = inputs.student_logits
        return sum(w * kd_term(s, t.detach().to(s.dtype), self.temperature) for w, t in zip(weights, each))
