"""NVIDIA's ``trtexec`` on the device (a target's ``device.tool: trtexec``): it times the engine end to end."""

from __future__ import annotations

import math
import re
from typing import Any

from ...ondevice.settings import LatencySettings
from ...runners.base import tail, tool_latency
from ..base import DEVICE_TOOLS, DeviceTool


def parse_trtexec(output: str, stability_threshold: float | None = None) -> dict[str, Any]:
    """trtexec's performance summary: the end-to-end ``Latency:`` line (not H2D, D2H or GPU compute), in ms."""
    found = None
    for line in output.splitlines():
        text = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())
        if text.startswith("Latency:"):
            found = text
    if found is None or "&&&& FAILED" in output:
        raise ValueError(f"no trtexec 'Latency:' summary line: {tail(output)}")
    values = dict(re.findall(r"(min|max|mean|median|percentile\(\d+%\)) = ([-+\d.eE]+) ms", found))
    trace = re.search(r"Timing trace has (\d+) queries", output)
    load = re.search(r"Engine (?:loaded|deserialized) in ([\d.]+) sec", output)
    number = lambda key: float(values[key]) if key in values else None  # noqa: E731
    return tool_latency("trtexec", stability_threshold, p50=number("median"), p90=number("percentile(90%)"),
                        p95=number("percentile(95%)"), p99=number("percentile(99%)"), mean=number("mean"),
                        min=number("min"), max=number("max"), runs=int(trace.group(1)) if trace else None,
                        load_ms=float(load.group(1)) * 1000 if load else None)


@DEVICE_TOOLS.register("trtexec")
class Trtexec(DeviceTool):
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        s = LatencySettings.from_profile(settings)
        # --avgRuns=1: statistics over single inferences, not over averages of 10.
        return [path, f"--loadEngine={artifact}", f"--warmUp={int(float(s.warmup_s) * 1000)}",
                f"--iterations={int(s.runs)}", f"--duration={int(math.ceil(float(s.min_seconds)))}",
                "--avgRuns=1", "--useSpinWait", *extra]

    def parse(self, output: str, stability_threshold: float | None = None) -> dict[str, Any]:
        return parse_trtexec(output, stability_threshold)
