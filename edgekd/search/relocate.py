"""A trial's config written somewhere else (``best.yaml``): relative paths re-pointed so it still runs."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..targets import PACKAGE_TARGETS, load_target

_SCHEME = re.compile(r"^([a-z][a-z0-9_-]*):(?!//)")
# Schemes whose rest is a file or folder (zoo:, builtin:, hf:NAME on the hub are names, never rewritten).
FILE_SCHEMES = ("npz", "text", "imagefolder", "torchscript", "export", "onnx", "hf")
# Keys whose values may name files or folders.
PATH_KEYS = ("data.source", "data.tokenizer", "teacher.model", "teacher.weights", "student.model", "student.weights",
             "quantize.calibration", "gate.budgets")


def _relative(full: Path, dest_dir: Path) -> str:
    return os.path.relpath(full.resolve(), dest_dir.resolve())


def moved(value: Any, config_dir: Path, dest_dir: Path) -> Any:
    """``value`` with a relative file path in it rewritten relative to ``dest_dir``; names, absolute paths and
    anything else unchanged."""
    if not isinstance(value, str):
        return value
    match = _SCHEME.match(value)
    scheme = match.group(1) if match else ""
    rest = value[match.end():] if match else value
    if scheme == "python" and rest.count(":") == 1:  # python:module:attr; a bare module beside the config is a file
        module, attr = rest.split(":")
        file = module if module.endswith(".py") else f"{module}.py"
        if (not module.endswith(".py") and "/" not in module and "." in module) or Path(file).is_absolute():
            return value  # dotted names import with the config's folder on sys.path (see best.yaml's header)
        full = config_dir / file
        return f"python:{_relative(full, dest_dir)}:{attr}" if full.is_file() else value
    if scheme and scheme not in FILE_SCHEMES:
        return value
    if Path(rest).is_absolute():
        return value
    full = config_dir / rest
    if not full.exists():
        return value  # hf:NAME, a builtin name: the loader reports what is missing
    return f"{scheme + ':' if scheme else ''}{_relative(full, dest_dir)}"


def relocate(config: dict[str, Any], config_dir: Path, dest_dir: Path) -> dict[str, Any]:
    """A copy of ``config`` that runs from ``dest_dir`` as it ran from ``config_dir``. A target name found in the
    config's own targets folders becomes the path of that file; built-in target names stay names."""
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
            source = Path(load_target(target, config_dir, key=f"targets[{i}]").source).resolve()
        except ConfigError:
            targets.append(target)
            continue
        builtin = source.parent == Path(PACKAGE_TARGETS).resolve()
        keep = Path(target).is_absolute() or builtin
        targets.append(target if keep else _relative(source, dest_dir))
    out["targets"] = targets
    return out
