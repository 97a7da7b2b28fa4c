"""What the gate writes: a JUnit file (one test case per target and budget), Markdown, a terminal table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import atomic_path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def write_junit(result: dict[str, Any], path: Path) -> Path:
    """Test suites per target, one case per artifact and budget; CI systems show failures by name."""
    from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

    suites: dict[str, TestSuite] = {}
    for artifact, checks in result["per_artifact"].items():
        for check in checks:
            suite = suites.setdefault(check["target"], TestSuite(f"edgekd.gate.{check['target']}"))
            case = TestCase(f"{artifact}: {check['budget']}", classname=f"edgekd.gate.{check['target']}")
            if check["skipped"]:
                case.result = [Skipped(check["message"])]
            elif not check["passed"]:
                case.result = [Failure(f"{check['budget']}: {check['message']}")]
            case.system_out = f"limit {_fmt(check['limit'])}, measured {_fmt(check['measured'])}: {check['message']}"
            suite.add_testcase(case)
    xml = JUnitXml("edgekd gate")
    for suite in suites.values():
        suite.update_statistics()
        xml.add_testsuite(suite)
    xml.update_statistics()
    with atomic_path(Path(path)) as tmp:
        xml.write(str(tmp), pretty=True)
    return Path(path)


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    verdict = "passed" if s["passed"] else "FAILED"
    lines = [f"## edgekd gate: {verdict}", "",
             f"{s['checks']} checks, {s['failures']} failed (budgets: `{s['budgets_file']}`).", ""]
    failing = [c for cs in result["per_artifact"].values() for c in cs if not c["passed"]]
    skipped = [c for cs in result["per_artifact"].values() for c in cs if c["skipped"]]
    if failing:
        lines += ["| artifact | budget | limit | measured | |", "|---|---|---|---|---|"]
        lines += [f"| {c['artifact']} | {c['budget']} | {_fmt(c['limit'])} | {_fmt(c['measured'])} | {c['message']} |" for c in failing]
        lines.append("")
    if skipped:
        lines.append("Not run here (skipped): " + ", ".join(c["artifact"] for c in skipped))
        lines.append("")
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: Path | None) -> None:
    text = markdown(result)
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            Path(tmp).write_text(text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def gate_table(result: dict[str, Any], *, all_checks: bool = False):
    """Violations (or every check) as a rich table."""
    from rich.table import Table

    s = result["summary"]
    title = f"gate: {'passed' if s['passed'] else 'FAILED'} ({s['failures']} of {s['checks']} checks failed)"
    table = Table(title=title)
    for column in ("artifact", "budget", "limit", "measured", "result", "detail"):
        table.add_column(column)
    for checks in result["per_artifact"].values():
        for c in checks:
            if not all_checks and c["passed"] and not c["skipped"]:  # a skipped check is worth seeing
                continue
            verdict = "[yellow]skipped[/]" if c["skipped"] else ("[green]pass[/]" if c["passed"] else "[red]FAIL[/]")
            table.add_row(c["artifact"], c["budget"], _fmt(c["limit"]), _fmt(c["measured"]), verdict, c["message"])
    if not table.rows:
        table.add_row("(all)", "-", "-", "-", "[green]pass[/]", f"all {s['checks']} checks hold")
    elif s["failures"] == 0:
        evaluated = sum(not c["skipped"] for checks in result["per_artifact"].values() for c in checks)
        table.add_row("(others)", "-", "-", "-", "[green]pass[/]", f"all {evaluated} evaluated checks hold")
    return table
