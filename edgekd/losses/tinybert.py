"""TinyBERT's losses (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
arXiv 1909.10351): embedding, hidden-state and attention-score MSE, and the prediction layer's soft
cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import DistillLoss, FeaturePair, LossInputs, register
from .logits import check_temperature

KINDS = ("embedding", "hidden", "attention")
# Scores at or below this are masked positions (BERT adds -10000, or -inf, to padded keys), as in the
# official TinyBERT code; a genuine score that low would be zeroed too.
MASKED = -1e2
FIX = "set distill.layer_map ('uniform' or a list of teacher layers) so its pairs are made"


def zero_masked(scores: Tensor) -> Tensor:
    """Attention scores with masked positions (<= -1e2) replaced by 0, so the mask's size does not count."""
    return torch.where(scores <= MASKED, torch.zeros_like(scores), scores)


@register("tinybert")
class TinyBERT(DistillLoss):
    """TinyBERT's Transformer-layer distillation, one term with a weight per part:

        L_embd = MSE(E_s W_e, E_t)                      embeddings (B, L, H)
        L_hidn = mean_pairs MSE(H_s W_h, H_t)           hidden states after each mapped layer
        L_attn = mean_pairs MSE(A_s, A_t)               unnormalized attention scores (B, heads, L, L)
        L      = embedding * L_embd + hidden * L_hidn + attention * L_attn

    Pairs come from ``layer_pairs`` (``distill.layer_map``), each with its ``kind``. ``W_e`` and ``W_h``
    are learned ``Linear`` projections from the student's width to the teacher's, with a bias like the
    official code's ``fit_dense``; the paper has one W_h for all layers and so does this loss (the official
    code also shares it with the embeddings). They are built in ``setup`` when the widths differ, identity
    when equal, and train with the student. Masked score positions (<= -1e2) are set to 0 on both sides
    before the MSE, as in the official code; heads must match. Each part averages over its pairs (the
    official code sums over layers, which is the mean times the layer count). A part with weight 0 needs
    no pairs.
    """

    needs_features = True

    def __init__(self, embedding: float = 1.0, hidden: float = 1.0, attention: float = 1.0) -> None:
        super().__init__()
        self.part_weights = {"embedding": float(embedding), "hidden": float(hidden), "attention": float(attention)}
        if any(not w >= 0 for w in self.part_weights.values()) or not any(self.part_weights.values()):
            raise ValueError(f"embedding, hidden and attention must be >= 0 and not all 0, got {self.part_weights}")
        self.by_kind: dict[str, list[FeaturePair]] = {}
        self.w_e: nn.Module = nn.Identity()
        self.w_h: nn.Module = nn.Identity()

    @classmethod
    def example_pairs(cls, batch: int) -> list[tuple[FeaturePair, torch.Size, torch.Size]]:
        tokens, hidden, scores = torch.Size((batch, 7, 8)), torch.Size((batch, 7, 8)), torch.Size((batch, 2, 7, 7))
        return [
            (FeaturePair("s.emb", "t.emb", "embedding"), tokens, tokens),
            *((FeaturePair(f"s.layer{i}", f"t.layer{2 * i + 1}", "hidden"), hidden, hidden) for i in range(2)),
            *((FeaturePair(f"s.att{i}", f"t.att{2 * i + 1}", "attention"), scores, scores) for i in range(2)),
        ]

    def setup(self, pairs: list[FeaturePair], student_shapes: dict[str, torch.Size], teacher_shapes: dict[str, torch.Size]) -> None:
        super().setup(pairs, student_shapes, teacher_shapes)
        # A part with weight 0 is left out: its pairs are neither checked nor compared.
        self.by_kind = {k: [p for p in self.pairs if p.kind == k and self.part_weights[k] > 0] for k in KINDS}
        missing = [k for k in KINDS if self.part_weights[k] > 0 and not self.by_kind[k]]
        if missing:
            raise ConfigError(
                f"distill.layer_map: loss 'tinybert' has no feature pair of kind {' or '.join(missing)}; {FIX}, "
                f"or give the part weight 0 (e.g. {missing[0]}: 0)"
            )
        shapes = {p: (student_shapes[p.student], teacher_shapes[p.teacher]) for ps in self.by_kind.values() for p in ps}
        self.w_e = _projection("embedding", self.by_kind["embedding"], shapes)
        self.w_h = _projection("hidden", self.by_kind["hidden"], shapes)
        for pair in self.by_kind["attention"]:
            s, t = shapes[pair]
            if len(s) != 4 or len(t) != 4 or s[0] != t[0] or s[2:] != t[2:]:
                raise ConfigError(f"distill.layer_map: 'tinybert' needs attention scores (B, heads, L, L) of the same B and L; "
                                  f"{pair.student!r} is {tuple(s)} and {pair.teacher!r} is {tuple(t)}")
            if s[1] != t[1]:
                raise ConfigError(
                    f"distill.layer_map: 'tinybert' compares attention scores head by head, but the student's "
                    f"{pair.student!r} has {s[1]} heads and the teacher's {pair.teacher!r} {t[1]}; give the student "
                    f"{t[1]} heads, or attention: 0"
                )

    def forward(self, inputs: LossInputs) -> Tensor:
        if not self.by_kind:
            raise ConfigError(f"distill.layer_map: loss 'tinybert' got no feature pairs; {FIX}")
        total = inputs.student_logits.new_zeros(())
        for kind in KINDS:
            if self.part_weights[kind] > 0:
                values = [self._part(kind, s, t) for _, s, t in self.feature_pairs(inputs, self.by_kind[kind])]
                total = total + self.part_weights[kind] * torch.stack(values).mean()
        return total

    def _part(self, kind: str, s: Tensor, t: Tensor) -> Tensor:
        if kind == "embedding":
            return F.mse_loss(self.w_e(s), t)
        if kind == "hidden":
            return F.mse_loss(self.w_h(s), t)
        return F.mse_loss(zero_masked(s), zero_masked(t))


