"""Output parity between a reference and a candidate: max absolute difference and top-1 agreement.

Used by the export stage (ONNX Runtime vs PyTorch) and by every compiled
artifact (its runtime vs the reference). Beyond tolerance it fails; there is
no "succeeded with a warning".
"""

from __future__ import annotations

import numpy as np

from .errors import StageError
from .records import Parity


def compare(reference, candidate, *, atol: float, min_top1_agreement: float) -> Parity:
    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise StageError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    max_abs_diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    top1_agreement = float((reference.argmax(1) == candidate.argmax(1)).mean()) if len(reference) else 1.0
    return Parity(
        max_abs_diff=max_abs_diff, top1_agreement=top1_agreement, samples=int(len(reference)), atol=float(atol),
        min_top1_agreement=float(min_top1_agreement), ok=max_abs_diff <= atol and top1_agreement >= min_top1_agreement,
    )


def require(parity: Parity, what: str) -> Parity:
    if not parity.ok:
        raise StageError(f"{what} failed the parity check: {parity.describe()}")
    return parity
