"""Averaging several teachers' logits."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..errors import ConfigError


class Ensemble(nn.Module):
    """Weighted average of the members' logits.

    ``mode="mean"``: equal weights (``weights`` must be None). ``mode="weighted"``:
    ``weights`` (one non-negative number per member, normalised to sum 1).
    Members live in ``members`` (an nn.ModuleList), so hook names read
    ``members.0.layer2``.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        weights: Sequence[float] | None = None,
        mode: str = "mean",
        *,
        key: str = "ensemble",
    ) -> None:
        super().__init__()
        if not models:
            raise ConfigError(f"{key}: an ensemble needs at least one model")
        if mode == "mean":
            if weights is not None:
                raise ConfigError(f"{key}: weights given but mode is 'mean'; use mode 'weighted'")
            weights = [1.0] * len(models)
        elif mode == "weighted":
            if weights is None or len(weights) != len(models):
                raise ConfigError(f"{key}: mode 'weighted' needs {len(models)} weights, got {weights}")
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ConfigError(f"{key}: weights must be >= 0 with a positive sum, got {list(weights)}")
        else:
            raise ConfigError(f"{key}: unknown ensemble mode {mode!r}; expected 'mean' or 'weighted'")
        total = float(sum(weights))
        self.mode = mode
        self.weights = [float(w) / total for w in weights]
        self.members = nn.ModuleList(models)

    @property
    def is_onnx(self) -> bool:
        return all(getattr(m, "is_onnx", False) for m in self.members)

    def forward(self, x: Tensor) -> Tensor:
        out = None
        for weight, member in zip(self.weights, self.members):
            logits = member(x).float() * weight
            out = logits if out is None else out + logits
        return out