def _projection(kind: str, pairs: list[FeaturePair], shapes: dict) -> nn.Module:
    """One learned ``Linear`` (student width -> teacher width) shared by the pairs of a kind; identity when equal."""
    widths = set()
    for pair in pairs:
        s, t = shapes[pair]
        if len(s) != 3 or len(t) != 3 or s[:2] != t[:2]:
            raise ConfigError(f"distill.layer_map: 'tinybert' needs {kind} outputs (B, L, H) of the same B and L; "
                              f"{pair.student!r} is {tuple(s)} and {pair.teacher!r} is {tuple(t)}")
        widths.add((s[2], t[2]))
    if len(widths) > 1:
        raise ConfigError(f"distill.layer_map: 'tinybert' shares one {kind} projection, but the {kind} pairs "
                          f"have widths (student, teacher) {sorted(widths)}; pair layers of one encoder each")
    if not widths:
        return nn.Identity()
    ((s_width, t_width),) = widths
    return nn.Identity() if s_width == t_width else nn.Linear(s_width, t_width)


@register("soft_ce")
class SoftCrossEntropy(DistillLoss):
    """TinyBERT's prediction-layer loss, soft cross-entropy with temperature T:

        L_pred = -(1/B) sum_i sum_k softmax(t_i / T)_k * log_softmax(s_i / T)_k

    It differs from ``kd``'s KL(softmax(t/T) || softmax(s/T)) by the teacher's entropy, a constant for the
    student (same gradients), so it is not 0 where the student matches the teacher; ``kd`` also multiplies
    by T^2 and this does not (as in TinyBERT). The official code averages over classes as well as the
    batch (this value divided by the class count).
    """

    zero_where_matched = False  # its minimum is the teacher's entropy

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(self, inputs: LossInputs) -> Tensor:
        s, t = inputs.student_logits, self.teacher_logits(inputs)
        target = F.softmax(t / self.temperature, dim=1)
        return -(target * F.log_softmax(s / self.temperature, dim=1)).sum(dim=1).mean()
