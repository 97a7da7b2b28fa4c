"""What ``edgekd gate`` reads and where it writes, checked before it gates.

The report is machine-written, so it is validated strictly against its own schema
(a number written as the string ``"0.95"`` is an error, never converted); every
budget entry must apply to some artifact of the report; the output paths must be
writable files. Each problem names the file, the field path or the option.
Light (json, pydantic, yaml): the gate runs without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from ..errors import ConfigError
from ..problems import Problem, raise_problems
from .budgets import BudgetsFile

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def read_report(path: Path) -> dict[str, Any]:
    """``report.json`` as a dict, after strict validation against ``edgekd.report.schema.Report``."""
    from .. import yamlfile
    from ..report.schema import SCHEMA_VERSION, Report

    expected = "expected the report.json that edgekd run or edgekd profile writes (schema: edgekd report-schema)"
    if not path.is_file():
        raise ConfigError(f"report {path} does not exist; {expected}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"report {path} cannot be read ({error}); {expected}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"report {path} is not JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                          f"{expected}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"report {path} holds {_JSON_TYPES.get(type(data), type(data).__name__)}, not a JSON object; {expected}")
    version, major = data.get("schema_version"), SCHEMA_VERSION.split(".")[0]
    if isinstance(version, str) and version.split(".")[0] != major:
        raise ConfigError(f"report {path} has schema_version {version}, but this edgekd reads {major}.x (fields were renamed "
                          f"between major versions); profile the run again with this edgekd (edgekd run CONFIG --out RUN)")
    try:
        # Strict: no string-to-number or number-to-bool conversion. JSON mode keeps NaN (a class absent from the split).
        report = Report.model_validate_json(text, strict=True)
    except ValidationError as error:
        raise_problems(yamlfile.problems(error, Report), f"report {path} is not an edgekd report.json (checked strictly against its schema)")
        raise  # not reached
    return report.model_dump(mode="json")


def unmatched_budgets(budgets: BudgetsFile, artifacts: Iterable[tuple[str, str, str]], where: str, of: str) -> list[Problem]:
    """A problem per budget entry that matches none of ``artifacts`` (target, backend, precision): such an
    entry would pass with nothing checked. ``where`` names the budgets file, ``of`` what the artifacts are."""
    artifacts = list(artifacts)
    names = ", ".join("/".join(a) for a in artifacts) or "(none)"
    return [
        Problem(f"{where}: budgets[{i}]",
                f"target {b.target!r}, backend {b.backend!r}, precision {b.precision!r} match no artifact of {of}",
                f"globs matching one of {names}")
        for i, b in enumerate(budgets.budgets)
        if not any(b.matches(*a) for a in artifacts)
    ]


def check_budgets_apply(budgets: BudgetsFile, report: dict[str, Any], budgets_path: Path, report_path: Path) -> None:
    artifacts = [(a["target"], a["backend"], a["precision"]) for a in report["artifacts"]]
    raise_problems(unmatched_budgets(budgets, artifacts, str(budgets_path), f"report {report_path}"),
                   f"budgets {budgets_path} do not fit the report")


def check_output(path: Path | None, option: str) -> None:
    """``path`` (an output file) is not a directory and does not lie under a file."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; expected the path of a file to write")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"{option} {path} lies under {blocker}, which is a file, not a directory; "
                          "expected the path of a file to write")
