"""Compile backends. Importing this package registers every backend module."""

from . import coreml, litert, onnxruntime, openvino, tensorrt  # noqa: F401  (registration)
from .base import BACKENDS, Backend, CompileSources, NotRunnable, Runner

__all__ = ["BACKENDS", "Backend", "CompileSources", "NotRunnable", "Runner"]
