"""The one interface of a loaded artifact (``Model``), and ``load``, which finds it by backend name.

Each backend's ``runtime.py`` (``edgekd/backends/<name>/runtime.py``) subclasses ``Model`` and
registers it in ``RUNTIMES``; the compile stage's checks, the local profiler and the device-side
benchmark all load artifacts through here, so an artifact runs the same way everywhere. Nothing
but numpy and the vendor runtime (imported when a model loads) is needed.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend_info import BACKENDS_PACKAGE
from .registry import Registry, discover


class Unavailable(RuntimeError):
    """This runtime cannot run here (a missing package, the wrong OS, no GPU); the message says why."""


def as_input(x: np.ndarray) -> np.ndarray:
    """Contiguous model input: float32 for images and other floats, int64 for token ids."""
    return np.ascontiguousarray(x, dtype=np.int64 if np.issubdtype(np.asarray(x).dtype, np.integer) else np.float32)


def in_batches(infer: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int) -> np.ndarray:
    """``infer`` on consecutive slices of ``size`` rows, concatenated."""
    return np.concatenate([infer(x[i : i + size]) for i in range(0, len(x), size)])


class Model:
    """A loaded artifact. Subclasses implement ``infer`` for the artifact's own batch (``batch``; None when
    the artifact takes any); ``predict`` takes inputs of any length (float32 images or int64 token ids, see
    ``as_input``) and returns float32 logits."""

    runtime: str = ""  # "<package> <version>" of the runtime that ran it
    batch: int | None = 1  # deployed artifacts are built at batch 1

    def infer(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = as_input(x)
        if self.batch is None or len(x) == self.batch:
            return self.infer(x)
        if len(x) % self.batch:
            raise ValueError(f"the artifact takes batches of {self.batch}, got {len(x)} inputs")
        return in_batches(self.infer, x, self.batch)

    def predict_batched(self, x: np.ndarray) -> np.ndarray:
        """One input per call, as deployed artifacts run and are profiled (results may differ from one large batch)."""
        return in_batches(self.predict, x, 1)

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """One inference on ``x`` already in the runtime's own input form, for timing loops: as
        benchmark_app and benchmark_model do, the loop then times the runtime, not numpy conversions
        (tens of microseconds per call, which is most of a small model's latency). Default: ``predict``."""
        return lambda: self.predict(x)

    def runtime_clock(self) -> tuple[str, Callable[[], float]] | None:
        """The runtime's own clock around each inference, where its API keeps one: its name and a function giving
        the last inference's time in ms. The timing loop then records it for each run instead of a Python clock
        around the call (which a C++ application does not pay: a fifth of an 80 µs figure). None: the loop times
        the Python call."""
        return None

    def operator_report(self) -> dict[str, Any]:
        """Op types and where they ran (delegate, accelerator, precision) or fell back."""
        return {}

    def layer_precisions(self, layers: dict[str, list[str]]) -> dict[str, str]:
        """For layers of the ONNX model this artifact was built from (node name -> other names the runtime may
        give it: its output tensor's, its fused activation's; ``edgekd.mixed_precision.layer_aliases``),
        ``int8`` where the runtime runs one as an integer kernel and ``float`` where it does not, from the
        runtime's own graph; layers it does not name are left out (all of them where the runtime cannot say)."""
        return {}


# Each backend folder's runtime.py registers its Model class on first lookup.
RUNTIMES: Registry[Callable[[Path, dict[str, Any]], Model]] = Registry(
    "backend runtime", plugins=lambda: discover(BACKENDS_PACKAGE, "runtime"))


def load(backend: str, path: str | Path, options: dict[str, Any] | None = None) -> Model:
    return RUNTIMES.get(backend, key="backend")(Path(path), dict(options or {}))


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (vendor errors run to pages), else its type's name."""
    text = str(error).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)


def package_version(*names: str) -> str:
    """``"<name> <version>"`` of the first installed distribution of ``names``, else ""."""
    for name in names:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return ""
