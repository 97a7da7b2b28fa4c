"""LiteRT's ``benchmark_model``: its command line and its output, wherever it runs.

Two runners drive it: the ADB runner on a phone (where it is the only benchmark: a phone has no
Python) and the SSH runner on a Linux device whose target says ``device.tool: benchmark_model``.
Both get this driver from ``DEVICE_TOOLS`` by the tool's name, so what the tool prints is known here,
in the backend that declares it, and in no runner.

Its output is parsed in both forms it has had: the older statistics line (count, first, curr, min,
max, avg, std) and the newer one that adds p5, median and p95. Numbers it does not print (p90, p99,
and p50/p95 from older builds) stay None: nothing is interpolated.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ...ondevice.settings import LatencySettings
from ...runners.base import NUMBER as _NUMBER, tail, tool_latency
from ..base import DEVICE_TOOLS, DeviceTool

_STATS = re.compile(rf"count=(?P<count>\d+)(?P<rest>(?:\s+\w+={_NUMBER})+)")
_PAIR = re.compile(rf"(\w+)=({_NUMBER})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUMBER}), First inference: (?P<first>{_NUMBER}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUMBER}), Inference \(avg\): (?P<avg>{_NUMBER})")
# older builds: "Peak memory footprint (MB): init=.. overall=.."; newer: "Memory footprint delta from the start of the tool (MB): .."
_DELTA = re.compile(rf"(?:^|\s)(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                    rf"init=(?P<init>{_NUMBER}) overall=(?P<overall>{_NUMBER})", re.M)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUMBER})")


def _stats_lines(output: str) -> list[dict[str, float]]:
    """Every ``count=... first=... avg=...`` statistics line, in order: warm-up first, then the timed runs."""
    found = []
    for line in output.splitlines():
        match = _STATS.search(line)
        if match and "avg=" in match.group("rest"):
            values = {k: float(v) for k, v in _PAIR.findall(match.group(0))}
            found.append(values)
    return found


def parse_benchmark_model(output: str, stability_threshold: float | None = None) -> dict[str, Any]:
    """benchmark_model's printed statistics as a latency dict in milliseconds (see ``tool_latency``).

    Raises ``ValueError`` when the output has no timed statistics (the tool failed, or
    this is not benchmark_model output); the message carries the tool's last lines.
    """
    stats = _stats_lines(output)
    timings = _TIMINGS.search(output)
    if not stats:
        raise ValueError(f"no benchmark_model statistics line (count=... avg=...) in its output: {tail(output)}")
    if "Benchmarking failed" in output:  # statistics printed before a failure are not a measurement
        raise ValueError(f"benchmark_model says: Benchmarking failed: {tail(output)}")
    timed = stats[-1]
    warmup = stats[-2] if len(stats) > 1 else None
    ms = 1e-3  # benchmark_model prints microseconds
    latency = tool_latency(
        "benchmark_model", stability_threshold,
        p50=timed["median"] * ms if "median" in timed else None,
        p95=timed["p95"] * ms if "p95" in timed else None,
        p5=timed["p5"] * ms if "p5" in timed else None,
        mean=timed["avg"] * ms, std=timed["std"] * ms if "std" in timed else None,
        min=timed["min"] * ms, max=timed["max"] * ms, runs=int(timed["count"]),
        warmup_runs=int(warmup["count"]) if warmup else None,
        # the sum of the warm-up inferences' times; the tool does not print the warm-up's wall time
        warmup_seconds=warmup["count"] * warmup["avg"] * 1e-6 if warmup else None,
        load_ms=float(timings.group("init")) * ms if timings else None,
        first_inference_ms=float(timings.group("first")) * ms if timings else (warmup["first"] * ms if warmup and "first" in warmup else None),
        format="newer (p5/median/p95)" if "median" in timed else "older (count/first/curr/min/max/avg/std)",
    )
    return latency


def parse_memory(output: str) -> dict[str, float | None]:
    """Memory in MB: the periodic peak (newer builds) and the footprint at init and overall (both forms).

    The footprint lines are what the tool's own process added, not a process peak, so only the
    periodic peak is reported as ``peak_memory_mb``.
    """
    peak, delta = _PEAK.search(output), _DELTA.search(output)
    return {"peak_memory_mb": float(peak.group("peak")) if peak else None,
            "memory_delta_init_mb": float(delta.group("init")) if delta else None,
            "memory_delta_overall_mb": float(delta.group("overall")) if delta else None}


def benchmark_model_args(tool: str, graph: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
    """benchmark_model's command line for the profile section's protocol: warm-up by count and time, timed runs
    by count and time (both must be met), bounded by max_seconds; XNNPACK as the LiteRT Python runtime uses it."""
    s = LatencySettings.from_profile(settings)
    args = [tool, f"--graph={graph}",
            f"--warmup_runs={int(s.warmup_runs)}", f"--warmup_min_secs={float(s.warmup_s):g}",
            f"--num_runs={int(s.runs)}", f"--min_secs={float(s.min_seconds):g}",
            f"--max_secs={float(max(s.max_seconds, s.min_seconds)):g}", "--use_xnnpack=true"]
    if options.get("threads"):
        args.append(f"--num_threads={int(options['threads'])}")
    return args + [str(a) for a in extra]


@DEVICE_TOOLS.register("benchmark_model")
class BenchmarkModel(DeviceTool):
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        return benchmark_model_args(path, artifact, options, settings, extra)

    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        return parse_benchmark_model(output, stability_threshold)

    def peak_memory_mb(self, output: str) -> float | None:
        return parse_memory(output)["peak_memory_mb"]


# ai-edge-litert's own Python tool (pip's ``litert-benchmark``, where the C++ benchmark_model is not built): it
# times CompiledModel.run_by_name with perf_counter and prints its median rounded to 0.01 ms, a quarter of a 40 µs
# model. Run through its interpreter, statistics.median is wrapped so the median is also printed unrounded.
_UNROUNDED = """
import statistics, sys
from ai_edge_litert.tools.benchmark_litert_model import main
median = statistics.median
def unrounded(data):
    value = median(data)
    print(f"UNROUNDED_MEDIAN_MS {value!r}")
    return value
