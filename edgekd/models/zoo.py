"""The model zoo: ``MODELS`` registry and ``create_model``.

A zoo model is a class (or factory) taking ``num_classes`` plus its own keyword options. Arguments the
data decides (images: ``in_channels``; text: ``vocab_size``, ``pad_id``, ``max_length``) and ``width``
are passed only to factories that accept them. Adding one is a new module that decorates it with
``@MODELS.register("name")`` and is imported by ``edgekd.models.__init__``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def data_arguments(
    factory: Callable[..., Any], *, num_classes: int, in_channels: int | None = None,
    data_args: Mapping[str, Any] | None = None, kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The data-derived arguments ``factory`` accepts, without those the user's ``kwargs`` set (theirs win)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and C callables without a signature get nothing extra
        return {}
    offered = {"num_classes": num_classes, **({"in_channels": in_channels} if in_channels is not None else {}),
               **dict(data_args or {})}
    return {k: v for k, v in offered.items() if k in params and k not in (kwargs or {})}


def create_model(
    name: str, *, num_classes: int, in_channels: int | None = None, width: float = 1.0, key: str = "model",
    data_args: Mapping[str, Any] | None = None, **kwargs: Any
) -> nn.Module:
    """Build zoo model ``name``; bad names or arguments raise ConfigError naming ``key``.

    ``data_args`` (e.g. ``{"vocab_size": 30522, "pad_id": 0, "max_length": 128}`` for text) reach the
    model when it has such arguments; ``kwargs`` from the config override them.
    """
    factory = MODELS.get(name, key=key)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [n for n in params if n not in ("self", "num_classes", "in_channels", "width")]
    for arg in kwargs:
        if not accepts_any and arg not in params:
            raise ConfigError(
                f"{key}: model {name!r} has no argument {arg!r}; accepted: {', '.join(allowed) or '(none)'}"
            )
    if "width" in params:
        kwargs["width"] = width
    elif width != 1.0:
        raise ConfigError(f"{key}: model {name!r} has no argument 'width'; accepted: {', '.join(allowed) or '(none)'}")
    args = {**data_arguments(factory, num_classes=num_classes, in_channels=in_channels, data_args=data_args,
                             kwargs=kwargs), **kwargs}
    needed = [n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in args]
    if needed:
        raise ConfigError(f"{key}: model {name!r} needs {', '.join(needed)}, which the data does not provide "
                          f"(is it a model for {'images' if 'in_channels' in needed else 'another kind of data'}?)")
    try:
        return factory(**args)
    except ValueError as exc:  # models raise ValueError for bad option values
        shown = {k: v for k, v in kwargs.items() if k != "width" or v != 1.0}
        raise ConfigError(f"{key}: cannot build model {name!r} with {shown or 'default arguments'}: {exc}") from exc
