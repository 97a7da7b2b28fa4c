"""Checks that stop bad data before any training starts.

Every message names the source and what was expected, so the user can fix the
file rather than debug a NaN loss three stages later.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from ..errors import DataError
from ..problems import close_matches
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
    if raw.texts is not None:
        check_texts(raw.texts, np.asarray(raw.y), where=where)
        _check_labels(np.asarray(raw.y).astype(np.int64), list(raw.class_names), where)
        return
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
    _check_labels(y.astype(np.int64), list(raw.class_names), where)


def check_texts(texts: object, y: np.ndarray, *, where: str, row: Callable[[int], str] | None = None) -> None:
    """Texts as a source produced them: a list of non-blank strings, one per label.

    ``row(i)`` names example ``i`` in messages (a file's row and line); by default its index.
    """
    row = row or (lambda i: f"index {i}")
    if not isinstance(texts, list):
        raise DataError(f"{where}: texts must be a list of strings, got {type(texts).__name__}")
    odd = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if odd is not None:
        raise DataError(f"{where}: text at {row(odd)} is {type(texts[odd]).__name__}, not a string; expected text")
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D (N,), got shape {tuple(y.shape)}")
    if len(texts) != len(y):
        raise DataError(f"{where}: {len(texts)} texts but {len(y)} labels; expected one label per text")
    if not texts:
        raise DataError(f"{where}: no texts; expected at least one per class")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        shown = ", ".join(row(i) for i in blank[:5]) + (", ..." if len(blank) > 5 else "")
        raise DataError(f"{where}: {len(blank)} empty or whitespace-only text(s), at {shown}; "
                        "expected every example to have text (remove those rows)")


def _check_labels(labels: np.ndarray, names: list[str], where: str) -> None:
    """Labels 0..C-1 with at least 2 classes, each of which has examples."""
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


def text_labels(
    values: list[object],
    *,
    where: str,
    row: Callable[[int], str] | None = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
) -> tuple[np.ndarray, list[str], str]:
    """Labels as a text source gives them (class names, or integers 0..K-1) -> (int64 y, class names, classes_from).

    Names: the classes are the sorted unique names, unless ``class_names`` lists them (then a name outside it
    is an error). Integers: names "0".."K-1", K from ``num_classes`` (``data.num_classes``, checked) or the
    largest label + 1. A mix of the two, or anything else (blank, 1.5, true), is an error naming its row.
    """
    row = row or (lambda i: f"index {i}")
    parsed = [_label(v, where, row, i) for i, v in enumerate(values)]
    ints = [i for i, v in enumerate(parsed) if isinstance(v, int)]
    strs = [i for i, v in enumerate(parsed) if isinstance(v, str)]
    if ints and strs:
        a, b = strs[0], ints[0]
        raise DataError(f"{where}: labels mix class names and integers ({row(a)} has {parsed[a]!r}, {row(b)} has "
                        f"{parsed[b]}); expected all class names or all integers 0..K-1")
    if strs:
        names = list(class_names) if class_names is not None else sorted(set(parsed))  # type: ignore[arg-type]
        index = {n: c for c, n in enumerate(names)}
        unknown = [i for i in strs if parsed[i] not in index]
        if unknown:
            i = unknown[0]
            hint = close_matches(parsed[i], names)
            raise DataError(f"{where}: unknown label {parsed[i]!r} at {row(i)} ({len(unknown)} such row(s))"
                            + (f"; did you mean {' or '.join(map(repr, hint))}?" if hint else "")
                            + f"; expected one of the class names: {', '.join(names)}")
        return np.array([index[v] for v in parsed], dtype=np.int64), names, "names"
    y = np.array(parsed, dtype=np.int64)
    if y.size and y.min() < 0:
        i = int(np.flatnonzero(y < 0)[0])
        raise DataError(f"{where}: label {int(y[i])} at {row(i)} is negative; expected integer labels 0..K-1")
    if class_names is not None:  # the caller named the classes: the range check against them is validate's
        return y, list(class_names), "names"
    if num_classes is not None:
        out = np.flatnonzero(y >= num_classes)
        if out.size:
            i = int(out[0])
            raise DataError(f"{where}: label {int(y[i])} at {row(i)} is outside 0..{num_classes - 1}, the "
                            f"{num_classes} classes data.num_classes states ({out.size} such label(s)); expected "
                            f"labels below {num_classes}, or data.num_classes: {int(y.max()) + 1}")
        return y, [str(c) for c in range(num_classes)], "data.num_classes"
    return y, [str(c) for c in range(int(y.max()) + 1 if y.size else 0)], "labels"


_INT = re.compile(r"[+-]?\d+")


def _label(value: object, where: str, row: Callable[[int], str], i: int) -> int | str:
    """One label: an int (from an int, an integral float or a string of digits) or a stripped class name."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        pass  # neither a class name nor a class number
    elif isinstance(value, (int, np.integer)):
        return int(value)
    elif isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return int(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if _INT.fullmatch(text) else text
    shown = "an empty label" if isinstance(value, str) else f"label {value!r} ({type(value).__name__})"
    raise DataError(f"{where}: {row(i)} has {shown}; expected a class name or an integer 0..K-1")
