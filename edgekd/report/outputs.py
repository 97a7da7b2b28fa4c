"""The run's output step: ``report.json``, ``report.html``, ``manifest.json`` and the model cards, written once.

The pipeline calls ``write_outputs`` after its stages; it builds the report from
whichever records the run has (none before the profile stage), applies the
gate's checks when the gate ran with budgets, and writes each file atomically,
so a killed run leaves the previous report whole.
"""

from __future__ import annotations

from typing import Any

from ..context import StageContext
from ..io import write_json
from ..records import CompileRecord, GateRecord, ProfileRecord, StudentRecord, TeacherRecord
from ..targets import target_rates

TEACHER, STUDENT, COMPILED, PROFILED, GATE = "teacher", "prune", "compile", "profile", "gate"


def run_report(ctx: StageContext) -> dict[str, Any]:
    """The report's content from the records of a run whose profile stage has run (no gate applied)."""
    from .build import build_report

    student = ctx.record(STUDENT, StudentRecord)
    return build_report(ctx.record(COMPILED, CompileRecord), ctx.record(PROFILED, ProfileRecord),
                        ctx.record(TEACHER, TeacherRecord).figures, student.figures, student.class_names, ctx.config.name,
                        student.inputs, target_rates(ctx.config))


def write_outputs(ctx: StageContext) -> dict[str, Any] | None:
    """Write what the run's records allow; return report.json's content (None before the profile stage)."""
    from ..gate import apply
    from .html import write_html
    from .manifest import write_provenance

    report = None
    if PROFILED in ctx.records:
        report = run_report(ctx)
        gate = ctx.records.get(GATE)
        if isinstance(gate, GateRecord) and gate.applied:
            report = apply(report, gate.model_dump(mode="json"))
        write_json(ctx.run_dir / "report.json", report)
        write_html(report, ctx.run_dir / "report.html")
    if COMPILED in ctx.records:
        write_provenance(ctx.run_dir, ctx, ctx.config.model_dump(mode="json"), report)
    return report
