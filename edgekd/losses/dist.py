"""DIST (Huang, You, Wang, Qian & Xu, NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher")."""

from __future__ import annotations

from torch import Tensor

from .base import DistillLoss, LossInputs, register
from .logits import check_temperature


def pearson_distance(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """``1 - mean_i corr(a_i, b_i)`` over the rows of two (N, K) tensors."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    return 1 - corr.mean()


@register("dist")
class DIST(DistillLoss):
    """Match the teacher's predictions by correlation, not exactly (Huang et al., 2022): with ``p`` the
    softmax at temperature ``T``,

        L = T^2 * (beta * (1 - mean_i pearson(p_s[i, :], p_t[i, :]))     inter-class: each sample's ranking
                   + gamma * (1 - mean_k pearson(p_s[:, k], p_t[:, k])))  intra-class: each class across the batch

    A relation, not a value, is what is matched, so a student far weaker than its teacher is not pushed to
    copy exact probabilities it cannot reach. The paper's defaults: beta = gamma = 1, T = 1 (ImageNet).
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        if beta < 0 or gamma < 0:
            raise ValueError(f"beta and gamma must be >= 0, got beta={beta}, gamma={gamma}")
        self.beta, self.gamma = float(beta), float(gamma)
        self.temperature = check_temperature(temperature)

    def forward(self, inputs: LossInputs) -> Tensor:
        T = self.temperature
        p_s = (inputs.student_logits / T).softmax(1)
        p_t = (self.teacher_logits(inputs) / T).softmax(1)
        inter, intra = pearson_distance(p_s, p_t), pearson_distance(p_s.T, p_t.T)
        return T**2 * (self.beta * inter + self.gamma * intra)
