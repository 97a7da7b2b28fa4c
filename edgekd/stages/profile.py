"""Stage ``profile``: accuracy, latency percentiles, memory and energy of every compiled artifact.

Each artifact that compiled is run by ``edgekd.ondevice.bench`` on its
target's device (this machine by default) in a fresh process: the latency
protocol, accuracy on the test split in the artifact's own runtime, and
energy from a meter where one exists, else the target's power model,
labelled estimated. Devices are profiled concurrently, the artifacts of one
device one after another (so they never disturb each other's timing).

Each device has its own timeout and retries (``device.timeout_s``/``retries``,
else the profile section's). A device that cannot be reached gets
``unreachable`` rows (after its retries; a refused host key or login is not
retried) and one that fails gets ``failed`` rows with the reason; either way
the other devices finish. Where a device's own tool timed the artifact
(benchmark_model on a phone), accuracy cannot be measured there: the row then
carries the compile check's accuracy for the same artifact and says so
(``accuracy_source``).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..errors import ConfigError
from ..ondevice.backend_info import artifact_files
from ..ondevice.latency import PYTHON_CLOCK
from ..ondevice.meters.base import REFUSED
from ..power_models import estimate
from ..records import CompiledArtifact, CompileRecord, FloatLayersCost, ProfiledArtifact, ProfileRecord
from ..runlock import scratch_dir
from ..runners import DeviceFailed, DeviceUnreachable, ProfileJob, bench_args, runner_for
from ..targets import load_target
from .base import STAGES, Stage, StageContext

UNREACHABLE = "unreachable"
COMPILED = "compile"  # the stage whose record lists the artifacts


def energy_of(bench: dict[str, Any], power: dict[str, Any] | None) -> dict[str, Any] | None:
    """The artifact's energy: the meter's reading; else the target's power model's estimate; else no figures,
    ``refused`` when a meter read but its reading could not be right, ``unavailable`` when none could read.
    Every case but a measurement carries each meter's reason."""
    reasons = bench.get("meters_unavailable") or {}
    refused_first = sorted(reasons.items(), key=lambda item: not item[1].startswith(REFUSED))  # the news: a meter read wrong
    why = "; ".join(f"{name}: {text}" for name, text in refused_first)
    if bench.get("energy"):
        return {**bench["energy"], "status": "measured"}
    estimated = estimate(power, bench)
    if estimated is not None:
        return {**estimated, "status": "estimated", "reason": why, "meters_unavailable": reasons}
    if not reasons:
        return None
    refused = any(text.startswith(REFUSED) for text in reasons.values())
    return {"status": "refused" if refused else "unavailable", "reason": why, "meters_unavailable": reasons}


def result_row(row: CompiledArtifact, bench: dict[str, Any], power: dict[str, Any] | None, runner: str | None) -> ProfiledArtifact:
    """One artifact's profile: the benchmark's numbers plus energy (measured, or estimated and named so)."""
    key = dict(target=row.target, backend=row.backend, precision=row.precision, runner=runner)
    status = bench.get("status", "failed")
    if status != "ok":
        return ProfiledArtifact(**key, status=status, reason=bench.get("reason", ""))
    energy = energy_of(bench, power)
    figures = energy is not None and energy.get("mj_per_inference") is not None
    accuracy, per_class, source = bench.get("accuracy"), bench.get("per_class_accuracy"), "device"
    if accuracy is None:  # a device tool (benchmark_model, trtexec, benchmark_app) times random inputs
        accuracy, per_class = row.accuracy, row.per_class_accuracy
        source = f"build machine: the compile check of this artifact in its runtime ({bench.get('accuracy_note', 'not measured on the device')})"
    measured_by = bench.get("measured_by", "edgekd.ondevice.bench")
    native = bench.get("native_latency")
    if native and native.get("p50") and bench["latency_ms"].get("p50"):
        native = {**native, "p50_ratio": bench["latency_ms"]["p50"] / native["p50"]}
    # A device tool's statistics keep only what it printed; the rest stay null and latency budgets on them fail as "not measured".
    return ProfiledArtifact(
        **key, status="ok", reason=bench.get("reason", ""),
        latency_ms={**bench["latency_ms"], "measured_by": measured_by, "native": native}, accuracy=accuracy, per_class_accuracy=per_class,
        accuracy_source=source, samples=bench.get("samples"), energy=energy, peak_memory_mb=bench.get("peak_memory_mb"),
        baseline_memory_mb=bench.get("baseline_memory_mb"), cpu_utilization=bench.get("cpu_utilization"),
        accuracy_per_watt=accuracy / energy["avg_power_w"] if accuracy is not None and figures and energy["avg_power_w"] > 0 else None,
        accuracy_per_joule=accuracy * energy["inferences_per_joule"] if accuracy is not None and figures else None,
        host={**bench.get("host", {}), "runner": runner, "runtime": bench.get("runtime", "")},
        measured_by=measured_by,
        logits_sha256=bench.get("logits_sha256"),  # equal hashes: the device computed the same outputs
    )


