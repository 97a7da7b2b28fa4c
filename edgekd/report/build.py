"""Assemble ``report.json`` from the typed stage records (compile rows joined with their profiles)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import __version__
from ..records import CompileRecord, Figures, InputSpec, ProfileRecord
from .schema import ArtifactReport, Report


def build_report(compiled: CompileRecord, profiled: ProfileRecord, teacher: Figures, student: Figures,
                 class_names: list[str], run_name: str, inputs: list[InputSpec] = (),
                 rates: dict[str, float] | None = None) -> dict[str, Any]:
    """The report of a run whose profile stage has run; ``gate`` fields stay empty until budgets are applied.
    ``rates``: target name -> the application's inference rate it states."""
    profiles = {p.id: p for p in profiled.artifacts}
    artifacts = []
    for row in compiled.artifacts:
        prof = profiles.get(row.id)
        if prof is None:  # a target left out of profile.devices
            continue
        status, reason = row.status, row.reason
        if status == "ok" and prof.status != "ok":  # compiled and checked, but its profile failed
            status = "not run here" if prof.status == "not run here" else "failed"
            reason = f"profile: {prof.status}: {prof.reason}"
        measured_here = prof.status == "ok"
        artifacts.append(ArtifactReport(
            id=row.id, target=row.target, backend=row.backend, precision=row.precision, path=row.path,
            status=status, reason=reason, size_bytes=row.size_bytes, sha256=row.sha256,
            # Accuracy as measured where the artifact was profiled (the device), else the compile check's.
            accuracy=prof.accuracy if measured_here else row.accuracy,
            per_class_accuracy=prof.per_class_accuracy if measured_here else row.per_class_accuracy,
            parity=row.parity, latency_ms=prof.latency_ms, energy=prof.energy, accuracy_per_watt=prof.accuracy_per_watt,
            accuracy_per_joule=prof.accuracy_per_joule, rate_hz=(rates or {}).get(row.target),
            peak_memory_mb=prof.peak_memory_mb, host=prof.host,
            float_layers=row.float_layers, float_layers_cost=prof.float_layers_cost,
        ))
    report = Report(
        edgekd_version=__version__, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), run=run_name,
        class_names=class_names, inputs=list(inputs), sequence_length=profiled.sequence_length, teacher=teacher,
        student=student, artifacts=artifacts,
    )
    return report.model_dump(mode="json")
