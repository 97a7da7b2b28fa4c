"""The registry of edgekd's plug-ins (models, losses, stages, backends, runners, power models).

It is ``edgekd.ondevice.registry.Registry`` (which the device side uses too) with ``ConfigError``
as its error, so an unknown name in a config exits 2, names the key and suggests the near miss.
Adding a plug-in is one module that decorates it with ``@REGISTRY.register("name")``; a registry
created with ``plugins=lambda: discover(package)`` finds such modules by themselves.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from .errors import ConfigError
from .ondevice.registry import Registry as _Registry
from .ondevice.registry import discover

T = TypeVar("T")

__all__ = ["Registry", "discover"]


class Registry(_Registry[T]):
    def __init__(self, kind: str, *, error: type[Exception] = ConfigError, plugins: Callable[[], object] | None = None) -> None:
        super().__init__(kind, error=error, plugins=plugins)
