"""What ``edgekd search`` explores: the search file, and the default space read from the config.

A search file (``--space FILE``) has two optional parts::

    space:                                  # every dimension is a set of choices
      student.kwargs.width: [0.5, 0.75, 1.0]          # a list: values of one config key
      prune: {off: {prune.enabled: false},            # a mapping: named choices, each setting keys together
              "0.3": {prune.ratio: 0.3}}
    fixed:                                  # set in every trial (e.g. a shorter profile)
      profile.native_tool: false

Choices, not ranges: trials that pick the same student share its trained stages, so a few values per
dimension cost far less than a continuum. Without a ``space`` the default explores the student's size (a zoo
CNN's ``width``, a BERT-style student's ``layers``), the prune ratio (off, 0.2, 0.4) and the quantization mode
(none, ptq, qad); every artifact of every trial is a candidate, so each precision a target builds is searched too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import yamlfile
from ..problems import Problem, raise_problems
from .tune import Options

WIDTHS = (0.5, 0.75, 1.0)  # of the config's width
PRUNE_RATIOS = (0.2, 0.4)
QUANTIZE_MODES = ("none", "ptq", "qad")
WIDTH_STUDENTS = ("zoo:tiny_cnn", "zoo:mobilenetv2", "zoo:resnet")


class SearchFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: dict[str, Any] | None = Field(
        None, description="config key -> list of values, or dimension name -> {choice name: {key: value}}")
    fixed: dict[str, Any] = Field(default_factory=dict, description="config key -> value, set in every trial")


def load_search_file(path: str | Path | None) -> SearchFile:
    return SearchFile() if path is None else yamlfile.load(path, SearchFile, what="search file")


def dimensions(spec: dict[str, Any]) -> list[Options]:
    """Each entry of a search file's ``space`` as an Optuna categorical choice."""
    found, problems = [], []
    for name, choices in spec.items():
        if isinstance(choices, list) and choices:
            options = {_label(value): {name: value} for value in choices}
        elif isinstance(choices, dict) and choices and all(isinstance(v, dict) for v in choices.values()):
            options = {_label(label): dict(settings) for label, settings in choices.items()}
        else:
            problems.append(Problem(f"space.{name}", f"got {choices!r}", "a non-empty list of values for the key "
                                    "(e.g. [0.5, 1.0]), or named choices each setting keys ({off: {prune.enabled: "
                                    "false}, '0.3': {prune.ratio: 0.3}})"))
            continue
        found.append(Options(name, options))
    raise_problems(problems, "search file: bad space")
    return found


def _label(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def default_space(config: dict[str, Any]) -> list[Options]:
    """The student's size, the prune ratio and the quantization mode, around what ``config`` sets."""
    found = []
    student = config.get("student") or {}
    model, kwargs = student.get("model", "zoo:tiny_cnn"), student.get("kwargs") or {}
    if model in WIDTH_STUDENTS:
        base = float(kwargs.get("width", 1.0))
        found.append(Options("student.kwargs.width",
                             {f"{f * base:g}": {"student.kwargs.width": round(f * base, 4)} for f in WIDTHS}))
    elif model == "zoo:bert":
        layers = int(kwargs.get("layers", 4))
        found.append(Options("student.kwargs.layers",
                             {str(n): {"student.kwargs.layers": n} for n in sorted({max(1, layers // 2), layers})}))
    prune = {"off": {"prune.enabled": False}}
    prune.update({f"{r:g}": {"prune.enabled": True, "prune.ratio": r, "prune.target_macs": None,
                             "prune.target_params": None} for r in PRUNE_RATIOS})
    found.append(Options("prune", prune))
    found.append(Options("quantize.mode", {mode: {"quantize.mode": mode} for mode in QUANTIZE_MODES}))
    return found


def describe(space: list[Options]) -> str:
    return "; ".join(f"{d.name}: {', '.join(d.options)}" for d in space)
