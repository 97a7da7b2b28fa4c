"""The in-memory form every data source is loaded into, and its content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np


@dataclass
class RawData:
    x: np.ndarray | None  # images: float32 (N, C, H, W), uint8 sources scaled to [0, 1]; None for text
    y: np.ndarray  # int64 (N,)
    class_names: list[str]
    source: str  # the spec string it came from
    # where the class count came from: "names" (the source's class names), "labels" (largest label + 1),
    # or "data.num_classes" (the config stated it and the labels were checked against it)
    classes_from: str = "names"
    texts: list[str] | None = None  # text sources: one string per example (x is None then)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_text(self) -> bool:
        return self.texts is not None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if self.x is None:  # a text example has no fixed shape until it is tokenized
            raise AttributeError(f"{self.source} is text data: it has no image input_shape (tokenize it instead)")
        return tuple(int(d) for d in self.x.shape[1:])  # type: ignore[return-value]


def content_hash(raw: RawData) -> str:
    """sha256 over the examples (pixels, or texts), labels, shapes and class names (not the source path,
    so the same data moved elsewhere keeps its hash)."""
    if raw.texts is not None:
        return _text_hash(raw)
    x = np.ascontiguousarray(raw.x, dtype=np.float32)
    y = np.ascontiguousarray(raw.y, dtype=np.int64)
    digest = hashlib.sha256()
    header = {"x_shape": list(x.shape), "y_shape": list(y.shape), "class_names": list(raw.class_names)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(x.astype("<f4", copy=False).tobytes())  # fixed byte order: stable across machines
    digest.update(y.astype("<i8", copy=False).tobytes())
    return digest.hexdigest()


def _text_hash(raw: RawData) -> str:
    y = np.ascontiguousarray(raw.y, dtype=np.int64)
    digest = hashlib.sha256()
    header = {"kind": "text", "texts": len(raw.texts), "y_shape": list(y.shape), "class_names": list(raw.class_names)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in raw.texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))  # the length first: ["ab", "c"] and ["a", "bc"] differ
        digest.update(data)
    digest.update(y.astype("<i8", copy=False).tobytes())
    return digest.hexdigest()
