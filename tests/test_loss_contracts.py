"""Contracts generated from the loss registry: every registered loss, the day it is added.

Each loss builds from its defaults, gives a finite scalar whose gradient reaches the student
(never the teacher), and a loss that learns from the teacher is zero where the student already
matches it. Each loss's own formula is checked in tests/test_losses.py.
"""

from __future__ import annotations

import pytest
import torch

from edgekd.losses import LOSSES, FeaturePair, LossInputs

B, K, C, H = 8, 10, 6, 5
PAIR = FeaturePair(student="s.block", teacher="t.block")


def inputs(student_logits, teacher_logits, student_feature, teacher_feature) -> LossInputs:
    return LossInputs(
        student_logits=student_logits, targets=torch.arange(B) % K, teacher_logits=teacher_logits,
        teacher_logits_each=[teacher_logits, teacher_logits],
        student_features={PAIR.student: student_feature}, teacher_features={PAIR.teacher: teacher_feature},
    )


def built(name: str):
    loss = LOSSES.get(name)()
    shape = torch.Size((B, C, H, H))
    loss.setup([PAIR], {PAIR.student: shape}, {PAIR.teacher: shape})
    return loss


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_loss_is_a_finite_scalar_whose_gradient_reaches_the_student_only(name):
    torch.manual_seed(0)
    student = torch.randn(B, K, requires_grad=True)
    feature = torch.randn(B, C, H, H, requires_grad=True)
    teacher, teacher_feature = torch.randn(B, K, requires_grad=True), torch.randn(B, C, H, H, requires_grad=True)
    value = built(name)(inputs(student, teacher, feature, teacher_feature))
    assert value.dim() == 0 and torch.isfinite(value), f"{name}: {value}"
    value.backward()
    reached = [g for g in (student.grad, feature.grad) if g is not None]  # logits, features or both
    assert reached and all(torch.isfinite(g).all() for g in reached), f"{name}: no finite gradient to the student"
    assert sum(float(g.abs().sum()) for g in reached) > 0, f"{name}: a zero gradient to the student"
    assert teacher.grad is None and teacher_feature.grad is None, f"{name}: the teacher would be trained"


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if LOSSES.get(n).needs_teacher])
def test_a_loss_that_learns_from_the_teacher_is_zero_where_the_student_matches_it(name):
    torch.manual_seed(0)
    logits, feature = torch.randn(B, K), torch.randn(B, C, H, H)
    same = built(name)(inputs(logits.clone(), logits.clone(), feature.clone(), feature.clone()))
    different = built(name)(inputs(logits, torch.randn(B, K), feature, torch.randn(B, C, H, H)))
    assert float(same) == pytest.approx(0.0, abs=1e-5), f"{name}: {float(same)} where student and teacher agree"
    assert float(different) > 1e-4, f"{name}: {float(different)} where they disagree"
