"""Which teacher layer each student layer learns from, as feature pairs for two BERT-style encoders.

A BERT-style encoder has ``num_layers`` and the modules ``embeddings`` (B, L, H),
``encoder.layers.{i}`` (hidden state after layer i, (B, L, H)) and
``encoder.layers.{i}.attention.scores`` (pre-softmax scores with the mask added, (B, heads, L, L)).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..models.hooks import layer_problem
from ..problems import raise_problems
from .base import FeaturePair

UNIFORM = "uniform"


def uniform_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform map (Jiao et al., 2020, arXiv 1909.10351): student layer m (1-indexed) learns
    from teacher layer g(m) = m * k, k = T / S, so the last student layer learns from the last teacher layer.

    Where T / S is not an integer, g(m) is rounded half up (6 -> 4: k = 1.5, g = 2, 3, 5, 6); with
    S <= T the rounded map stays strictly increasing. Returned 0-indexed: ``[g(1) - 1, ..., g(S) - 1]``.
    """
    # round(m * T / S) half up, in integers: no float ties.
    return [(2 * m * teacher_layers + student_layers) // (2 * student_layers) - 1 for m in range(1, student_layers + 1)]


def layer_pairs(student: nn.Module, teacher: nn.Module, layer_map: str | list[int] = UNIFORM,
                key: str = "distill.layer_map") -> list[FeaturePair]:
    """The feature pairs of TinyBERT-style layer distillation between two BERT-style encoders.

    ``layer_map`` is ``"uniform"`` (see ``uniform_map``) or an explicit list of teacher layer indices
    (0-indexed), one per student layer, strictly increasing. Returns the embedding pair (kind
    ``"embedding"``), then per student layer i <- teacher layer j its hidden state (``"hidden"``), then its
    attention scores (``"attention"``). Errors name ``key`` and what would work.
    """
    s_layers, t_layers = _num_layers(student, "student", key), _num_layers(teacher, "teacher", key)
    if s_layers > t_layers:
        raise ConfigError(
            f"{key}: the student has {s_layers} layers and the teacher {t_layers}; each student layer needs its "
            f"own teacher layer: use a student with at most {t_layers} layers"
        )
    mapping = uniform_map(s_layers, t_layers) if layer_map == UNIFORM else _checked(layer_map, s_layers, t_layers, key)
    pairs = [FeaturePair("embeddings", "embeddings", "embedding")]
    pairs += [FeaturePair(f"encoder.layers.{i}", f"encoder.layers.{j}", "hidden") for i, j in enumerate(mapping)]
    pairs += [
        FeaturePair(f"encoder.layers.{i}.attention.scores", f"encoder.layers.{j}.attention.scores", "attention")
        for i, j in enumerate(mapping)
    ]
    problems = [layer_problem(student, p.student, key, what="the student") for p in pairs]
    problems += [layer_problem(teacher, p.teacher, key, what="the teacher") for p in pairs]
    raise_problems([p for p in problems if p is not None], f"{key}: the models are not BERT-style encoders")
    return pairs


def _num_layers(model: nn.Module, role: str, key: str) -> int:
    n = getattr(model, "num_layers", None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(
            f"{key}: the {role} ({type(model).__name__}) has no num_layers, so it is not a BERT-style encoder; "
            f"a layer map pairs encoders with modules embeddings, encoder.layers.<i> and "
            f"encoder.layers.<i>.attention.scores (the zoo's 'bert'); for other models leave {key} unset "
            f"and list distill.features"
        )
    return n


def _checked(layer_map: Any, s_layers: int, t_layers: int, key: str) -> list[int]:
    """An explicit map: one teacher index per student layer, in range, strictly increasing."""
    works = (f"'uniform' (here {uniform_map(s_layers, t_layers)}) or a list of {s_layers} strictly increasing "
             f"teacher layer indices in 0..{t_layers - 1}")
    if not isinstance(layer_map, (list, tuple)) or any(isinstance(j, bool) or not isinstance(j, int) for j in layer_map):
        raise ConfigError(f"{key}: {layer_map!r} is not 'uniform' nor a list of integers; accepted: {works}")
    if len(layer_map) != s_layers:
        raise ConfigError(
            f"{key}: {list(layer_map)} has {len(layer_map)} entries for a student of {s_layers} layers; accepted: {works}"
        )
    outside = [j for j in layer_map if not 0 <= j < t_layers]
    if outside:
        raise ConfigError(
            f"{key}: {list(layer_map)} names teacher layers {outside} outside 0..{t_layers - 1} "
            f"(the teacher has {t_layers}); accepted: {works}"
        )
    if any(b <= a for a, b in zip(layer_map, layer_map[1:])):
        raise ConfigError(f"{key}: {list(layer_map)} is not strictly increasing; accepted: {works}")
    return list(layer_map)
