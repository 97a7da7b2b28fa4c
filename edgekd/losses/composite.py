"""The weighted sum of configured losses, and building it from the pipeline YAML."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import LOSSES, DistillLoss, FeaturePair, LossInputs


class CompositeLoss(nn.Module):
    """``total = sum_i weight_i * term_i(inputs)``; also reports each unweighted term.

    Term labels are the loss names; a name used more than once gets its index,
    e.g. ``kd[0]`` and ``kd[2]``.
    """

    def __init__(self, terms: list[tuple[str, float, DistillLoss]]) -> None:
        super().__init__()
        counts = Counter(name for name, _, _ in terms)
        self.labels = [name if counts[name] == 1 else f"{name}[{i}]" for i, (name, _, _) in enumerate(terms)]
        self.weights = [float(w) for _, w, _ in terms]
        self.terms = nn.ModuleList(loss for _, _, loss in terms)  # adapters show up in .parameters()

    @property
    def needs_teacher(self) -> bool:
        return any(t.needs_teacher for t in self.terms)

    @property
    def needs_features(self) -> bool:
        return any(t.needs_features for t in self.terms)

    def setup(self, pairs: list[FeaturePair], student_shapes: dict[str, torch.Size], teacher_shapes: dict[str, torch.Size]) -> None:
        for term in self.terms:
            term.setup(pairs, student_shapes, teacher_shapes)

    def forward(self, inputs: LossInputs) -> tuple[Tensor, dict[str, float]]:
        total = inputs.student_logits.new_zeros(())
        values: dict[str, float] = {}
        for label, weight, term in zip(self.labels, self.weights, self.terms):
            value = term(inputs)
            total = total + weight * value
            values[label] = float(value.detach())
        return total, values


def _constructor_args(cls: type) -> tuple[list[str], bool]:
    """Keyword names ``cls`` accepts, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def build_loss(specs: list[dict[str, Any]], *, key: str = "distill.losses") -> CompositeLoss:
    """Build a ``CompositeLoss`` from ``[{"name": ..., "weight": 1.0, **kwargs}, ...]``.

    Errors name the offending config key (``{key}[i].name``, ``{key}[i].weight``, ``{key}[i]``).
    """
    if not specs:
        raise ConfigError(f"{key}: at least one loss is needed; known losses: {', '.join(LOSSES.names())}")
    terms = []
    for i, spec in enumerate(specs):
        where = f"{key}[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{where}: expected a mapping with a 'name'; known losses: {', '.join(LOSSES.names())}")
        kwargs = dict(spec)
        name = kwargs.pop("name")
        weight = kwargs.pop("weight", 1.0)
        cls = LOSSES.get(name, key=f"{where}.name")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ConfigError(f"{where}.weight: must be a number >= 0, got {weight!r}")
        accepted, any_kwarg = _constructor_args(cls)
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown and not any_kwarg:
            raise ConfigError(
                f"{where}: loss {name!r} got unexpected argument(s) {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(['weight', *accepted])}"
            )
        try:
            loss = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: loss {name!r}: {e}") from None
        terms.append((name, float(weight), loss))
    return CompositeLoss(terms)
