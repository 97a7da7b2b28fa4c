"""The budgets YAML: limits per target (glob), later entries refining earlier ones.

    budgets:
      - target: "*"
        min_accuracy: 0.97
        max_latency_ms: {p95: 2.0}
      - target: "jetson-*"
        precision: int8
        max_energy_mj: 5.0

Every key is optional except ``target``; an unknown key is an error, so a
misspelt budget never silently stops gating.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import yamlfile

Percentile = Literal["p50", "p90", "p95", "p99", "mean", "max"]
SELECTORS = ("target", "backend", "precision")


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(..., description="glob over target names")
    backend: str = Field("*", description="glob over backends (onnxruntime, openvino, ...)")
    precision: str = Field("*", description="glob over precisions (fp32, fp16, int8)")
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1, description="against the FP32 student, or `against`")
    against: Literal["student", "teacher"] | None = None
    max_class_drop: float | None = Field(None, ge=0, le=1, description="worst per-class drop against the teacher")
    class_drop_against: Literal["student", "teacher"] | None = None
    max_latency_ms: dict[Percentile, float] | None = None
    max_energy_mj: float | None = Field(None, gt=0, description="millijoules per inference")
    min_accuracy_per_watt: float | None = Field(None, ge=0, description="accuracy / average power (W): at rate_hz when "
                                                "set (idle power + energy above idle per inference x rate), else at "
                                                "full load (the benchmark loop back to back)")
    min_accuracy_per_joule: float | None = Field(None, ge=0, description="accuracy x inferences per joule")
    rate_hz: float | None = Field(None, gt=0, description="the application's inference rate (a 30 fps camera: 30); "
                                  "fails an artifact whose mean latency cannot sustain it, and judges "
                                  "min_accuracy_per_watt at it")
    min_sqnr_db: float | None = Field(None, description="the artifact's outputs against its reference (the QDQ ONNX "
                                      "model for INT8, PyTorch otherwise), in dB; identical outputs pass")
    max_size_mb: float | None = Field(None, gt=0, description="10^6 bytes")
    max_peak_memory_mb: float | None = Field(None, gt=0)
    require_measured_energy: bool | None = None
    require_stable_latency: bool | None = Field(
        None, description="fail unless the latency was judged stable (its p50 spread across blocks within "
        "profile.stability_threshold); unknown (a device's own tool gives no per-run times) fails too")
    allow_unstable_latency: bool | None = Field(
        None, description="judge max_latency_ms on a measurement flagged unstable (default false: such a check fails)")
    max_percentile_spread: float | None = Field(
        None, gt=0, description="the most each tail percentile budgeted in max_latency_ms (p90, p95, p99) may move "
        "across 5 blocks of the timed runs, over its value: one check of its own per percentile "
        "(max_percentile_spread.p95); unknown fails. Unset by default: on a quiet 2-vCPU VM a 7.6 us model's p95 "
        "moved 12-53% within loops whose median held to 1% (benchmarks/results/latency_stability_quiet.md)")
    allow_not_run: bool | None = Field(None, description="artifacts not run here are skipped, not failed (default true)")

    def matches(self, target: str, backend: str, precision: str) -> bool:
        return (fnmatch.fnmatchcase(target, self.target) and fnmatch.fnmatchcase(backend, self.backend)
                and fnmatch.fnmatchcase(precision, self.precision))


class BudgetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: list[Budget] = Field(..., min_length=1)


def load_budgets(path: str | Path) -> BudgetsFile:
    return yamlfile.load(path, BudgetsFile, what="budgets file")


def effective(budgets: BudgetsFile, target: str, backend: str, precision: str) -> dict:
    """The limits that apply to one artifact: matching entries merged in order, later keys winning."""
    merged: dict = {}
    for budget in budgets.budgets:
        if not budget.matches(target, backend, precision):
            continue
        for key in budget.model_fields_set - set(SELECTORS):
            value = getattr(budget, key)
            if key == "max_latency_ms" and value is not None:
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return {k: v for k, v in merged.items() if v is not None}
