"""This machine: the benchmark runs in a fresh Python process, so its peak memory is the artifact's own."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .base import RUNNERS, DeviceFailed, DeviceRunner, ProfileJob, child_setup
from .native import native_latency


def bench_command(python: str, job: ProfileJob, artifact: str, data: str, out: str) -> list[str]:
    return [python, "-m", "edgekd.ondevice.bench", "--artifact", artifact, "--backend", job.backend,
            "--data", data, "--options", json.dumps(job.options), "--out", out, *job.bench_args]


@RUNNERS.register("local")
class LocalRunner(DeviceRunner):
    kind = "local"

    def profile(self, job: ProfileJob) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="edgekd-bench-", dir=job.work_dir) as tmp:
            out = Path(tmp) / "result.json"
            command = bench_command(sys.executable, job, str(job.artifact), str(job.data), str(out))
            if self.device.get("pin"):
                command += ["--pin", ",".join(map(str, self.device["pin"]))]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=job.timeout_s,
                                      preexec_fn=child_setup(None))
            except subprocess.TimeoutExpired:
                raise DeviceFailed(f"the benchmark ran past its timeout ({job.timeout_s:.0f} s)") from None
            if not out.is_file():
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise DeviceFailed(f"the benchmark exited {done.returncode} without a result: {' | '.join(tail)}")
            result = json.loads(out.read_text())
        if result.get("status") == "ok" and job.settings.get("native_tool", True):
            try:  # after edgekd's benchmark: never both on the CPU at once
                result["native_latency"] = native_latency(job, self.device.get("pin"), result.get("latency_ms"))
            except Exception as error:  # a side figure must never fail the gated one
                result["native_latency"] = {"tool": "?", "status": "failed", "reason": f"{type(error).__name__}: {error}"}
        return result
