"""``imagefolder:DIR``: one sub-folder of images per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DataError
from ..raw import RawData
from . import SOURCES, SourceOptions, _resolve, make_raw

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@SOURCES.register("imagefolder")
def load_imagefolder(arg: str, options: SourceOptions, base_dir: Path) -> RawData:
    spec, root = f"imagefolder:{arg}", _resolve(arg, base_dir)
    if not root.is_dir():
        raise DataError(f"{spec}: directory {root} not found; expected one subfolder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{spec}: {root} has no class subfolders; expected one subfolder per class")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                images.append((file, _open_image(file, spec)))
                labels.append(label)
    if not images:
        raise DataError(f"{spec}: no PNG/JPEG images under {root}; expected one subfolder of images per class")
    image_size = options.image_size
    gray = all(img.mode in ("L", "1") for _, img in images)
    mode = "L" if gray else "RGB"
    if image_size is None:
        odd = next(((f, img) for f, img in images if img.size != images[0][1].size), None)
        if odd is not None:
            (f1, a), (f2, b) = images[0], odd
            raise DataError(
                f"{spec}: images differ in size ({f1} is {a.width}x{a.height}, {f2} is {b.width}x{b.height}, WxH); "
                "set data.image_size (H, W) to resize them"
            )
    arrays = []
    for _, img in images:
        img = img.convert(mode)
        if image_size is not None and img.size != (image_size[1], image_size[0]):
            img = img.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)  # PIL sizes are (W, H)
        arr = np.asarray(img, dtype=np.uint8)
        arrays.append(arr[None] if gray else arr.transpose(2, 0, 1))
    return make_raw(np.stack(arrays), np.asarray(labels, np.int64), classes, spec)


def _open_image(file: Path, spec: str) -> Image.Image:
    try:
        with Image.open(file) as img:
            img.load()  # decode now: Image.open alone accepts truncated files
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{spec}: cannot read image {file} ({exc}); expected a valid PNG or JPEG") from exc


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "fox"):
        (folder / "images" / name).mkdir(parents=True, exist_ok=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(folder / "images" / name / f"{i}.png")
    return "images"


load_imagefolder.example = _example
