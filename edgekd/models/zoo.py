"""The model zoo: ``MODELS`` registry and ``create_model``.

A zoo model is a class (or factory) taking ``num_classes``, ``in_channels`` and
``width`` plus its own keyword options; adding one is a new module that
decorates it with ``@MODELS.register("name")`` and is imported by
``edgekd.models.__init__``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def create_model(
    name: str, *, num_classes: int, in_channels: int, width: float = 1.0, key: str = "model", **kwargs: Any
) -> nn.Module:
    """Build zoo model ``name``; bad names or arguments raise ConfigError naming ``key``."""
    factory = MODELS.get(name, key=key)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [n for n in params if n not in ("self", "num_classes", "in_channels", "width")]
    for arg in kwargs:
        if not accepts_any and arg not in params:
            raise ConfigError(
                f"{key}: model {name!r} has no argument {arg!r}; accepted: {', '.join(allowed) or '(none)'}"
            )
    try:
        return factory(num_classes=num_classes, in_channels=in_channels, width=width, **kwargs)
    except ValueError as exc:  # models raise ValueError for bad option values
        raise ConfigError(f"{key}: cannot build model {name!r} with {kwargs or 'default arguments'}: {exc}") from exc
