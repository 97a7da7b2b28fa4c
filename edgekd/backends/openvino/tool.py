"""OpenVINO's ``benchmark_app`` on the device (a target's ``device.tool: benchmark_app``)."""

from __future__ import annotations

import math
import re
from typing import Any

from ...ondevice.settings import LatencySettings
from ...runners.base import tail, tool_latency
from ..base import DEVICE_TOOLS, DeviceTool


def parse_benchmark_app(output: str, stability_threshold: float | None = None) -> dict[str, Any]:
    """OpenVINO benchmark_app's statistics report (Median or an N-percentile, Average, Min, Max; ms or us)."""

    def ms(label: str) -> float | None:
        match = re.search(rf"^\[ INFO \]\s+{label}:\s+([\d.]+) (ms|us)\s*$", output, re.M)
        return None if match is None else float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)

    count = re.search(r"Count:\s+(\d+) iterations", output)
    if count is None or ms("Average") is None:
        raise ValueError(f"no benchmark_app statistics (Count, Latency) in its output: {tail(output)}")
    percentile = re.search(r"^\[ INFO \]\s+(\d+) percentile:", output, re.M)
    extra = {f"p{percentile.group(1)}": ms(rf"{percentile.group(1)} percentile")} if percentile else {}
    load = [float(m) for m in re.findall(r"(?:Read|Compile) model took ([\d.]+) ms", output)]
    first = re.search(r"First inference took ([\d.]+) ms", output)
    return tool_latency("benchmark_app", stability_threshold, p50=ms("Median"), mean=ms("Average"), min=ms("Min"), max=ms("Max"),
                        runs=int(count.group(1)), load_ms=sum(load) if load else None,
                        first_inference_ms=float(first.group(1)) if first else None,
                        warmup_runs=1 if first else None, **extra)


@DEVICE_TOOLS.register("benchmark_app")
class BenchmarkApp(DeviceTool):
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        threads, s = options.get("threads"), LatencySettings.from_profile(settings)
        command = [path, "-m", artifact, "-d", str(options.get("device", "CPU")), "-api", "sync",
                   "-niter", str(int(s.runs)), "-t", str(max(1, int(math.ceil(float(s.min_seconds)))))]
        # benchmark_app takes thread and stream counts only without a performance hint
        command += ["-hint", "none", "-nthreads", str(int(threads)), "-nstreams", "1"] if threads else ["-hint", "latency"]
        if options.get("inference_precision"):  # as the Python runtime: no silent bf16 on AMX CPUs
            command += ["-infer_precision", str(options["inference_precision"])]
        return command + extra

    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        return parse_benchmark_app(output, stability_threshold)
