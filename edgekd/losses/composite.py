"""The weighted sum of configured losses, and building it from the pipeline YAML."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..problems import Problem, close_matches, raise_problems, unknown
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


def _check_term(spec: Any, where: str) -> tuple[list[Problem], tuple[str, float, DistillLoss] | None]:
    """Problems of one ``{"name": ..., "weight": ..., **kwargs}`` spec, and its term when there are none."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        return [Problem(where, f"expected a mapping with a 'name', got {spec!r}", f"known losses: {', '.join(LOSSES.names())}")], None
    kwargs = dict(spec)
    name = kwargs.pop("name")
    weight = kwargs.pop("weight", 1.0)  # the composite's, not the loss's
    if name not in LOSSES:
        return [unknown(f"{where}.name", "loss", name, LOSSES.names())], None
    cls = LOSSES.get(name)
    problems = []
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        problems.append(Problem(f"{where}.weight", f"{weight!r} is not a number >= 0"))
    accepted, any_kwarg = _constructor_args(cls)
    for arg in [] if any_kwarg else sorted(set(kwargs) - set(accepted)):
        problems.append(Problem(
            f"{where}.{arg}", f"loss {name!r} has no argument {arg!r}",
            ", ".join(["weight", *accepted]), close_matches(arg, ["weight", *accepted]),
        ))
    if problems:
        return problems, None
    try:
        return [], (name, float(weight), cls(**kwargs))
    except (TypeError, ValueError) as e:  # the loss's own checks of its argument values
        return [Problem(where, f"loss {name!r}: {e}")], None


def check_specs(specs: Any, *, key: str = "distill.losses") -> list[Problem]:
    """Every problem of a loss list at once: names against ``LOSSES``, arguments against each loss's
    constructor (``name`` and ``weight`` belong to the composite), argument values by building each loss."""
    if not specs:
        return [Problem(key, "at least one loss is needed", f"known losses: {', '.join(LOSSES.names())}")]
    return [p for i, spec in enumerate(specs) for p in _check_term(spec, f"{key}[{i}]")[0]]


def logit_only(specs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The specs whose loss does not need feature pairs (each loss declares ``needs_features``).

    Unknown names are kept, so building the list still reports them.
    """
    return [s for s in specs if not (s.get("name") in LOSSES and LOSSES.get(s["name"]).needs_features)]


def build_loss(specs: list[Mapping[str, Any]], *, key: str = "distill.losses") -> CompositeLoss:
    """Build a ``CompositeLoss`` from ``[{"name": ..., "weight": 1.0, **kwargs}, ...]``.

    Errors name every offending config key (``{key}[i].name``, ``{key}[i].weight``, ``{key}[i].ARG``).
    """
    checked = [_check_term(spec, f"{key}[{i}]") for i, spec in enumerate(specs or [])]
    raise_problems(check_specs(specs, key=key) if not checked else [p for found, _ in checked for p in found],
                   f"{key} cannot be built")
    return CompositeLoss([term for _, term in checked])
