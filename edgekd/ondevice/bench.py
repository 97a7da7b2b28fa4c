"""The device-side benchmark: load one artifact, time it, score it, read the energy meter; print JSON.

Run here by the local runner and on devices by the SSH runner, with the same
code, so a device's row has the same form as a local one::

    python -m edgekd.ondevice.bench --artifact model.tflite --backend litert \\
        --data test.npz --options '{"threads": 1}' --out result.json

``--data`` holds the test inputs ``x`` (N, C, H, W float32 preprocessed images, or N, S int64 token ids) and
labels ``y``; accuracy is computed on all of them, in this runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from .atomic import write_text
from .latency import LatencySettings, empty_call_ms, measure_latency
from .settings import ENERGY, LATENCY
from .runtimes import Unavailable, as_input, load


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """VmHWM where there is /proc: ru_maxrss on Linux keeps the peak of the parent that forked us."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def host_info(threads: int | None) -> dict:
    """What the numbers depend on: the CPU, its clock now, the cores this process may use."""
    found: dict[str, str] = {}
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "Model", "Hardware") and value and key not in found:
                found[key] = value  # x86: model name; Raspberry Pi and other ARM boards: Model / Hardware
            if key == "cpu MHz" and mhz is None:
                mhz = float(value)
    except OSError:
        pass
    cpu = found.get("model name") or found.get("Model") or found.get("Hardware") or platform.processor()
    try:
        mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu": cpu or platform.machine(), "cores": os.cpu_count(), "frequency_mhz": mhz, "threads": threads,
            "affinity": affinity, "machine": f"{platform.system()} {platform.release()} {platform.machine()}"}


def measured_energy(infer, meter_name: str, *, windows: int, window_s: float, min_duration_s: float = 0.0,
                    root: Path = Path("/"), **meter_options) -> tuple[dict | None, dict]:
    """Measured energy when a meter here reads right, else None and why each meter was not used or its
    reading refused (``refused: ...``). ``root``: the filesystem the meters look under (tests use fixture
    trees); ``meter_options`` go to the named meter's ``open`` (a Jetson's ``rail``)."""
    if meter_name == "none" or windows <= 0:
        return None, {"all": "energy measurement turned off"}
    from .energy import measure_energy
    from .meters import detect, open_meter
    from .meters.base import MeterUnavailable

    if meter_name == "auto":
        meter, reasons = detect(root)
    else:
        try:
            meter, reasons = open_meter(meter_name, root, **meter_options), {}
        except MeterUnavailable as why:
            return None, {meter_name: why.reason}
    if meter is None:
        return None, reasons
    try:
        return measure_energy(infer, meter, windows=windows, window_s=window_s, min_duration_s=min_duration_s), reasons
    except MeterUnavailable as refused:  # EnergyRefused: read, but not right; the profile reports why
        return None, {**reasons, meter.name: refused.reason}


