"""LiteRT's ``benchmark_model`` on a Linux device over SSH (a target's ``device.tool: benchmark_model``).

The command line and the parsers are the ADB runner's, which always times .tflite files with it.
"""

from __future__ import annotations

from typing import Any

from ...runners.adb import benchmark_model_args, parse_benchmark_model, parse_memory
from ..base import DEVICE_TOOLS, DeviceTool


@DEVICE_TOOLS.register("benchmark_model")
class BenchmarkModel(DeviceTool):
    def command(self, path: str, artifact: str, options: dict[str, Any], settings: dict[str, Any], extra: list[str]) -> list[str]:
        return benchmark_model_args(path, artifact, options, settings, extra)

    def parse(self, output: str, cov_threshold: float | None = None) -> dict[str, Any]:
        return parse_benchmark_model(output, cov_threshold)

    def peak_memory_mb(self, output: str) -> float | None:
        return parse_memory(output)["peak_memory_mb"]
