"""Compile backends, one folder each (see ``base``); the registries find the folders, no list names them.

Light on purpose: importing a backend's declaration or runtime imports this package, and the local
profiler's fresh process (whose peak memory is reported) must not pull in torch or a converter.
"""

from .base import BACKENDS, DEVICE_TOOLS, Backend, CompileSources, DeviceTool, Model, NotRunnable

__all__ = ["BACKENDS", "DEVICE_TOOLS", "Backend", "CompileSources", "DeviceTool", "Model", "NotRunnable"]
