"""``npz:PATH``: arrays ``x`` and ``y`` (and optionally ``class_names``) in a NumPy archive, never unpickled."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..raw import RawData
from . import SOURCES, SourceOptions, _resolve, make_raw

@SOURCES.register("npz")
def load_npz(arg: str, options: SourceOptions, base_dir: Path) -> RawData:
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


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    rng = np.random.default_rng(0)
    np.savez(folder / "example.npz", x=rng.random((30, 1, 8, 8), dtype=np.float32), y=np.arange(30) % 3)
    return "example.npz"


load_npz.example = _example
