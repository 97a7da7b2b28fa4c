"""Losses on relations between the samples of a batch: RKD and SP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DistillLoss, LossInputs, register


def pairwise_distances(e: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distance matrix with an exact-zero diagonal (no sqrt(0) gradient)."""
    sq = e.pow(2).sum(dim=1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), dtype=e.dtype, device=e.device))


def angles(e: Tensor) -> Tensor:
    """cos of the angle at vertex j for all triplets (i, j, k), flattened (B^3,)."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # diff[j, i] = unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


@register("rkd")
class RelationalKD(DistillLoss):
    """Relational KD (Park et al., 2019, "Relational Knowledge Distillation"), as in
    RepDistiller, on flattened (B, D) embeddings:

        psi_D(i, j)    = ||e_i - e_j|| / mean_{i!=j} ||e_i - e_j||
        psi_A(i, j, k) = <unit(e_i - e_j), unit(e_k - e_j)>
        L = w_d * smoothL1(psi_D(s), psi_D(t)) + w_a * smoothL1(psi_A(s), psi_A(t))

    Summed over the configured feature pairs. With no pairs configured it is applied
    to the student and teacher *logits* instead, so ``needs_features`` is False.
    """

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0:
            raise ValueError("distance_weight and angle_weight must be >= 0")
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def relation_loss(self, s: Tensor, t: Tensor) -> Tensor:
        s, t = s.flatten(1), t.flatten(1)
        if len(s) < 2:  # no pairs of samples to relate
            return s.sum() * 0
        d_s, d_t = pairwise_distances(s), pairwise_distances(t)
        # Mean over the off-diagonal (positive) distances makes the loss scale-free.
        d_s, d_t = d_s / d_s[d_s > 0].mean(), d_t / d_t[d_t > 0].mean()
        loss_d = F.smooth_l1_loss(d_s, d_t)
        loss_a = F.smooth_l1_loss(angles(s), angles(t))
        return self.distance_weight * loss_d + self.angle_weight * loss_a

    def forward(self, inputs: LossInputs) -> Tensor:
        if not self.pairs:
            return self.relation_loss(inputs.student_logits, self.teacher_logits(inputs))
        total = inputs.student_logits.new_zeros(())
        for _, s, t in self.feature_pairs(inputs):
            total = total + self.relation_loss(s, t)
        return total


@register("sp")
class SimilarityPreserving(DistillLoss):
    """Similarity-preserving KD (Tung & Mori, 2019, "Similarity-Preserving Knowledge
    Distillation"), on flattened (B, D) features F:

        G = row_normalize(F F^T)          (B x B, each row L2-normalized)
        L = sum_pairs ||G_s - G_t||_F^2 / B^2

    Only batch-by-batch similarities are compared, so feature sizes may differ.
    """

    needs_features = True

    def forward(self, inputs: LossInputs) -> Tensor:
        total = inputs.student_logits.new_zeros(())
        for _, s, t in self.feature_pairs(inputs):
            b = s.shape[0]
            g_s = F.normalize(s.flatten(1) @ s.flatten(1).t(), dim=1)
            g_t = F.normalize(t.flatten(1) @ t.flatten(1).t(), dim=1)
            total = total + (g_s - g_t).pow(2).sum() / b**2
        return total
