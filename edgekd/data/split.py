"""Deterministic, stratified train/val/test split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    train: np.ndarray  # int64 indices into the source data, sorted
    val: np.ndarray
    test: np.ndarray
    seed: int
    fractions: tuple[float, float, float]

    def sizes(self) -> dict[str, int]:
        return {name: int(len(getattr(self, name))) for name in SPLITS}

    def digest(self) -> str:
        digest = hashlib.sha256()
        for name in SPLITS:
            part = np.ascontiguousarray(getattr(self, name), dtype="<i8")
            digest.update(f"{name}:{len(part)};".encode())  # sizes too, so moving one index between splits shows
            digest.update(part.tobytes())
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "fractions": list(self.fractions),
            "sizes": self.sizes(),
            "digest": self.digest(),
            **{name: [int(i) for i in getattr(self, name)] for name in SPLITS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Split":
        parts = {name: np.asarray(data[name], dtype=np.int64) for name in SPLITS}
        return cls(**parts, seed=int(data["seed"]), fractions=tuple(data["fractions"]))  # type: ignore[arg-type]


def check_fractions(fractions: Sequence[float], *, key: str = "data.split") -> tuple[float, float, float]:
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or not all(v > 0 for v in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ConfigError(f"{key}: expected three fractions (train, val, test), each > 0, summing to 1; got {list(fractions)}")
    return f  # type: ignore[return-value]


def stratified_split(y: np.ndarray, *, fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> Split:
    f = np.asarray(check_fractions(fractions))
    y = np.asarray(y, dtype=np.int64)
    classes, class_sizes = np.unique(y, return_counts=True)
    counts = _allocate(class_sizes, f)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c, row in zip(classes, counts):
        members = rng.permutation(np.flatnonzero(y == c))
        for k, chunk in enumerate(np.split(members, np.cumsum(row)[:2])):
            parts[k].append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts)
    return Split(train, val, test, seed=seed, fractions=tuple(float(v) for v in f))  # type: ignore[arg-type]


def _allocate(class_sizes: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-class split counts (classes x 3): each row sums to its class size, columns hit the
    overall largest-remainder targets, and a class with >= 3 samples gets >= 1 in every split."""
    n = class_sizes.astype(float)
    quota = n[:, None] * f[None, :]
    counts = np.floor(quota).astype(np.int64)
    for c in np.flatnonzero(class_sizes >= 3):
        counts[c] = np.maximum(counts[c], 1)
        while counts[c].sum() > class_sizes[c]:  # the minimum overshot: take from the most over-served split
            over = np.where(counts[c] > 1, counts[c] - quota[c], -np.inf)
            counts[c, int(np.argmax(over))] -= 1
    total = int(class_sizes.sum())
    targets = np.floor(total * f).astype(np.int64)
    remainders = total * f - targets
    targets[np.argsort(-remainders, kind="stable")[: total - targets.sum()]] += 1
    left = class_sizes - counts.sum(axis=1)
    # hand out the leftover samples one at a time: to a split still below its overall target
    # first, then to the cell furthest below its quota
    while left.sum() > 0:
        need = (targets - counts.sum(axis=0)) > 0
        score = np.where(left[:, None] > 0, (quota - counts) + 2.0 * need[None, :], -np.inf)
        c, k = np.unravel_index(int(np.argmax(score)), score.shape)
        counts[c, k] += 1
        left[c] -= 1
    return counts