statistics.median = unrounded
sys.argv[0] = "litert-benchmark"
sys.exit(main())
"""
_PRINTED = re.compile(rf"^Inference \((?P<name>avg|min|max|median|std|p5|p95)\):\s+(?P<ms>{_NUMBER}) ms", re.M)


def script_interpreter(path: str) -> list[str] | None:
    """The Python (and its flags) a pip console script on this machine runs under, from its ``#!`` line."""
    if not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as script:
            first = script.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    words = shlex.split(first[2:]) if first.startswith("#!") else []
    # "#!/venv/bin/python", "#!/usr/bin/python3 -s" or "#!/usr/bin/env python3": a Python, with its flags
    return words if any("python" in Path(word).name for word in words[:2]) else None


def parse_litert_benchmark(output: str, stability_threshold: float | None = None) -> dict[str, Any]:
    """litert-benchmark's results block in milliseconds; the median unrounded where the wrapper printed it."""
    printed = {m.group("name"): float(m.group("ms")) for m in _PRINTED.finditer(output)}
    if "avg" not in printed:
        raise ValueError(f"no litert-benchmark results ('Inference (avg): ... ms') in its output: {tail(output)}")
    runs = re.search(r"^Inference \(avg\):.*\((\d+) runs\)", output, re.M)
    warmup = re.search(rf"^Warmup \(avg\):.*\((\d+) runs\)", output, re.M)
    first = re.search(rf"^Warmup \(first\):\s+({_NUMBER}) ms", output, re.M)
    init = re.search(rf"^Model initialization:\s+({_NUMBER}) ms", output, re.M)
    unrounded = re.findall(r"UNROUNDED_MEDIAN_MS (\S+)", output)
    return tool_latency("litert-benchmark", stability_threshold,
                        p50=float(unrounded[-1]) if unrounded else printed.get("median"), p95=printed.get("p95"),
                        p5=printed.get("p5"), mean=printed["avg"], std=printed.get("std"), min=printed.get("min"),
                        max=printed.get("max"), runs=int(runs.group(1)) if runs else None,
                        warmup_runs=int(warmup.group(1)) if warmup else None,
                        first_inference_ms=float(first.group(1)) if first else None,
                        load_ms=float(init.group(1)) if init else None,
                        rounding="median unrounded; other figures to 0.01 ms" if unrounded else "every figure to 0.01 ms")


@DEVICE_TOOLS.register("litert-benchmark")
class LiteRtBenchmark(DeviceTool):
    counts_runs_only = True  # no duration option: given as many runs as edgekd's benchmark took, the same work

    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        s = LatencySettings.from_profile(settings)
        args = ["--model", artifact, "--num_runs", str(int(s.runs)), "--warmup_runs", str(int(s.warmup_runs))]
        if options.get("threads"):
            args += ["--num_threads", str(int(options["threads"]))]
        return [path, *args, *map(str, extra)]

    def local_command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any],
                      extra: list[str]) -> list[str]:
        """On this machine, through the Python its console script names, with the median read before rounding."""
        command = self.command(path, artifact, options, settings, extra)
        interpreter = script_interpreter(path)
        return [*interpreter, "-c", _UNROUNDED, *command[1:]] if interpreter else command

    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        return parse_litert_benchmark(output, stability_threshold)

    def shown(self, command: list[str]) -> str:
        """The tool's own command line, not the wrapper that reads its median before rounding."""
        return " ".join(["litert-benchmark", *command[command.index("--model"):]]) if "-c" in command else " ".join(command)
