"""Distillation losses, registered by name for ``distill.losses`` in the pipeline YAML.

Each loss is a small ``DistillLoss`` module; a new one is one new module that
decorates its class with ``@register("name")`` and is imported below.
"""

from __future__ import annotations

from .base import LOSSES, DistillLoss, FeaturePair, LossInputs, register
from .composite import CompositeLoss, build_loss, check_specs, logit_only

# Imported for their registrations.
from .logits import CrossEntropy, HintonKD, LogitMSE  # noqa: E402
from .multi_teacher import MultiTeacherKD  # noqa: E402
from .fitnet import FitNet  # noqa: E402
from .attention import AttentionTransfer  # noqa: E402
from .relational import RelationalKD, SimilarityPreserving  # noqa: E402

__all__ = [
    "LOSSES", "DistillLoss", "FeaturePair", "LossInputs", "CompositeLoss", "build_loss", "check_specs", "logit_only", "register",
    "CrossEntropy", "HintonKD", "LogitMSE", "MultiTeacherKD", "FitNet", "AttentionTransfer",
    "RelationalKD", "SimilarityPreserving",
]
