"""What stages receive: normalised tensors per split, plus where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .normalize import Normalization
from .raw import content_hash
from .sources import load_source
from .split import Split, stratified_split


@dataclass
class DataBundle:
    """Normalised float32 tensors per split (rows in ``split`` index order), plus provenance."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    input_shape: tuple[int, int, int]
    normalization: Normalization
    split: Split
    data_hash: str
    source: str
    classes_from: str = "names"  # see RawData.classes_from

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def classes_note(self) -> str:
        """One line saying how many classes there are and what decided it (printed once per run)."""
        n = self.num_classes
        if self.classes_from == "labels":
            return (f"{n} classes, inferred from the labels 0..{n - 1} ({self.source} has no class names); "
                    "set data.num_classes to have the labels checked against the count you expect")
        if self.classes_from == "data.num_classes":
            return f"{n} classes, as data.num_classes states; every label of {self.source} is below {n}"
        return f"{n} classes, named by {self.source}"

    def provenance(self) -> dict[str, Any]:
        """Everything that decides these tensors; stages put it in cache keys and records."""
        return {
            "source": self.source,
            "data_hash": self.data_hash,
            "split_digest": self.split.digest(),
            "sizes": self.split.sizes(),
            "seed": self.split.seed,
            "fractions": list(self.split.fractions),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "classes_from": self.classes_from,
            "normalization": self.normalization.to_dict(),
        }


def prepare_data(
    spec: str,
    *,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    image_size: tuple[int, int] | None = None,
    base_dir: Path = Path("."),
    num_classes: int | None = None,
) -> DataBundle:
    """Load + validate + split, then fit normalisation on the train split only and apply it to all.

    ``num_classes`` (``data.num_classes``): the class count expected; a label outside it is a DataError.
    """
    raw = load_source(spec, image_size=image_size, base_dir=base_dir, num_classes=num_classes)
    split = stratified_split(raw.y, fractions=fractions, seed=seed)
    norm = Normalization.fit(raw.x[split.train])

    def part(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = norm.apply(raw.x[indices]).astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(raw.y[indices].astype(np.int64))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = part(split.train), part(split.val), part(split.test)
    return DataBundle(
        x_train, y_train, x_val, y_val, x_test, y_test,
        class_names=list(raw.class_names),
        input_shape=raw.input_shape,
        normalization=norm,
        split=split,
        data_hash=content_hash(raw),
        source=spec,
        classes_from=raw.classes_from,
    )
