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
    targets: Tensor  # (B,) int64; in a mixed batch (mixup, cutmix) each sample's dominant label
    teacher_logits: Tensor | None  # (B, K) aggregated teacher logits (ensemble already applied), or None
    teacher_logits_each: list[Tensor] = field(default_factory=list)  # per-teacher logits; may be empty
    student_features: dict[str, Tensor] = field(default_factory=dict)  # keyed by student module name
    teacher_features: dict[str, Tensor] = field(default_factory=dict)  # keyed by teacher module name
    targets_b: Tensor | None = None  # mixed batch: the partner sample's labels, weighted 1 - lam
    lam: float | Tensor = 1.0  # mixed batch: each sample's own share (>= 0.5), or one per sample (fixed views)


@dataclass(frozen=True)
class FeaturePair:
    """A student module whose output is compared with a teacher module's.

    ``kind`` says what the outputs are, for losses with one formula per part (TinyBERT):
    ``"embedding"`` (B, L, H), ``"hidden"`` (B, L, H) or ``"attention"`` (B, heads, L, L) scores.
    ``layer_pairs`` sets it; pairs listed by hand in ``distill.features`` leave it None.
    """

    student: str
    teacher: str
    kind: str | None = None


class DistillLoss(nn.Module):
    """Base. Subclasses implement ``forward(inputs: LossInputs) -> scalar Tensor``."""

    name: str = "?"  # set by ``register`` to the registry name, for error messages
    needs_teacher: bool = True  # False for plain cross-entropy
    needs_features: bool = False  # True for losses that only work on feature pairs
    # Where the student matches the teacher the loss is at its minimum; False where that minimum is a
    # constant above zero (soft cross-entropy keeps the teacher's entropy).
    zero_where_matched: bool = True

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

    @classmethod
    def example_pairs(cls, batch: int) -> list[tuple[FeaturePair, torch.Size, torch.Size]]:
        """Pairs with feature shapes (student, teacher) this loss accepts, for the contract tests generated
        from the registry (tests/test_loss_contracts.py). Default: one 4-D feature map of equal shapes."""
        shape = torch.Size((batch, 6, 5, 5))
        return [(FeaturePair("s.block", "t.block"), shape, shape)]

    # -- helpers for subclasses ---------------------------------------------------------
    def teacher_logits(self, inputs: LossInputs) -> Tensor:
        if inputs.teacher_logits is None:
            raise StageError(f"loss {self.name!r} needs teacher logits, but none were given")
        # Cached teacher outputs may be float16; compare in the student's precision.
        return inputs.teacher_logits.detach().to(inputs.student_logits.dtype)

    def feature_pairs(
        self, inputs: LossInputs, pairs: list[FeaturePair] | None = None
    ) -> Iterator[tuple[FeaturePair, Tensor, Tensor]]:
        """Yield ``(pair, student_feature, teacher_feature)`` for each of ``pairs`` (default: every configured pair)."""
        pairs = self.pairs if pairs is None else pairs
        if not pairs:
            raise ConfigError(f"distill.features: loss {self.name!r} needs at least one student/teacher feature pair")
        for pair in pairs:
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
