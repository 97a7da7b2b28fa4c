"""Output parity between a reference and a candidate: max absolute difference and top-1 agreement.

Used by the export stage (ONNX Runtime vs PyTorch) and by every compiled
artifact (its runtime vs the reference). Beyond tolerance it fails; there is
no "succeeded with a warning".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import StageError


@dataclass
class Parity:
    max_abs_diff: float
    top1_agreement: float
    samples: int
    atol: float
    min_top1_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top1_agreement >= self.min_top1_agreement

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        return (
            f"max |diff| {self.max_abs_diff:.3g} (tolerance {self.atol:.3g}), "
            f"top-1 agreement {self.top1_agreement:.2%} (required {self.min_top1_agreement:.2%}) on {self.samples} inputs"
        )


def compare(reference, candidate, *, atol: float, min_top1_agreement: float) -> Parity:
    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise StageError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    return Parity(
        max_abs_diff=float(np.abs(reference - candidate).max()) if reference.size else 0.0,
        top1_agreement=float((reference.argmax(1) == candidate.argmax(1)).mean()) if len(reference) else 1.0,
        samples=int(len(reference)),
        atol=float(atol),
        min_top1_agreement=float(min_top1_agreement),
    )


def require(parity: Parity, what: str) -> Parity:
    if not parity.ok:
        raise StageError(f"{what} failed the parity check: {parity.describe()}")
    return parity
