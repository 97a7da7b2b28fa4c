"""YAML files checked by a pydantic model, with one error format for every file edgekd reads.

The pipeline config, target files and budgets files all go through here, so a
mistake reads the same in each: a header naming the file, then one line per
problem, ``key.path: message (got value)``. An unknown key lists the keys
accepted at that place, with a did-you-mean for a near miss (a renamed key,
listed in its section's ``renamed_keys``, names its replacement instead): the ``Problem``
form that the checks before training use too. Light on purpose
(yaml and pydantic only): ``edgekd gate`` uses it without loading torch.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .problems import Problem, close_matches, raise_problems

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path, *, what: str) -> Any:
    """The parsed YAML of ``path``; ``what`` ("config file", "budgets file", ...) names it in errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} {path} cannot be read: {error}") from None


def validate(model: type[M], data: Any, *, what: str, origin: str, extra: dict[str, Any] | None = None) -> M:
    """``data`` (parsed YAML; None is an empty mapping) as ``model``, with ``extra`` fields set by edgekd
    (never by the file). Every problem is reported at once, in one ``ConfigError``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {what} {origin}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate({**data, **(extra or {})})
    except ValidationError as error:
        found = problems(error, model)
    raise_problems(found, f"invalid {what} {origin}")  # "invalid ... (N problems):", one line each
    raise ConfigError(f"invalid {what} {origin}")  # not reached: a ValidationError holds at least one error


def load(path: str | Path, model: type[M], *, what: str, extra: dict[str, Any] | None = None) -> M:
    """Read ``path`` and validate it as ``model`` (see ``read_yaml`` and ``validate``)."""
    return validate(model, read_yaml(path, what=what), what=what, origin=str(path), extra=extra)


def problems(error: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """pydantic's errors as ``Problem``s, the form the checks before training report theirs in."""
    return [_problem(model, item) for item in error.errors()]


def _problem(model: type[BaseModel], item: dict[str, Any]) -> Problem:
    loc = tuple(item["loc"])
    path = _path(loc) or "(top level)"
    if item["type"] == "extra_forbidden":
        return _unknown_key(model, loc, path)
    if item["type"] == "missing":
        return Problem(path, "required key is missing")
    message = item["msg"].removeprefix("Value error, ")
    if "[key]" in loc:  # a mapping's key, not its value, is wrong (pydantic's loc marks it so)
        message = "key: " + message
    return Problem(path, f"{message} (got {_shown(item.get('input'))})")


def _path(loc: tuple) -> str:
    """``distill.losses[0].name``: list indices in brackets, as they would be written in YAML's flow style."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key(model: type[BaseModel], loc: tuple, path: str) -> Problem:
    """``unknown key 'trian'; did you mean 'train'?; accepted: ...`` from the fields of the model that holds the key."""
    key = str(loc[-1])
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return Problem(path, f"unknown key {key!r}")
    renamed = getattr(owner, "renamed_keys", {}).get(key)  # a ClassVar of the section: old key -> (new key, why)
    if renamed:
        new, why = renamed
        new_path = ".".join([*path.split(".")[:-1], new])
        return Problem(path, f"{key!r} was renamed: use {new_path!r} instead ({why})")
    accepted = [name for name, field in owner.model_fields.items() if not field.exclude]
    return Problem(path, f"unknown key {key!r}", ", ".join(accepted), close_matches(key, accepted, n=1))


def _options(annotation: Any) -> list[Any]:
    """The members of ``X | Y | None`` (not None), or the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _model_at(annotation: Any, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model whose fields apply at ``loc``, following fields, list items and mapping values."""
    for part in loc:
        step = None
        for option in _options(annotation):
            origin, args = typing.get_origin(option), typing.get_args(option)
            if isinstance(option, type) and issubclass(option, BaseModel) and part in option.model_fields:
                step = option.model_fields[part].annotation
            elif origin in (list, set, frozenset) and isinstance(part, int) and args:
                step = args[0]
            elif origin is tuple and isinstance(part, int) and args:
                step = args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(part, len(args) - 1)]
            elif origin is dict and len(args) == 2:
                step = args[1]
            if step is not None:
                break
        if step is None:
            return None
        annotation = step
    models = [o for o in _options(annotation) if isinstance(o, type) and issubclass(o, BaseModel)]
    return models[0] if len(models) == 1 else None
