"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022, "Decoupled Knowledge Distillation")."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import DistillLoss, LossInputs, register
from .logits import check_temperature


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


@register("dkd")
class DecoupledKD(DistillLoss):
    """Classic KD split into what it mixes (Zhao et al., 2022): with ``b`` the binary distribution
    [p_target, 1 - p_target] and ``p̂`` the distribution over the non-target classes alone (all at
    temperature ``T``, batch mean)

        L = T^2 * (alpha * KL(b_t || b_s) + beta * KL(p̂_t || p̂_s))

    Hinton's KD equals ``TCKD + (1 - p_target_t) * NCKD``: the non-target term is suppressed exactly where
    the teacher is confident, which is where it carries the most "dark knowledge". DKD weighs it freely
    (``beta``; the paper uses 8 on CIFAR-100, 0.5 on ImageNet, with alpha 1 and T 4). The paper also ramps
    the loss in over the first 20 epochs; here the schedule's warm-up does that job.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature = check_temperature(temperature)

    def forward(self, inputs: LossInputs) -> Tensor:
        T = self.temperature
        s, t = inputs.student_logits / T, self.teacher_logits(inputs) / T
        batch, classes = s.shape
        target = inputs.targets.unsqueeze(1)
        others = torch.ones_like(s, dtype=torch.bool).scatter_(1, target, False)

        def parts(logits: Tensor) -> tuple[Tensor, Tensor]:
            """log [p_target, 1 - p_target] (batch, 2) and the non-target logits (batch, K - 1)."""
            log_p = logits.log_softmax(1)
            binary = torch.stack([log_p.gather(1, target).squeeze(1), log_p[others].view(batch, -1).logsumexp(1)], 1)
            return binary, logits[others].view(batch, classes - 1)

        (binary_s, rest_s), (binary_t, rest_t) = parts(s), parts(t)
        tckd = _kl(binary_t, binary_s)
        nckd = _kl(rest_t.log_softmax(1), rest_s.log_softmax(1))
        return T**2 * (self.alpha * tckd + self.beta * nckd).mean()
