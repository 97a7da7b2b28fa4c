"""Assemble ``report.json`` from the stage records (compile rows joined with their profiles)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import __version__
from .schema import Report

LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max", "cov", "runs", "warmup_runs", "warmup_seconds",
                "load_ms", "first_inference_ms", "stable", "repeats", "histogram", "measured_by")
ENERGY_KEYS = ("mj_per_inference", "avg_power_w", "inferences_per_joule", "source", "meter", "boundary", "idle_power_w",
               "net_mj_per_inference", "windows")
PARITY_KEYS = ("max_abs_diff", "mean_abs_diff", "top1_agreement", "atol", "min_top1_agreement", "ok", "samples")
HOST_KEYS = ("runner", "cpu", "cores", "frequency_mhz", "threads", "affinity", "machine", "runtime")


def _pick(data: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return None if not data else {k: data[k] for k in keys if k in data}


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: figures.get(k) for k in ("accuracy", "per_class_accuracy", "params", "macs", "size_bytes")}


def build_report(records: dict[str, dict[str, Any]], run_name: str) -> dict[str, Any]:
    """The report of a run whose profile stage has run; ``gate`` fields stay empty until budgets are applied."""
    profiles = {p["id"]: p for p in records["profile"]["artifacts"]}
    artifacts = []
    for row in records["compile"]["artifacts"]:
        ident = f"{row['target']}/{row['backend']}/{row['precision']}"
        prof = profiles.get(ident)
        if prof is None:  # a target left out of profile.devices
            continue
        status, reason = row["status"], row.get("reason", "")
        if status == "ok" and prof["status"] != "ok":  # compiled and checked, but its profile failed
            status = "not run here" if prof["status"] == "not run here" else "failed"
            reason = f"profile: {prof['status']}: {prof.get('reason', '')}"
        artifacts.append({
            "id": ident, "target": row["target"], "backend": row["backend"], "precision": row["precision"],
            "path": row.get("path"), "status": status, "reason": reason,
            "size_bytes": row.get("size_bytes"), "sha256": row.get("sha256"),
            # Accuracy as measured where the artifact was profiled (the device), else the compile check's.
            "accuracy": prof.get("accuracy", row.get("accuracy")),
            "per_class_accuracy": prof.get("per_class_accuracy", row.get("per_class_accuracy")),
            "parity": _pick(row.get("parity"), PARITY_KEYS),
            "latency_ms": _pick(prof.get("latency_ms"), LATENCY_KEYS),
            "energy": _pick(prof.get("energy"), ENERGY_KEYS),
            "accuracy_per_watt": prof.get("accuracy_per_watt"),
            "peak_memory_mb": prof.get("peak_memory_mb"),
            "host": _pick(prof.get("host"), HOST_KEYS),
            "gate": None,
        })
    student = records["prune"]
    report = {
        "edgekd_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": run_name,
        "class_names": student["class_names"],
        "teacher": _summary(records["teacher"]["figures"]),
        "student": _summary(student["figures"]),
        "artifacts": artifacts,
        "gate": None,
    }
    return Report.model_validate(report).model_dump(mode="json")
