"""The ``report.json`` schema (versioned): what the profile stage measured and the gate decided.

Users and CI scripts read this file, so its shape is a contract: fields are
only added within a major version; renaming or removing one bumps it. All
times are milliseconds, energies millijoules, powers watts, accuracies
fractions in [0, 1]. ``edgekd report-schema`` prints the JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Histogram(_Model):
    edges_ms: list[float]  # len(counts) + 1 bin edges
    counts: list[int]


class LatencyStats(_Model):
    """Single-stream, batch 1, steady state after the warm-up (see ``edgekd.ondevice.latency``).

    edgekd's own benchmark fills every field. A device's own tool (LiteRT
    ``benchmark_model``, ``trtexec``, ``benchmark_app``) prints only some: the rest
    are null, never interpolated, and ``measured_by`` names the tool.
    """

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    cov: float | None = Field(description="coefficient of variation, std / mean")
    runs: int | None
    warmup_runs: int | None = None
    warmup_seconds: float | None = None
    load_ms: float | None = Field(None, description="loading/compiling the artifact in its runtime, apart from the steady state")
    first_inference_ms: float | None = None
    stable: bool | None = Field(description="false when the CoV stayed above the threshold after the repeats; null when unknown")
    repeats: int = Field(1, description="measurements taken; more than 1 when the first was unstable")
    measured_by: str = Field("edgekd.ondevice.bench", description="the benchmark that took these numbers")
    histogram: Histogram | None = None


class Energy(_Model):
    mj_per_inference: float
    avg_power_w: float
    inferences_per_joule: float
    source: Literal["measured", "estimated"]
    meter: str = Field(description="the meter read (rapl, nvml, ...) or, for an estimate, the power model and its parameters")
    boundary: str = Field(description="what the number covers: cpu-package, gpu-board, module-input-rail, battery, wall, estimate")
    idle_power_w: float | None = None
    net_mj_per_inference: float | None = None
    windows: list[dict] = Field(default_factory=list)


class Parity(_Model):
    max_abs_diff: float
    mean_abs_diff: float | None = None
    top1_agreement: float
    atol: float | None = None
    min_top1_agreement: float | None = None
    ok: bool
    samples: int | None = None


class ModelSummary(_Model):
    accuracy: float
    per_class_accuracy: list[float]
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None


class GateCheck(_Model):
    """One budget applied to one artifact."""

    target: str
    artifact: str
    budget: str  # e.g. min_accuracy, max_latency_ms.p95
    limit: float | bool | str
    measured: float | bool | str | None
    passed: bool
    message: str
    skipped: bool = Field(False, description="not evaluated: the artifact was not run here and the budgets allow that")


class GateSummary(_Model):
    passed: bool
    checks: int
    failures: int
    budgets_file: str


class HostInfo(_Model):
    runner: str = Field(description="local, ssh:user@host, adb:SERIAL")
    cpu: str = ""
    cores: int | None = None
    frequency_mhz: float | None = None
    threads: int | None = None
    affinity: list[int] | None = None
    machine: str = ""
    runtime: str = ""


class ArtifactReport(_Model):
    id: str = Field(description="target/backend/precision")
    target: str
    backend: str
    precision: str
    path: str | None = Field(description="relative to the report file")
    status: Literal["ok", "failed", "not run here"]
    reason: str = ""
    size_bytes: int | None = None
    sha256: str | None = None
    accuracy: float | None = None
    per_class_accuracy: list[float] | None = None
    parity: Parity | None = None
    latency_ms: LatencyStats | None = None
    energy: Energy | None = None
    accuracy_per_watt: float | None = Field(None, description="accuracy / average power (W) during the energy windows")
    peak_memory_mb: float | None = Field(None, description="peak resident memory of the process that ran the artifact")
    host: HostInfo | None = None
    gate: list[GateCheck] | None = Field(None, description="null when no budgets were applied")


class Report(_Model):
    schema_version: str = SCHEMA_VERSION
    edgekd_version: str
    created: str
    run: str
    class_names: list[str]
    teacher: ModelSummary
    student: ModelSummary = Field(description="the FP32 student every artifact was built from (after pruning)")
    artifacts: list[ArtifactReport]
    gate: GateSummary | None = None
