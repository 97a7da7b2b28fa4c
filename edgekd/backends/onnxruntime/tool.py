"""ONNX Runtime's ``onnxruntime_perf_test`` (built from source with ONNX Runtime; no pip wheel ships it).

It warms up with one inference, then runs for a duration; ``-I`` feeds generated inputs (no test-data folder) and
``-s`` prints the statistics, in seconds: ``P50 Latency: 4.2e-05 s``. Its output format is read from
``onnxruntime/test/perftest/performance_runner.cc`` (the lines below); no build of the tool exists on the machine
this was written on, so only the parser is tested here, on output of that form.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ...ondevice.settings import LatencySettings
from ...runners.base import NUMBER as _NUMBER, tail, tool_latency
from ..base import DEVICE_TOOLS, DeviceTool



def parse_perf_test(output: str, stability_threshold: float | None = None) -> dict[str, Any]:
    """onnxruntime_perf_test's summary and statistics as a latency dict in milliseconds."""

    def number(label: str) -> float | None:
        found = re.search(rf"^{label}:\s*({_NUMBER})", output, re.M)
        return float(found.group(1)) if found else None

    seconds = lambda label: None if (v := number(label)) is None else v * 1000.0  # noqa: E731
    if number("Average inference time cost") is None:
        raise ValueError(f"no onnxruntime_perf_test summary ('Average inference time cost: ... ms'): {tail(output)}")
    runs = number("Total inference requests")
    return tool_latency("onnxruntime_perf_test", stability_threshold, p50=seconds("P50 Latency"), p90=seconds("P90 Latency"),
                        p95=seconds("P95 Latency"), p99=seconds("P99 Latency"), mean=number("Average inference time cost"),
                        min=seconds("Min Latency"), max=seconds("Max Latency"), runs=int(runs) if runs is not None else None,
                        warmup_runs=1, load_ms=seconds("Session creation time cost"),
                        first_inference_ms=number("First inference time cost"))


@DEVICE_TOOLS.register("onnxruntime_perf_test")
class PerfTest(DeviceTool):
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        s = LatencySettings.from_profile(settings)
        # duration mode: the profile's timed seconds plus its warm-up, since the tool warms up with one inference only
        command = [path, "-I", "-s", "-e", "cpu", "-m", "duration",
                   "-t", str(max(1, int(math.ceil(float(s.min_seconds) + float(s.warmup_s)))))]
        if options.get("threads"):
            command += ["-x", str(int(options["threads"]))]
        return command + [str(a) for a in extra] + [artifact]

    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        return parse_perf_test(output, stability_threshold)

    def peak_memory_mb(self, output: str) -> float | None:
        found = re.search(r"^Peak working set size:\s*(\d+) bytes", output, re.M)
        return int(found.group(1)) / 2**20 if found else None  # MiB, as edgekd's benchmark reports
