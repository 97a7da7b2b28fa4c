"""The ``report.json`` schema (versioned): what the profile stage measured and the gate decided.

Users and CI scripts read this file, so its shape is a contract: fields are
only added within a major version; renaming or removing one bumps it. All
times are milliseconds, energies millijoules, powers watts, accuracies
fractions in [0, 1]. ``edgekd report-schema`` prints the JSON Schema. The measurement blocks
(parity, latency, energy, host, gate checks) are the stage records' own models
(``edgekd.records``), declared once.
"""

from __future__ import annotations

from pydantic import Field

from ..records import (
    ArtifactStatus, Energy, Figures, FloatLayers, FloatLayersCost, GateCheck, GateSummary, HostInfo, InputSpec, LatencyStats,
    Parity, Record,
)

# 2.0: latency stability judged on p50_spread (cov_threshold -> stability_threshold); 2.1: energy status, reason
# and how it was measured (method, sampling interval, windows, duration, idle), accuracy_per_joule; 2.2: INT8
# layers returned to float (float_layers) and their latency cost (float_layers_cost); 2.3: latency_ms.clock (OpenVINO's
# figures are its own C++ clock around each inference) and latency_ms.python_call_p50 beside them; 2.4: rate_hz, the
# application's inference rate its target states; 2.5: latency_ms.tail_spread (p90/p95/p99 across blocks)
SCHEMA_VERSION = "2.5"


class ArtifactReport(Record):
    id: str = Field(description="target/backend/precision")
    target: str
    backend: str
    precision: str
    path: str | None = Field(description="relative to the report file")
    status: ArtifactStatus
    reason: str = ""
    size_bytes: int | None = None
    sha256: str | None = None
    accuracy: float | None = None
    per_class_accuracy: list[float] | None = None
    parity: Parity | None = None
    latency_ms: LatencyStats | None = None
    energy: Energy | None = None
    accuracy_per_watt: float | None = Field(None, description="at full load: accuracy / average power (W) during the "
                                            "energy windows, where the benchmark loop runs back to back (a budget's "
                                            "rate_hz judges it at the application's rate instead)")
    accuracy_per_joule: float | None = Field(None, description="accuracy x inferences per joule: what a battery buys")
    rate_hz: float | None = Field(None, description="the application's inference rate its target states (target rate_hz); "
                                  "the gate judges accuracy per watt at it and whether the artifact sustains it")
    peak_memory_mb: float | None = Field(None, description="peak resident memory of the process that ran the artifact")
    host: HostInfo | None = None
    float_layers: FloatLayers | None = Field(None, description="INT8 with compile.int8_max_accuracy_drop: the layers "
                                             "returned to float, their sensitivity and the accuracy on the validation split")
    float_layers_cost: FloatLayersCost | None = Field(None, description="the all-INT8 artifact profiled beside this one")
    gate: list[GateCheck] | None = Field(None, description="null when no budgets were applied")


class Report(Record):
    schema_version: str = SCHEMA_VERSION
    edgekd_version: str
    created: str
    run: str
    class_names: list[str]
    inputs: list[InputSpec] = Field(default_factory=list, description="the model's input: dtype, shape, preprocessing")
    sequence_length: int | None = Field(None, description="text: every artifact ran on inputs of this many tokens, batch 1")
    teacher: Figures
    student: Figures = Field(description="the FP32 student every artifact was built from (after pruning)")
    artifacts: list[ArtifactReport]
    gate: GateSummary | None = None
