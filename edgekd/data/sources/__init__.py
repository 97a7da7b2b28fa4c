"""Data sources: ``SCHEME:ARG`` spec strings -> ``RawData``.

One module per scheme in this package, each registering its loader in ``SOURCES``
(found by ``discover``: adding a source is one new file). Loaders raise ``DataError``
for missing or corrupt input; ``load_source`` then validates and (if asked) resizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, DataError
from ...registry import Registry, discover
from ..raw import RawData
from ..validate import check_arrays, check_class_count, validate

Loader = Callable[[str, "tuple[int, int] | None", Path], RawData]
SOURCES: Registry[Loader] = Registry("data source")


def load_source(
    spec: str,
    *,
    image_size: tuple[int, int] | None = None,
    base_dir: Path = Path("."),
    key: str = "data.source",
    num_classes: int | None = None,
) -> RawData:
    """Load, validate and (if ``image_size`` differs from the data) resize a data source.

    ``num_classes`` (``data.num_classes``) is the class count the user expects: labels are checked against it.
    """
    scheme, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ConfigError(f"{key}: {spec!r} is not SCHEME:ARG; expected one of the schemes: {', '.join(SOURCES.names())}")
    loader = SOURCES.get(scheme, key=key)
    size = _check_size(image_size)
    try:
        raw = loader(arg, size, Path(base_dir))
    except (DataError, ConfigError) as exc:  # loaders name the spec; the config key is added here
        raise type(exc)(f"{key}: {exc}") from exc
    raw = check_class_count(raw, num_classes, key=key)
    validate(raw, key=key)  # before resizing, so reported indices refer to the original data
    if size is not None and tuple(raw.x.shape[-2:]) != size:
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


def _to_numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _check_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ConfigError(f"data.image_size: expected (H, W) positive integers, got {image_size!r}")
    return int(size[0]), int(size[1])


def _resolve(arg: str, base_dir: Path) -> Path:
    path = Path(arg).expanduser()
    return path if path.is_absolute() else base_dir / path


discover(__name__)
