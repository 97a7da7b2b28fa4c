"""The backend interface: build an artifact for one precision, then run it in its own runtime.

A backend is one module that subclasses ``Backend`` and registers itself in
``BACKENDS``. The compile stage gives it a ``CompileSources`` (the verified
ONNX files and the PyTorch models they came from) and gets back a file it can
load into a ``Runner`` that predicts logits and reports which operators ran where.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..registry import Registry


@dataclass
class CompileSources:
    """What backends build from. Everything comes from upstream stage records, never from their files directly."""

    input_shape: tuple[int, int, int]
    fp32_onnx: Path  # verified FP32 ONNX (export stage)
    int8_onnx: Path | None  # verified QDQ ONNX with the learned scales (export stage), None without quantization
    fp32_model: Callable[[], torch.nn.Module]  # the FP32 PyTorch student, built on demand
    int8_graph: Callable[[], torch.fx.GraphModule] | None  # converted PT2E graph (QDQ ops, weights not folded)
    metadata: dict[str, Any] = field(default_factory=dict)


class Runner(ABC):
    """A loaded artifact. ``predict`` takes float32 NCHW inputs and returns float32 logits."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def predict_batched(self, x: np.ndarray) -> np.ndarray:
        """Batch-1 calls, as deployed artifacts are built and profiled at batch 1."""
        return np.concatenate([self.predict(x[i : i + 1]) for i in range(len(x))])

    def operator_report(self) -> dict[str, Any]:
        """Op types and where they ran (delegate, accelerator, precision) or fell back."""
        return {}


class NotRunnable(Exception):
    """Raised by ``Backend.load`` where the runtime does not exist here (the artifact is still built and checked)."""


class Backend(ABC):
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    suffix: ClassVar[str]

    def unavailable(self) -> str | None:
        """Why this backend cannot build here (a missing package), or None."""
        return None

    def toolchain_version(self) -> str:
        return ""

    @abstractmethod
    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        """Write the artifact for ``precision`` under ``out_dir`` (atomically) and return its path."""

    @abstractmethod
    def load(self, path: Path, options: dict[str, Any]) -> Runner:
        """Load the artifact in its own runtime; raise NotRunnable with the reason where it cannot run here."""

    def inspect(self, path: Path) -> dict[str, Any]:
        """Static checks of the artifact (inputs, outputs, op types, precision) that need no runtime."""
        return {}


BACKENDS: Registry[type[Backend]] = Registry("backend")


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return ""
