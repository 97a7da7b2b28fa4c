"""Provenance: ``manifest.json`` for the run and a short model card beside every artifact."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..io import write_json, write_text
from ..ondevice.latency import PYTHON_CLOCK
from ..records import FloatLayers

if TYPE_CHECKING:
    from ..context import StageContext

# The core toolchain; each backend adds the pip packages it declares (edgekd/backends/<name>/__init__.py).
TOOLCHAIN = ("torch", "torchao", "onnx", "torch-pruning", "numpy")


def toolchain_versions() -> dict[str, str]:
    from ..ondevice.backend_info import BACKEND_INFO

    versions = {}
    for name in dict.fromkeys([*TOOLCHAIN, *(p for _, info in BACKEND_INFO.items() for p in info.packages)]):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(ctx: "StageContext", config: dict[str, Any], report: dict[str, Any] | None) -> dict[str, Any]:
    from ..records import CompileRecord, StudentRecord, TeacherRecord

    teacher = ctx.record("teacher", TeacherRecord)
    student = ctx.record("prune" if "prune" in ctx.records else "distill", StudentRecord)
    artifacts = [{k: a.get(k) for k in ("id", "path", "sha256", "size_bytes", "status")}
                 for a in (report or {}).get("artifacts", [])]
    if not artifacts and "compile" in ctx.records:
        artifacts = [{"id": a.id, "path": a.path, "sha256": a.sha256, "size_bytes": a.size_bytes, "status": a.status}
                     for a in ctx.record("compile", CompileRecord).artifacts]
    return {
        "edgekd_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "toolchain": toolchain_versions(),
        "config": config,
        "data": student.data,
        "teacher": [{"model": m.model, "sha256": m.sha256} for m in teacher.members],
        "student": {"model": student.model.model, "sha256": student.model.sha256},
        "artifacts": artifacts,
    }


def model_card(artifact: dict[str, Any], report: dict[str, Any], manifest: dict[str, Any]) -> str:
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    lat, energy = artifact.get("latency_ms") or {}, artifact.get("energy") or {}
    energy_text = "-"
    if energy and energy.get("mj_per_inference") is None:
        energy_text = f"{energy.get('status')}: {energy.get('reason', '')}"
    elif energy:
        energy_text = f"{energy['mj_per_inference']:.4g} mJ per inference, {energy['avg_power_w']:.3g} W ({energy['source']}: {energy['meter']}; boundary {energy['boundary']})"
    gate = artifact.get("gate")
    gate_text = "no budgets applied" if gate is None else (
        "all budgets hold" if all(c["passed"] for c in gate) else
        "FAILED: " + ", ".join(f"{c['budget']} ({c['message']})" for c in gate if not c["passed"]))
    return "\n".join([
        f"# {artifact['id']}",
        "",
        f"Built by edgekd {manifest['edgekd_version']} from the student `{manifest['student']['model']}` "
        f"(parameters sha256 `{(manifest['student']['sha256'] or '')[:16]}`), distilled from "
        + ", ".join(f"`{t['model']}`" for t in manifest["teacher"]) + f" on `{manifest['data'].get('source', '?')}` "
        f"(data sha256 `{str(manifest['data'].get('data_hash', ''))[:16]}`).",
        "",
        "| | |", "|---|---|",
        f"| status | {artifact['status']}{': ' + artifact['reason'] if artifact.get('reason') else ''} |",
        f"| file | `{artifact.get('path')}` ({num(artifact.get('size_bytes'), ',')} bytes, sha256 `{(artifact.get('sha256') or '')[:16]}`) |",
        f"| accuracy | {num(artifact.get('accuracy'), '.2%')} (teacher {report['teacher']['accuracy']:.2%}, FP32 student {report['student']['accuracy']:.2%}) |",
        f"| latency (batch 1) | p50 {num(lat.get('p50'), '.4g')} ms, p95 {num(lat.get('p95'), '.4g')} ms, p99 {num(lat.get('p99'), '.4g')} ms"
        f"{_clock_note(lat)} |",
        f"| energy | {energy_text} |",
        f"| accuracy per watt | {num(artifact.get('accuracy_per_watt'), '.4g')} |",
        f"| peak memory | {num(artifact.get('peak_memory_mb'), '.1f')} MB |",
        f"| measured on | {(artifact.get('host') or {}).get('cpu', '-')} via {(artifact.get('host') or {}).get('runner', '-')} |",
        f"| gate | {gate_text} |",
        *_float_layers_row(artifact),
        "",
    ])


def _clock_note(latency: dict[str, Any]) -> str:
    """Where the runtime's own clock timed the runs: which, and the median around the Python call beside it."""
    clock = latency.get("clock")
    if not clock or clock == PYTHON_CLOCK:
        return ""
    around = latency.get("python_call_p50")
    return f"; timed by {clock}" + (f", p50 {around:.4g} ms around the Python call" if around is not None else "")


def _float_layers_row(artifact: dict[str, Any]) -> list[str]:
    """The card's line on INT8 layers returned to float (compile.int8_max_accuracy_drop), where any were."""
    if not (artifact.get("float_layers") or {}).get("layers"):
        return []
    fl = FloatLayers.model_validate(artifact["float_layers"])
    int8 = f"; the runtime runs {fl.runtime_int8()} layers as integer kernels" if fl.runtime else ""
    return [f"| layers in float | {', '.join(fl.names())} ({len(fl.layers)} of {fl.quantized_layers}; validation accuracy "
            f"{fl.int8_accuracy:.2%} all-INT8 -> {fl.accuracy:.2%}{int8}) |"]


def write_provenance(run_dir: Path, ctx: "StageContext", config: dict[str, Any], report: dict[str, Any] | None) -> dict[str, Any]:
    manifest = build_manifest(ctx, config, report)
    write_json(run_dir / "manifest.json", manifest)
    for artifact in (report or {}).get("artifacts", []):
        if artifact.get("path") and artifact["status"] == "ok":
            path = run_dir / artifact["path"]
            write_text(path.parent / f"{path.name}.card.md", model_card(artifact, report, manifest))
    return manifest
