"""Per-channel standardisation, fitted on the training split only (no test leakage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import DataError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

MIN_STD = 1e-6  # a constant channel (e.g. an all-black border) must not divide by zero


@dataclass
class Normalization:
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, x: np.ndarray) -> "Normalization":
        """Mean and (population) std per channel of ``x`` (N, C, H, W), over N, H and W."""
        x = np.asarray(x, dtype=np.float64)  # float64 sums: no drift on large datasets
        if x.ndim != 4 or len(x) == 0:
            raise DataError(f"normalization: expected a non-empty (N, C, H, W) array, got shape {tuple(x.shape)}")
        mean = x.mean(axis=(0, 2, 3))
        std = np.maximum(x.std(axis=(0, 2, 3)), MIN_STD)
        return cls([float(m) for m in mean], [float(s) for s in std])

    def apply(self, x: ArrayT) -> ArrayT:
        """(x - mean) / std over channel dim 1 of (N, C, H, W) (or dim 0 of one (C, H, W) sample)."""
        if x.ndim < 3 or x.shape[-3] != len(self.mean):
            raise DataError(
                f"normalization: expected {len(self.mean)} channel(s) at dim -3, got shape {tuple(x.shape)}"
            )
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            mean = torch.tensor(self.mean, dtype=dtype, device=x.device).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=dtype, device=x.device).view(-1, 1, 1)
            return (x.to(dtype) - mean) / std
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        mean = np.asarray(self.mean, dtype=dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=dtype).reshape(-1, 1, 1)
        return ((x.astype(dtype, copy=False) - mean) / std).astype(dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Normalization":
        return cls([float(m) for m in data["mean"]], [float(s) for s in data["std"]])