def float_layers_cost(layers: list[str], mixed: ProfiledArtifact, all_int8: ProfiledArtifact) -> FloatLayersCost:
    cost = FloatLayersCost(layers=layers, all_int8_status=all_int8.status, all_int8_reason=all_int8.reason,
                           all_int8_accuracy=all_int8.accuracy, all_int8_latency_ms=all_int8.latency_ms)
    if mixed.latency_ms and all_int8.latency_ms:
        for percentile in ("p50", "p95"):
            mine, theirs = getattr(mixed.latency_ms, percentile), getattr(all_int8.latency_ms, percentile)
            if mine is not None and theirs is not None:
                setattr(cost, f"{percentile}_added_ms", mine - theirs)
    return cost


@STAGES.register("profile")
class ProfileStage(Stage):
    name = "profile"
    record_type = ProfileRecord
    requires = (COMPILED,)
    summary = "latency percentiles, accuracy, memory and energy of every artifact, on its device"

    def _targets(self, ctx: StageContext):
        targets = [load_target(t, ctx.config.base_dir, key=f"targets[{i}]") for i, t in enumerate(ctx.config.targets)]
        wanted = ctx.config.profile.devices
        if wanted:
            known = {t.name for t in targets}
            unknown = [d for d in wanted if d not in known]
            if unknown:
                raise ConfigError(f"profile.devices: {', '.join(map(repr, unknown))} not among this run's targets ({', '.join(sorted(known))})")
            targets = [t for t in targets if t.name in wanted]
        return targets

    def validate(self, ctx: StageContext) -> None:
        self._targets(ctx)  # profile.devices names targets of this run

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        return {"profile": ctx.config.section("profile"),
                "targets": {t.name: {"device": t.device.model_dump(), "power": t.power} for t in self._targets(ctx)}}

    def run(self, ctx: StageContext, out_dir: Path) -> ProfileRecord:
        cfg, data = ctx.config.profile, ctx.data
        samples = cfg.samples or len(data.y_test)
        test_file = out_dir / "test.npz"
        np.savez(test_file, x=ctx.artifact_inputs()[:samples].numpy(), y=data.y_test[:samples].numpy())
        targets = {t.name: t for t in self._targets(ctx)}
        compiled = [r for r in ctx.record(COMPILED, CompileRecord).artifacts if r.target in targets]
        results: dict[str, ProfiledArtifact] = {}
        by_device: dict[str, list[CompiledArtifact]] = {}
        for row in compiled:
            if row.status != "ok":  # nothing to profile: the compile row says why
                results[row.id] = ProfiledArtifact(target=row.target, backend=row.backend, precision=row.precision,
                                                   status=row.status, reason=row.reason or "not compiled")
            else:
                by_device.setdefault(row.target, []).append(row)

        console = Console(stderr=True)

        def profile_device(name: str) -> list[ProfiledArtifact]:
            target = targets[name]
            device = target.device
            timeout_s = device.timeout_s or cfg.timeout_s
            retries = cfg.retries if device.retries is None else device.retries
            try:
                runner = runner_for(device, Path(target.source).parent if target.source else None)
            except Exception as error:  # a malformed address: this device's rows fail, the others run
                return [result_row(row, {"status": "failed", "reason": f"device: {error}"}, None, str(device.ssh or device.adb))
                        for row in by_device[name]]
            rows: list[ProfiledArtifact] = []
            gone = None  # once a device is unreachable, its other artifacts are not tried again
            for row in by_device[name]:
                if gone is not None:
                    rows.append(result_row(row, {"status": UNREACHABLE, "reason": f"not tried: {gone}"}, None, runner.label))
                    continue
                path = ctx.absolute(row.path)
                job = ProfileJob(artifact=path, files=artifact_files(row.backend, path), backend=row.backend, precision=row.precision,
                                 options=row.options, data=test_file, bench_args=bench_args(cfg), timeout_s=timeout_s,
                                 settings=cfg.model_dump(mode="json"), work_dir=scratch_dir(ctx.run_dir))
                started = time.perf_counter()
                rows.append(self._attempt(runner, job, row, target.power, retries))
                if rows[-1].status == "ok" and row.float_layers and row.float_layers.full_int8:
                    full = ctx.absolute(row.float_layers.full_int8)
                    beside = self._attempt(runner, replace(job, artifact=full, files=artifact_files(row.backend, full)),
                                           row, None, retries)
                    rows[-1].float_layers_cost = float_layers_cost(row.float_layers.names(), rows[-1], beside)
                if rows[-1].status == UNREACHABLE:
                    gone = rows[-1].reason
                console.print(f"  {row.id} on {runner.label}: {rows[-1].status} ({time.perf_counter() - started:.1f}s)")
            return rows

        with ThreadPoolExecutor(max_workers=max(1, len(by_device))) as pool:
            for rows in pool.map(profile_device, list(by_device)):
                results.update({r.id: r for r in rows})
        return ProfileRecord(artifacts=[results[r.id] for r in compiled], test_samples=samples,
                             sequence_length=ctx.sequence_length())

    @staticmethod
    def _attempt(runner, job: ProfileJob, row: CompiledArtifact, power, retries: int) -> ProfiledArtifact:
        for attempt in range(retries + 1):
            try:
                return result_row(row, runner.profile(job), power, runner.label)
            except DeviceUnreachable as why:
                reason = str(why)
                if attempt < retries and getattr(why, "retry", True):
                    time.sleep(min(5.0, 1.0 + attempt))
                    continue
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                return result_row(row, {"status": UNREACHABLE, "reason": reason + tries}, power, runner.label)
            except DeviceFailed as why:
                return result_row(row, {"status": "failed", "reason": str(why)}, power, runner.label)
            except Exception as error:  # a bug or a broken result must cost this artifact only, not every device
                return result_row(row, {"status": "failed", "reason": f"{type(error).__name__}: {error}"}, power, runner.label)
        raise AssertionError("unreachable")  # pragma: no cover

    def describe(self, record: ProfileRecord) -> list[tuple[str, str]]:
        ok = [r for r in record.artifacts if r.status == "ok"]
        c = record.counts()
        rows = [("artifacts", f"{c['ok']} profiled, {c['failed']} failed, {c['not run here']} not run here, {c[UNREACHABLE]} unreachable")]
        if record.sequence_length:
            rows.append(("inputs", f"batch 1, {record.sequence_length} tokens (padding included)"))
        timed = [r for r in ok if r.latency_ms and r.latency_ms.p50 is not None]  # a device's own tool may print no median
        if timed:
            fastest = min(timed, key=lambda r: r.latency_ms.p50)
            accuracy = "?" if fastest.accuracy is None else f"{fastest.accuracy:.2%}"
            rows.append(("fastest", f"{fastest.id} p50 {fastest.latency_ms.p50:.4f} ms, {accuracy}"))
            # figures from a runtime's own clock leave out the Python call the others include: say which, and by how much
            own = [r for r in timed if r.latency_ms.clock not in (None, PYTHON_CLOCK) and r.latency_ms.python_call_p50]
            if own:
                added = statistics.median((r.latency_ms.python_call_p50 - r.latency_ms.p50) * 1000 for r in own)
                rows.append(("clock", f"{len(own)} of {len(timed)} timed by the runtime's own clock "
                             f"({own[0].latency_ms.clock.split(' (')[0]}), which leaves out the Python call "
                             f"(+{added:.1f} µs on their median); the rest around the Python call"))
        if ok:
            unstable = [r.id for r in ok if r.latency_ms and r.latency_ms.stable is False]
            if unstable:
                rows.append(("unstable latency", f"{len(unstable)} of {len(ok)} (p50 spread across blocks above profile.stability_threshold)"))
            ratios = {r.id: r.latency_ms.native.p50_ratio for r in ok
                      if r.latency_ms and r.latency_ms.native and r.latency_ms.native.p50_ratio}
            if ratios:
                rows.append(("p50 / native tool", ", ".join(f"{k.split('/', 1)[1]} {v:.2f}" for k, v in ratios.items())))
            statuses = sorted({r.energy.status for r in ok if r.energy})
            rows.append(("energy", ", ".join(statuses) or "none"))
            for r in ok:
                cost = r.float_layers_cost
                if cost is not None:
                    added = ("all-INT8 " + cost.all_int8_status if cost.p95_added_ms is None
                             else f"p95 {cost.p95_added_ms:+.4f} ms, p50 {cost.p50_added_ms:+.4f} ms vs all-INT8")
                    rows.append(("float layers", f"{r.id}: {', '.join(cost.layers)} ({added})"))
        for r in record.artifacts:  # a device's refusal or failure is worth a line of its own
            if r.status in ("failed", UNREACHABLE) and r.runner not in (None, "local"):
                rows.append((r.id, f"{r.status}: {r.reason}"))
        return rows