def run(args: argparse.Namespace) -> dict:
    if args.pin:
        os.sched_setaffinity(0, {int(c) for c in args.pin.split(",")})
    options = json.loads(args.options)
    data = np.load(args.data)
    x, y = as_input(data["x"]), data["y"].astype(np.int64)
    baseline_mb = _rss_mb()
    started = time.perf_counter()
    model = load(args.backend, args.artifact, options)
    load_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    model.predict(x[:1])
    first_ms = (time.perf_counter() - started) * 1000

    # Single stream over a preloaded set of real inputs, as MLPerf's SingleStream does, each already in the
    # runtime's input form (Model.bind): the runtime is timed, as by benchmark_app, not numpy conversions.
    pool, cursor = [model.bind(x[i : i + 1]) for i in range(min(len(x), 64))], [0]

    def infer() -> None:
        pool[cursor[0] % len(pool)]()
        cursor[0] += 1

    settings = LatencySettings(warmup_s=args.warmup_s, warmup_runs=args.warmup_runs, runs=args.runs,
                               min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                               stability_threshold=args.stability_threshold, max_repeats=args.repeats)
    clock_name, runtime_ms = model.runtime_clock() or (None, None)
    latency = measure_latency(infer, settings, runtime_ms=runtime_ms, runtime_clock=clock_name)
    nothing = [lambda: None] * len(pool)  # the same wrapper and pool, around calls that do nothing

    def empty() -> None:
        nothing[cursor[0] % len(nothing)]()
        cursor[0] += 1

    latency.update(load_ms=load_ms, first_inference_ms=first_ms, harness_overhead_ms=empty_call_ms(empty))

    logits = np.concatenate([model.predict(x[i : i + 1]) for i in range(len(x))])
    predicted = logits.argmax(axis=1)
    classes = int(max(y.max() + 1, logits.shape[1]))
    per_class = [float((predicted[y == c] == c).mean()) if (y == c).any() else float("nan") for c in range(classes)]
    energy, meter_reasons = measured_energy(infer, args.meter, windows=args.energy_windows, window_s=args.energy_window_s,
                                            min_duration_s=args.energy_min_duration_s)
    return {
        "status": "ok",
        "runtime": getattr(model, "runtime", ""),
        "latency_ms": latency,
        "accuracy": float((predicted == y).mean()),
        "per_class_accuracy": per_class,
        "samples": int(len(y)),
        "logits_sha256": __import__("hashlib").sha256(np.round(logits, 4).tobytes()).hexdigest(),
        "energy": energy,
        "meters_unavailable": meter_reasons,
        "cpu_utilization": latency["cpu_seconds"] / latency["wall_seconds"] if latency["wall_seconds"] else None,
        "peak_memory_mb": _peak_rss_mb(),
        "baseline_memory_mb": baseline_mb,
        "host": host_info(options.get("threads")),
        "python": platform.python_version(),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgekd.ondevice.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", required=True, help="the compiled model file (e.g. .onnx, .xml, .tflite, .pte)")
    p.add_argument("--backend", required=True, help="the backend that built it: a folder of edgekd/backends with a runtime.py (e.g. onnxruntime)")
    p.add_argument("--data", required=True, help=".npz with x (N,C,H,W float32 or N,S int64 ids) and y (N,) labels")
    p.add_argument("--options", default="{}", help="runtime options as JSON, e.g. '{\"threads\": 1}'")
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    # defaults: edgekd.ondevice.settings, shared with the pipeline YAML's profile section
    p.add_argument("--warmup-s", type=float, default=LATENCY.warmup_s, help="warm up for at least this many seconds (default %(default)g)")
    p.add_argument("--warmup-runs", type=int, default=LATENCY.warmup_runs, help="... and at least this many runs (default %(default)d)")
    p.add_argument("--runs", type=int, default=LATENCY.runs, help="timed runs, at least (default %(default)d)")
    p.add_argument("--min-seconds", type=float, default=LATENCY.min_seconds, help="time for at least this long (default %(default)g)")
    p.add_argument("--max-seconds", type=float, default=LATENCY.max_seconds, help="stop timing after this long (default %(default)g)")
    p.add_argument("--stability-threshold", type=float, default=LATENCY.stability_threshold,
                   help="repeat when p50_spread (the spread of the medians of 5 consecutive blocks of the timed runs, "
                        "over the median) is above this (default %(default)g)")
    p.add_argument("--repeats", type=int, default=LATENCY.max_repeats, help="measurements at most, when unstable (default %(default)d)")
    p.add_argument("--meter", default=ENERGY.meter, help="energy meter: auto | none | a meter's name (one module of ondevice/meters each, e.g. rapl, nvml)")
    p.add_argument("--energy-windows", type=int, default=ENERGY.windows, help="energy windows (default %(default)d; 0 turns energy off)")
    p.add_argument("--energy-window-s", type=float, default=ENERGY.window_s, help="seconds per energy window (default %(default)g)")
    p.add_argument("--energy-min-duration-s", type=float, default=ENERGY.min_duration_s,
                   help="lengthen the windows so they last this long together (MLPerf Power: 600; default %(default)g)")
    p.add_argument("--pin", help="CPU cores to pin to, e.g. 4,5,6,7 (the big cores of a phone)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
        code = 0
    except Unavailable as why:
        result, code = {"status": "not run here", "reason": str(why)}, 0
    except Exception as error:  # the host shows this as the artifact's failed profile
        result, code = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}, 1
    text = json.dumps(result, indent=1)
    if args.out:
        write_text(args.out, text)
    else:
        print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
