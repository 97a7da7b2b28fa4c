"""Stage ``gate``: the budgets file applied to the report (``gate.budgets`` in the config).

Without a budgets file the stage records that nothing was gated. The run's
exit code follows the verdict, so ``edgekd run`` fails CI like ``edgekd gate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..gate import evaluate, load_budgets, write_junit, write_markdown
from ..report import build_report
from .base import STAGES, Stage, StageContext


@STAGES.register("gate")
class GateStage(Stage):
    name = "gate"
    requires = ("teacher", "prune", "compile", "profile")
    summary = "check every artifact against the budgets"

    def _budgets_path(self, ctx: StageContext) -> Path | None:
        path = ctx.config.gate.budgets
        if not path:
            return None
        return Path(path) if Path(path).is_absolute() else ctx.config.base_dir / path

    def validate(self, ctx: StageContext) -> None:
        path = self._budgets_path(ctx)
        if path is not None:
            load_budgets(path)  # a malformed budgets file fails before any training

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        path = self._budgets_path(ctx)
        return {"gate": ctx.config.section("gate"), "budgets": ctx.file_hash(str(path)) if path else None}

    def run(self, ctx: StageContext, out_dir: Path) -> dict[str, Any]:
        path = self._budgets_path(ctx)
        if path is None:
            return {"applied": False, "per_artifact": {}, "summary": None}
        result = evaluate(build_report(ctx.records, ctx.config.name), load_budgets(path), str(ctx.config.gate.budgets))
        write_junit(result, out_dir / "junit.xml")
        write_markdown(result, out_dir / "summary.md")
        return {"applied": True, **result}

    def describe(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        if not record["applied"]:
            return [("gate", "no budgets (gate.budgets in the config)")]
        s = record["summary"]
        return [("gate", f"{'passed' if s['passed'] else 'FAILED'}: {s['failures']} of {s['checks']} checks failed")]
