"""Contracts generated from the loss registry: every registered loss, the day it is added.

Each loss builds from its defaults and its own example feature pairs (``example_pairs``), gives a
finite scalar whose gradient reaches the student (never the teacher), and a loss that learns from the
teacher is at its minimum where the student already matches it: a zero gradient there, and a zero
value unless the loss declares a constant minimum (``zero_where_matched``). Each loss's own formula is
checked in tests/test_losses.py and tests/test_tinybert_losses.py.
"""

from __future__ import annotations

import pytest
import torch

from edgekd.losses import LOSSES, LossInputs

B, K = 8, 10


def example(name: str):
    """The loss built from its defaults and set up on its example pairs, with random features of their shapes."""
    cls = LOSSES.get(name)
    examples = cls.example_pairs(B)
    loss = cls()
    loss.setup([p for p, _, _ in examples], {p.student: s for p, s, _ in examples}, {p.teacher: t for p, _, t in examples})
    student = {p.student: torch.randn(s) for p, s, _ in examples}
    teacher = {p.teacher: torch.randn(t) for p, _, t in examples}
    return loss, examples, student, teacher


def inputs(student_logits, teacher_logits, student_features, teacher_features) -> LossInputs:
    return LossInputs(
        student_logits=student_logits, targets=torch.arange(B) % K, teacher_logits=teacher_logits,
        teacher_logits_each=[teacher_logits, teacher_logits],
        student_features=student_features, teacher_features=teacher_features,
    )


def matched(examples, student: dict) -> dict:
    """Teacher features equal to the student's (the example pairs have equal shapes)."""
    return {p.teacher: student[p.student].detach().clone() for p, _, _ in examples}


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_loss_is_a_finite_scalar_whose_gradient_reaches_the_student_only(name):
    torch.manual_seed(0)
    loss, _, features, teacher_features = example(name)
    student = torch.randn(B, K, requires_grad=True)
    teacher = torch.randn(B, K, requires_grad=True)
    for f in [*features.values(), *teacher_features.values()]:
        f.requires_grad_()
    value = loss(inputs(student, teacher, features, teacher_features))
    assert value.dim() == 0 and torch.isfinite(value), f"{name}: {value}"
    value.backward()
    reached = [g for g in (student.grad, *(f.grad for f in features.values())) if g is not None]  # logits, features or both
    assert reached and all(torch.isfinite(g).all() for g in reached), f"{name}: no finite gradient to the student"
    assert sum(float(g.abs().sum()) for g in reached) > 0, f"{name}: a zero gradient to the student"
    assert teacher.grad is None and all(f.grad is None for f in teacher_features.values()), \
        f"{name}: the teacher would be trained"


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if LOSSES.get(n).needs_teacher])
def test_a_loss_that_learns_from_the_teacher_is_at_its_minimum_where_the_student_matches_it(name):
    torch.manual_seed(0)
    loss, examples, features, _ = example(name)
    logits = torch.randn(B, K, requires_grad=True)
    for f in features.values():
        f.requires_grad_()
    value = loss(inputs(logits, logits.detach().clone(), features, matched(examples, features)))
    grads = torch.autograd.grad(value, [logits, *features.values()], allow_unused=True)
    same = float(value.detach())
    assert all(g is None or float(g.abs().max()) < 1e-5 for g in grads), f"{name}: not a stationary point at the match"
    loss, _, features, teacher_features = example(name)
    different = loss(inputs(logits.detach(), torch.randn(B, K), features, teacher_features))
    assert float(different) > same + 1e-4, f"{name}: {float(different)} where they disagree, {same} where they agree"
    if LOSSES.get(name).zero_where_matched:
        assert same == pytest.approx(0.0, abs=1e-5), f"{name}: {same} where student and teacher agree"
