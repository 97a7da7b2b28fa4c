"""Output parity between a reference and a candidate: max absolute difference, SQNR and top-1 agreement.

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

Where INT8 sections are separated by float ones (the ``transformer`` scheme: INT8 matmul inputs,
float LayerNorm, softmax and residual stream), one input rounding to the neighbouring step inside the
network moves the logits by several output steps, so a runtime that evaluates the float parts in a
different order fails a step bound without being wrong. Such artifacts are judged by SQNR, the
signal-to-quantization-noise ratio of the candidate against the reference in dB (torchao's
``compute_error``: 20 log10(|reference| / |reference - candidate|)), which is reported for every check.
"""

from __future__ import annotations

import numpy as np

from .errors import StageError
from .records import Parity

STEP_ALLOWANCE = 1e-3  # output steps; see the module docstring


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """20 log10(|reference| / |reference - candidate|); None for identical outputs (an infinite ratio)."""
    noise = float(np.linalg.norm(reference - candidate))
    signal = float(np.linalg.norm(reference))
    if noise == 0.0:
        return None
    return 20.0 * float(np.log10(max(signal, 1e-30) / noise))


def compare(reference, candidate, *, atol: float | None = None, min_top1_agreement: float,
            step: float | None = None, limit_steps: float | None = None, min_sqnr_db: float | None = None) -> Parity:
    """Compare within ``atol`` (absolute) or within ``limit_steps`` whole steps of size ``step`` (INT8), and/or with
    an SQNR of at least ``min_sqnr_db`` (alone: INT8 with float sections, where ``step`` only reports the difference
    in steps; beside a bound: a floor the config sets per precision)."""
    if ((atol is not None and limit_steps is not None) or (limit_steps is not None and step is None)
            or (atol is not None and step is not None) or (atol is None and limit_steps is None and min_sqnr_db is None)):
        raise ValueError("compare needs atol, or step with limit_steps, or min_sqnr_db (alone or beside either)")
    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise StageError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    max_abs_diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    top1_agreement = float((reference.argmax(1) == candidate.argmax(1)).mean()) if len(reference) else 1.0
    sqnr = sqnr_db(reference, candidate)
    steps = max_abs_diff / step if step else None
    close = True
    if limit_steps is not None:
        atol, close = limit_steps * step, steps <= limit_steps + STEP_ALLOWANCE
    elif atol is not None:
        close = max_abs_diff <= atol
    if min_sqnr_db is not None:
        close = close and (sqnr is None or sqnr >= min_sqnr_db)
    return Parity(
        max_abs_diff=max_abs_diff, top1_agreement=top1_agreement, samples=int(len(reference)),
        atol=None if atol is None else float(atol), min_top1_agreement=float(min_top1_agreement),
        ok=close and top1_agreement >= min_top1_agreement, max_diff_steps=steps, step=None if step is None else float(step),
        sqnr_db=sqnr, min_sqnr_db=min_sqnr_db,
    )


def require(parity: Parity, what: str) -> Parity:
    if not parity.ok:
        raise StageError(f"{what} failed the parity check: {parity.describe()}")
    return parity
