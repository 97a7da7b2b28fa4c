"""DistilBERT's cosine loss on hidden states."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, StageError
from .base import DistillLoss, FeaturePair, LossInputs, register
from .tinybert import MASKED

LAYERS = ("last", "all")


@register("distilbert_cosine")
class DistilBERTCosine(DistillLoss):
    """DistilBERT's cosine embedding loss (Sanh et al., 2019, "DistilBERT, a distilled version of BERT",
    arXiv 1910.01108), which aligns the directions of the student's and teacher's hidden states:

        L = mean_{(b, l) not padding} (1 - cos(h_s[b, l], h_t[b, l]))

    on the pairs of kind ``"hidden"`` (``distill.layer_map``), or, when there are none, every pair in
    ``distill.features``. ``layers="last"`` uses the last hidden pair only, as DistilBERT does;
    ``"all"`` averages over them. Widths must match: a DistilBERT student keeps the teacher's width
    (use ``tinybert``'s projected MSE where they differ).

    Padding: like DistilBERT, pad tokens are left out when the padding can be seen, i.e. when the
    pairs include a teacher attention-score pair (``layer_pairs`` makes one per layer): a key position
    that is masked (scores <= -1e2) in every head and query is a pad token. Without one, every position
    counts (the recorded hidden states do not carry the mask).
    """

    needs_features = True

    def __init__(self, layers: str = "last") -> None:
        super().__init__()
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {', '.join(LAYERS)}, got {layers!r}")
        self.layers = layers
        self.hidden: list[FeaturePair] = []
        self.mask_pair: FeaturePair | None = None

    @classmethod
    def example_pairs(cls, batch: int) -> list[tuple[FeaturePair, torch.Size, torch.Size]]:
        hidden = torch.Size((batch, 7, 8))
        return [(FeaturePair(f"s.layer{i}", f"t.layer{2 * i + 1}", "hidden"), hidden, hidden) for i in range(2)]

    def setup(self, pairs: list[FeaturePair], student_shapes: dict[str, torch.Size], teacher_shapes: dict[str, torch.Size]) -> None:
        super().setup(pairs, student_shapes, teacher_shapes)
        hidden = [p for p in self.pairs if p.kind == "hidden"] or [p for p in self.pairs if p.kind is None]
        if not hidden:
            raise ConfigError("distill.layer_map: loss 'distilbert_cosine' has no hidden-state pair; set "
                              "distill.layer_map, or list (B, L, H) outputs in distill.features")
        self.hidden = hidden[-1:] if self.layers == "last" else hidden
        for pair in self.hidden:
            s, t = student_shapes[pair.student], teacher_shapes[pair.teacher]
            if len(s) != 3 or len(t) != 3 or s[:2] != t[:2]:
                raise ConfigError(f"distill.features: 'distilbert_cosine' needs hidden states (B, L, H) of the same "
                                  f"B and L; {pair.student!r} is {tuple(s)} and {pair.teacher!r} is {tuple(t)}")
            if s[2] != t[2]:
                raise ConfigError(
                    f"distill.features: 'distilbert_cosine' compares hidden states of equal width, but "
                    f"{pair.student!r} has {s[2]} and {pair.teacher!r} {t[2]}; give the student the teacher's "
                    f"hidden size {t[2]} (as DistilBERT does), or use 'tinybert' (a learned projection)"
                )
        self.mask_pair = next((p for p in self.pairs if p.kind == "attention"), None)

    def forward(self, inputs: LossInputs) -> Tensor:
        keep = self._not_padding(inputs)  # (B, L) bool, or None: every position
        values = []
        for _, s, t in self.feature_pairs(inputs, self.hidden):
            distance = 1 - F.cosine_similarity(s, t, dim=-1)  # (B, L)
            if keep is None:
                values.append(distance.mean())
            else:
                values.append((distance * keep).sum() / keep.sum().clamp(min=1))
        return torch.stack(values).mean()

    def _not_padding(self, inputs: LossInputs) -> Tensor | None:
        if self.mask_pair is None:
            return None
        scores = inputs.teacher_features.get(self.mask_pair.teacher)
        if scores is None:
            raise StageError(f"loss {self.name!r}: no teacher feature was recorded for module {self.mask_pair.teacher!r}")
        return ~(scores.detach() <= MASKED).all(dim=2).all(dim=1)  # (B, heads, L, L) -> (B, L)
