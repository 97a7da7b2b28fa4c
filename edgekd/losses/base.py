"""What every distillation loss sees and implements.

A loss is a small ``DistillLoss`` module registered in ``LOSSES`` under the name
used in the pipeline YAML (``distill.losses[i].name``). The trainer builds one
``LossInputs`` per batch and calls the ``CompositeLoss`` built from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import ConfigError, StageError
from ..registry import Registry


@dataclass
class LossInputs:
    student_logits: Tensor  # (B, K)
    targets: Tensor  # (B,) int64
    teacher_logits: Tensor | None  # (B, K) aggregated teacher logits (ensemble already applied), or None
    teacher_logits_each: list[Tensor] = field(default_factory=list)  # per-teacher logits; may be empty
    student_features: dict[str, Tensor] = field(default_factory=dict)  # keyed by student module name
    teacher_features: dict[str, Tensor] = field(default_factory=dict)  # keyed by teacher module name


@dataclass(frozen=True)
class FeaturePair:
    student: str
    teacher: str


class DistillLoss(nn.Module):
    """Base. Subclasses implement ``forward(inputs: LossInputs) -> scalar Tensor``."""

    name: str = "?"  # set by ``register`` to the registry name, for error messages
    needs_teacher: bool = True  # False for plain cross-entropy
    needs_features: bool = False  # True for losses that only work on feature pairs

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[FeaturePair] = []

    def setup(
        self,
        pairs: list[FeaturePair],
        student_shapes: dict[str, torch.Size],
        teacher_shapes: dict[str, torch.Size],
    ) -> None:
        """Called once before training with feature shapes (incl. batch dim) so losses can
        build learned parts (e.g. FitNets adapters). Default: store the pairs."""
        self.pairs = list(pairs)

    # -- helpers for subclasses ---------------------------------------------------------
    def teacher_logits(self, inputs: LossInputs) -> Tensor:
        if inputs.teacher_logits is None:
            raise StageError(f"loss {self.name!r} needs teacher logits, but none were given")
        # Cached teacher outputs may be float16; compare in the student's precision.
        return inputs.teacher_logits.detach().to(inputs.student_logits.dtype)

    def feature_pairs(self, inputs: LossInputs) -> Iterator[tuple[FeaturePair, Tensor, Tensor]]:
        """Yield ``(pair, student_feature, teacher_feature)`` for each configured pair."""
        if not self.pairs:
            raise ConfigError(f"distill.features: loss {self.name!r} needs at least one student/teacher feature pair")
        for pair in self.pairs:
            s = inputs.student_features.get(pair.student)
            t = inputs.teacher_features.get(pair.teacher)
            if s is None or t is None:
                side, missing = ("student", pair.student) if s is None else ("teacher", pair.teacher)
                raise StageError(f"loss {self.name!r}: no {side} feature was recorded for module {missing!r}")
            yield pair, s, t.detach().to(s.dtype)


LOSSES = Registry[type[DistillLoss]]("loss")


def register(name: str):
    """``LOSSES.register`` that also records the name on the class."""

    def decorator(cls: type[DistillLoss]) -> type[DistillLoss]:
        cls.name = name
        return LOSSES.register(name)(cls)

    return decorator
