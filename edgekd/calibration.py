"""Representative sets for calibration: small, stratified by class, seeded, with a manifest.

A set is stored as a manifest (JSON) naming the data source, its content hash,
the split and the indices drawn from the training split, so it can be rebuilt
exactly and checked against the data it is used with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataBundle
from .errors import DataError
from .io import read_json, write_json

MANIFEST_VERSION = 1


@dataclass
class CalibrationSet:
    indices: list[int]  # indices into the source data set (all inside the training split)
    size: int
    seed: int
    source: str
    data_hash: str
    split_digest: str
    per_class: dict[str, int]
    version: int = MANIFEST_VERSION

    def manifest(self) -> dict:
        return {**asdict(self), "drawn": "stratified by class from the training split, seeded, without replacement"}

    def tensors(self, data: DataBundle) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalized inputs and labels of this set, after checking it belongs to ``data``."""
        if self.data_hash != data.data_hash or self.split_digest != data.split.digest():
            raise DataError(
                f"calibration set drawn from {self.source} (data hash {self.data_hash[:12]}, split {self.split_digest[:12]}) "
                f"does not match the pipeline's data {data.source} (data hash {data.data_hash[:12]}, split {data.split.digest()[:12]})"
            )
        if not np.isin(self.indices, data.split.train).all():
            raise DataError(f"calibration set from {self.source}: some indices are not in the training split")
        positions = torch.as_tensor(np.searchsorted(data.split.train, self.indices))
        return data.x_train[positions], data.y_train[positions]


def draw(data: DataBundle, *, size: int, seed: int) -> CalibrationSet:
    """Draw ``size`` training samples, the same share from every class (largest remainder), seeded."""
    labels = data.y_train.numpy()
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    size = min(size, len(labels))
    quotas = counts / counts.sum() * size
    take = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - take))[: size - take.sum()]:
        take[i] += 1
    positions = np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in zip(classes, take)])
    positions.sort()
    return CalibrationSet(
        indices=[int(i) for i in data.split.train[positions]],
        size=int(size),
        seed=seed,
        source=data.source,
        data_hash=data.data_hash,
        split_digest=data.split.digest(),
        per_class={data.class_names[int(c)]: int(n) for c, n in zip(classes, take)},
    )


def save(cal: CalibrationSet, path: Path) -> None:
    write_json(Path(path), cal.manifest())


def load(path: Path) -> CalibrationSet:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise DataError(f"calibration manifest {path} does not exist")
    try:
        manifest = read_json(path)
        manifest.pop("drawn", None)
        return CalibrationSet(**manifest)
    except (ValueError, TypeError) as error:  # bad JSON, or missing/unknown keys
        raise DataError(f"calibration manifest {path} is malformed: {error}") from None
