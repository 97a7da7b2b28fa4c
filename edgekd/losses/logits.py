"""Losses on logits only: cross-entropy, Hinton KD and logit matching."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import DistillLoss, LossInputs, register


def kd_term(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,  # log-probs on both sides: stable when the teacher is very confident
    )
    return kl * temperature**2


def check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


@register("ce")
class CrossEntropy(DistillLoss):
    """Cross-entropy with the ground-truth labels: ``-mean_i log softmax(s_i)[y_i]``.

    ``label_smoothing`` (in [0, 1)) mixes the one-hot target with the uniform
    distribution (Szegedy et al., 2016, "Rethinking the Inception Architecture"). In a mixed
    batch the loss is ``lam * CE(y) + (1 - lam) * CE(y_partner)``.
    """

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, inputs: LossInputs) -> Tensor:
        if inputs.targets_b is None:
            return F.cross_entropy(inputs.student_logits, inputs.targets, label_smoothing=self.label_smoothing)
        # a mixed batch (mixup, cutmix): the labels mixed as the inputs were (Zhang et al., 2018); lam is one
        # number for the batch, or one per sample (fixed views)
        ce = lambda targets: F.cross_entropy(inputs.student_logits, targets, label_smoothing=self.label_smoothing,  # noqa: E731
                                             reduction="none")
        return (inputs.lam * ce(inputs.targets) + (1.0 - inputs.lam) * ce(inputs.targets_b)).mean()


@register("kd")
class HintonKD(DistillLoss):
    """Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge
    in a Neural Network"):

        L = T^2 * KL(softmax(t / T) || softmax(s / T))      (batchmean)

    The ``T^2`` keeps the gradient magnitude roughly independent of ``T`` (the soft
    gradients scale as ``1/T^2``), so the weight against ``ce`` need not be retuned
    when ``T`` changes.
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(self, inputs: LossInputs) -> Tensor:
        return kd_term(inputs.student_logits, self.teacher_logits(inputs), self.temperature)


@register("logit_mse")
class LogitMSE(DistillLoss):
    """Logit matching (Ba & Caruana, 2014, "Do Deep Nets Really Need to be Deep?"):

        L = mean_{i,k} (s_ik - t_ik)^2

    Regresses the student's logits on the teacher's, with no softmax in between.
    """

    def forward(self, inputs: LossInputs) -> Tensor:
        return F.mse_loss(inputs.student_logits, self.teacher_logits(inputs))
