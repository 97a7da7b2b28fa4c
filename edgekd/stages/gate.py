"""Stage ``gate``: the budgets file applied to the run's measurements (``gate.budgets`` in the config).

Without a budgets file the stage records that nothing was gated. The run's
exit code follows the verdict, so ``edgekd run`` fails CI like ``edgekd gate``.
The report itself is written once, by the run's output step (``edgekd.report.outputs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..gate import evaluate, gate_table, load_budgets, write_junit, write_markdown
from ..records import GateRecord
from ..targets import target_rates
from .base import STAGES, Stage, StageContext


@STAGES.register("gate")
class GateStage(Stage):
    name = "gate"
    record_type = GateRecord
    requires = ("teacher", "prune", "compile", "profile")
    summary = "check every artifact against the budgets"

    def _budgets_path(self, ctx: StageContext) -> Path | None:
        path = ctx.config.gate.budgets
        if not path:
            return None
        return Path(path) if Path(path).is_absolute() else ctx.config.base_dir / path

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        path = self._budgets_path(ctx)
        return {"gate": ctx.config.section("gate"), "budgets": ctx.file_hash(str(path)) if path else None,
                "rates": target_rates(ctx.config)}

    def run(self, ctx: StageContext, out_dir: Path) -> GateRecord:
        path = self._budgets_path(ctx)
        if path is None:
            return GateRecord(applied=False)
        from ..report.outputs import run_report  # matplotlib and friends: imported when gating, not to plan a run

        result = evaluate(run_report(ctx), load_budgets(path), str(ctx.config.gate.budgets))
        write_junit(result, out_dir / "junit.xml")
        write_markdown(result, out_dir / "summary.md")
        return GateRecord(applied=True, **result)

    def describe(self, record: GateRecord) -> list[tuple[str, str]]:
        if not record.applied:
            return [("gate", "no budgets (gate.budgets in the config)")]
        s = record.summary
        return [("gate", f"{'passed' if s.passed else 'FAILED'}: {s.failures} of {s.checks} checks failed")]

    def tables(self, record: GateRecord) -> list[Any]:
        return [gate_table(record.model_dump(mode="json"))] if record.applied else []
