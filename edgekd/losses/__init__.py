"""Distillation losses, registered by name for ``distill.losses`` in the pipeline YAML.

Each loss is a small ``DistillLoss`` module; a new one is one new module that
decorates its class with ``@register("name")``; it is found by ``discover``.
"""

from __future__ import annotations

from ..registry import discover
from .base import LOSSES, DistillLoss, FeaturePair, LossInputs, register
from .composite import CompositeLoss, build_loss, check_specs, logit_only
from .layer_map import layer_pairs  # feature pairs for distill.layer_map

# Every other module here is a loss family that registers itself: a new loss is one new file.
discover(__name__)

__all__ = [
    "LOSSES", "DistillLoss", "FeaturePair", "LossInputs", "CompositeLoss", "build_loss", "check_specs", "layer_pairs",
    "logit_only", "register",
]
