"""Checks that stop bad data before any training starts.

Every message names the source and what was expected, so the user can fix the
file rather than debug a NaN loss three stages later.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .raw import RawData


def _real(dtype: np.dtype) -> bool:
    return dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def check_arrays(x: np.ndarray, y: np.ndarray, *, where: str) -> None:
    """Shape and dtype checks on arrays as a source produced them (before conversion).

    ``where`` prefixes each message, e.g. ``"data.source: npz:a.npz"``.
    """
    if not _real(x.dtype):
        raise DataError(f"{where}: x must be numeric (uint8/int/float), got dtype {x.dtype}")
    if not _real(y.dtype):
        raise DataError(f"{where}: y must hold integer class labels, got dtype {y.dtype}")
    if x.ndim not in (3, 4):
        raise DataError(f"{where}: x must be 3-D (N, H, W) or 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if y.ndim != 1:
        raise DataError(f"{where}: y must be 1-D (N,), got shape {tuple(y.shape)}")
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} samples but y has {len(y)} labels; expected equal lengths")
    if len(x) == 0:
        raise DataError(f"{where}: no samples; expected at least one per class")
    if np.issubdtype(y.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{where}: y must hold integer class labels; got {bad.size} non-integer value(s), "
                f"first {y[i].item()} at index {i}"
            )


def check_class_count(raw: RawData, num_classes: int | None, *, key: str = "data.source") -> RawData:
    """``raw`` with the class count the config states (``data.num_classes``), or a DataError naming the label
    or the class names that disagree with it. Without it, the count is the source's (names or labels)."""
    if num_classes is None:
        return raw
    where, names = f"{key}: {raw.source}", list(raw.class_names)
    if raw.classes_from == "names":
        if len(names) != num_classes:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise DataError(f"{where}: {len(names)} class names ({shown}), but data.num_classes is {num_classes}; "
                            f"expected {num_classes} names, or data.num_classes: {len(names)}")
        return raw
    labels = np.asarray(raw.y).astype(np.int64)
    out = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out.size:
        i = int(out[0])
        raise DataError(
            f"{where}: label {int(labels[i])} at index {i} is outside 0..{num_classes - 1}, the {num_classes} classes "
            f"data.num_classes states ({out.size} such label(s)); expected labels below {num_classes}, or "
            f"data.num_classes: {int(labels.max()) + 1}"
        )
    raw.class_names, raw.classes_from = [str(c) for c in range(num_classes)], "data.num_classes"
    return raw


def validate(raw: RawData, *, key: str = "data.source") -> None:
    """Raise ``DataError`` if ``raw`` cannot be trained on."""
    where = f"{key}: {raw.source}"
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    check_arrays(x, y, where=where)
    if x.ndim != 4:
        raise DataError(f"{where}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.argwhere(~finite)
            n_nan = int(np.isnan(x).sum())
            first = tuple(int(i) for i in bad[0])
            raise DataError(
                f"{where}: x has {len(bad)} non-finite value(s) ({n_nan} NaN, {len(bad) - n_nan} inf); "
                f"first in sample {first[0]} at index {first}; expected finite pixel values"
            )
    names = list(raw.class_names)
    labels = y.astype(np.int64)
    if labels.min() < 0:  # before the class count, which a negative label makes meaningless
        i = int(np.flatnonzero(labels < 0)[0])
        raise DataError(f"{where}: label {int(labels[i])} at index {i} is negative; expected class labels 0..C-1")
    if len(names) < 2:
        raise DataError(f"{where}: {len(names)} class(es) {names}; expected at least 2")
    out = np.flatnonzero((labels < 0) | (labels >= len(names)))
    if out.size:
        i = int(out[0])
        raise DataError(
            f"{where}: label {int(labels[i])} at index {i} is outside 0..{len(names) - 1} "
            f"({len(names)} classes; {out.size} bad label(s) in all)"
        )
    counts = np.bincount(labels, minlength=len(names))
    empty = [f"{names[c]!r} (label {c})" for c in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"{where}: class {', '.join(empty)} has no samples; expected every class to have some")
