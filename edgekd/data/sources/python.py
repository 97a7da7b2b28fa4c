"""``python:MODULE:FUNCTION``: a user function returning ``(x, y[, class_names])``, a dataset, or
``(texts, labels[, class_names])`` with texts a list of strings and labels integers or class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import DataError
from ...userimport import import_user_module, parse_python_spec
from ..raw import RawData
from . import SOURCES, SourceOptions, _to_numpy, make_raw, make_text_raw

@SOURCES.register("python")
def load_python(arg: str, options: SourceOptions, base_dir: Path) -> RawData:
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
            if _is_texts(result[0]):
                return make_text_raw(_text_list(result[0]), result[1], names, spec, num_classes=options.num_classes)
            return make_raw(result[0], result[1], names, spec)
    except (ValueError, TypeError) as exc:  # ragged or non-numeric arrays: numpy cannot stack them
        raise DataError(f"{spec}: {func_name}() returned arrays numpy cannot read as x and y ({exc}); expected "
                        "(x, y) with x (N, C, H, W) or (N, H, W) and y (N,) integer labels") from exc
    raise DataError(
        f"{spec}: {func_name}() returned {type(result).__name__}; "
        "expected (x, y) arrays, (x, y, class_names), a torch Dataset of (x, y) items, "
        "or (texts, labels[, class_names]) with texts a list of strings"
    )


def _is_texts(a: Any) -> bool:
    """A list/tuple whose first item is a string, or a 1-D numpy array of strings: texts, not pixels."""
    if isinstance(a, np.ndarray):
        return a.ndim == 1 and a.dtype.kind == "U"
    return isinstance(a, (list, tuple)) and len(a) > 0 and isinstance(a[0], str)


def _text_list(a: Any) -> list[Any]:
    return [str(t) for t in a.tolist()] if isinstance(a, np.ndarray) else list(a)


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


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    (folder / "example_data.py").write_text(
        "import numpy as np\n\n\ndef load():\n"
        "    rng = np.random.default_rng(0)\n"
        "    return rng.random((30, 1, 8, 8), dtype=np.float32), np.arange(30) % 3, ['a', 'b', 'c']\n"
    )
    return "example_data:load"


load_python.example = _example
