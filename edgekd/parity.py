"""Output parity between a reference and a candidate: max absolute difference and top-1 agreement.

Used by the export stage (ONNX Runtime vs PyTorch) and by every compiled
artifact (its runtime vs the reference). Beyond tolerance it fails; there is
no "succeeded with a warning".

INT8 outputs are whole multiples of the output quantizer's step, so their
tolerance is a number of steps: the difference is divided by the step and
compared with the limit, allowing ``STEP_ALLOWANCE`` for float rounding.
Dequantized values are ``step * k`` computed in float32 (relative error about
1.2e-7 per operation) with ``|k| <= 255``, so a difference of exactly ``n`` steps
reads as ``n`` plus at most ~1e-4 steps (the issue's 3.0000014 against 3). An
allowance of 1e-3 steps covers that tenfold and is far below the one whole step
that a real mismatch adds.
"""

from __future__ import annotations

import numpy as np

from .errors import StageError
from .records import Parity

STEP_ALLOWANCE = 1e-3  # output steps; see the module docstring


def compare(reference, candidate, *, atol: float | None = None, min_top1_agreement: float,
            step: float | None = None, limit_steps: float | None = None) -> Parity:
    """Compare within ``atol`` (absolute), or within ``limit_steps`` whole steps of size ``step`` (INT8)."""
    if (atol is None) == (step is None) or (step is None) != (limit_steps is None):
        raise ValueError("compare needs atol, or step and limit_steps")
    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise StageError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    max_abs_diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    top1_agreement = float((reference.argmax(1) == candidate.argmax(1)).mean()) if len(reference) else 1.0
    if step is None:
        steps, close = None, max_abs_diff <= atol
    else:
        steps = max_abs_diff / step
        atol, close = limit_steps * step, steps <= limit_steps + STEP_ALLOWANCE
    return Parity(
        max_abs_diff=max_abs_diff, top1_agreement=top1_agreement, samples=int(len(reference)), atol=float(atol),
        min_top1_agreement=float(min_top1_agreement), ok=close and top1_agreement >= min_top1_agreement,
        max_diff_steps=steps, step=None if step is None else float(step),
    )


def require(parity: Parity, what: str) -> Parity:
    if not parity.ok:
        raise StageError(f"{what} failed the parity check: {parity.describe()}")
    return parity
