"""A trial's config written somewhere else (``best.yaml``): relative paths re-pointed so it still runs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..targets import load_target

_SCHEME = re.compile(r"^([a-z][a-z0-9_-]*):(?!//)")
# Keys whose values may name files or folders (with a scheme such as npz:, text:, hf:, python:).
PATH_KEYS = ("data.source", "data.tokenizer", "teacher.model", "teacher.weights", "student.model", "student.weights",
             "quantize.calibration", "gate.budgets")


def moved(value: Any, config_dir: Path, dest_dir: Path) -> Any:
    """``value`` with a relative file path in it rewritten relative to ``dest_dir``; anything else unchanged."""
    if not isinstance(value, str):
        return value
    match = _SCHEME.match(value)
    scheme, rest = (match.group(0), value[match.end():]) if match else ("", value)
    suffix = ""
    if scheme == "python:" and rest.count(":") == 1:  # python:module.py:Class
        rest, function = rest.split(":")
        suffix = f":{function}"
    path = Path(rest)
    full = path if path.is_absolute() else config_dir / path
    if not full.exists():
        return value  # a zoo or builtin name, or a module on the import path
    return f"{scheme}{os.path.relpath(full.resolve(), dest_dir.resolve())}{suffix}"


def relocate(config: dict[str, Any], config_dir: Path, dest_dir: Path) -> dict[str, Any]:
    """A copy of ``config`` that runs from ``dest_dir`` as it ran from ``config_dir`` (target names become the
    paths of the files they named, so the search's targets are the ones used)."""
    import copy

    out = copy.deepcopy(config)
    for key in PATH_KEYS:
        section, name = key.split(".")
        if isinstance(out.get(section), dict) and name in out[section]:
            out[section][name] = moved(out[section][name], config_dir, dest_dir)
    for member in (out.get("teacher") or {}).get("members") or []:
        for name in ("model", "weights"):
            if isinstance(member, dict) and name in member:
                member[name] = moved(member[name], config_dir, dest_dir)
    targets = []
    for i, target in enumerate(out.get("targets") or ["host-cpu"]):
        try:
            source = Path(load_target(target, config_dir, key=f"targets[{i}]").source)
        except ConfigError:
            targets.append(target)
            continue
        targets.append(os.path.relpath(source.resolve(), dest_dir.resolve()))
    out["targets"] = targets
    return out
