"""Data sources: ``SCHEME:ARG`` spec strings -> ``RawData``.

One module per scheme in this package, each registering its loader in ``SOURCES``
(found by ``discover``: adding a source is one new file). A loader is called as
``loader(arg, options, base_dir)`` with a ``SourceOptions`` and returns images (``x``) or
texts (``texts``). Loaders raise ``DataError`` for missing or corrupt input; ``load_source``
then validates and (if asked) resizes images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, DataError
from ...registry import Registry, discover
from ..raw import RawData
from ..validate import check_arrays, check_class_count, check_texts, text_labels, validate


@dataclass(frozen=True)
class SourceOptions:
    """What a loader may need besides its argument (one object, so adding an option touches no loader)."""

    image_size: tuple[int, int] | None = None  # (H, W) to resize images to (data.image_size)
    text_column: str = "text"  # text files: the column holding the text (data.text_column)
    label_column: str = "label"  # text files: the column holding the label (data.label_column)
    num_classes: int | None = None  # data.num_classes, so a text file's labels are checked naming their rows


Loader = Callable[[str, SourceOptions, Path], RawData]
SOURCES: Registry[Loader] = Registry("data source")


def load_source(
    spec: str,
    *,
    image_size: tuple[int, int] | None = None,
    base_dir: Path = Path("."),
    key: str = "data.source",
    num_classes: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> RawData:
    """Load, validate and (if ``image_size`` differs from the data) resize a data source.

    ``num_classes`` (``data.num_classes``) is the class count the user expects: labels are checked against it.
    ``text_column`` / ``label_column`` (``data.text_column`` / ``data.label_column``) name a text file's columns.
    """
    scheme, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ConfigError(f"{key}: {spec!r} is not SCHEME:ARG; expected one of the schemes: {', '.join(SOURCES.names())}")
    loader = SOURCES.get(scheme, key=key)
    options = SourceOptions(_check_size(image_size), _check_column(text_column, "data.text_column"),
                            _check_column(label_column, "data.label_column"), num_classes)
    if options.text_column == options.label_column:
        raise ConfigError(f"data.text_column and data.label_column are both {text_column!r}; expected two columns")
    try:
        raw = loader(arg, options, Path(base_dir))
    except (DataError, ConfigError) as exc:  # loaders name the spec; the config key is added here
        raise type(exc)(f"{key}: {exc}") from exc
    size = options.image_size
    if raw.texts is not None and size is not None:
        raise ConfigError(f"data.image_size: {list(size)} resizes images, but {key} {spec!r} is text; "
                          "expected no data.image_size for a text source")
    raw = check_class_count(raw, num_classes, key=key)
    validate(raw, key=key)  # before resizing, so reported indices refer to the original data
    if size is not None and raw.x is not None and tuple(raw.x.shape[-2:]) != size:
        raw.x = resize(raw.x, size)
    return raw


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased (so downsizing does not alias thin strokes away)."""
    out = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.numpy().astype(np.float32, copy=False)


def make_raw(x: Any, y: Any, class_names: list[str] | None, spec: str) -> RawData:
    """Check and convert arrays as a source produced them into ``RawData``."""
    x, y = _to_numpy(x), _to_numpy(y)
    check_arrays(x, y, where=spec)
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    # uint8 means 0..255 pixels; any other dtype is taken at face value
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    y = y.astype(np.int64)
    classes_from = "names"
    if class_names is None:  # no names: as many classes as the largest label says, and the user is told so
        class_names, classes_from = [str(i) for i in range(max(int(y.max()) + 1, 0))], "labels"
    return RawData(np.ascontiguousarray(x), y, [str(n) for n in class_names], spec, classes_from)


def make_text_raw(texts: Any, labels: Any, class_names: list[str] | None, spec: str, *,
                  num_classes: int | None = None, row: Callable[[int], str] | None = None) -> RawData:
    """Check texts and labels (class names or integers) as a source produced them and make ``RawData``.

    ``row(i)`` names example ``i`` in messages (e.g. a file's row and line).
    """
    labels = _to_numpy(labels).tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
    names = [str(n) for n in class_names] if class_names is not None else None
    y, names, classes_from = text_labels(labels, where=spec, row=row, num_classes=num_classes, class_names=names)
    texts = list(texts)
    check_texts(texts, y, where=spec, row=row)
    return RawData(None, y, names, spec, classes_from, texts=texts)


def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _check_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ConfigError(f"data.image_size: expected (H, W) positive integers, got {image_size!r}")
    return int(size[0]), int(size[1])


def _check_column(name: Any, key: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key}: expected a column name (a non-empty string), got {name!r}")
    return name


def _resolve(arg: str, base_dir: Path) -> Path:
    path = Path(arg).expanduser()
    return path if path.is_absolute() else base_dir / path


discover(__name__)
