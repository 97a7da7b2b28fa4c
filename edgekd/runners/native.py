"""The runtime's own benchmark tool, run beside edgekd's on this machine in the same profile.

edgekd's benchmark times each inference from Python (the figure the gate reads: every percentile,
stability, accuracy in the same process), by the runtime's own clock where its API keeps one (OpenVINO)
and otherwise around the Python call, which a C++ application does not pay (on a 20-50 µs model, a
fifth of the figure). The runtime's own tool (``benchmark_app`` for OpenVINO, ``benchmark_model`` for
LiteRT, ``trtexec`` for TensorRT, ``onnxruntime_perf_test``: whatever the backend declares) shows what a C++ loop
pays; where only ai-edge-litert's Python ``litert-benchmark`` is installed, it is a second Python loop (over LiteRT's
CompiledModel API, where edgekd's runtime uses the Interpreter), which checks edgekd's harness, not C++ overhead. Both are
recorded with their ratio. Tools run with the artifact's threads, the profile's runs and duration and
the device's pinned cores, after edgekd's benchmark has finished, so the two never share the CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..backends.base import DEVICE_TOOLS
from ..ondevice.backend_info import BACKEND_INFO
from .base import ProfileJob, child_setup, tail, tool_settings


def find_tool(name: str) -> str | None:
    """The tool on PATH or beside this Python (a virtual environment's bin, where pip puts benchmark_app)."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def native_latency(job: ProfileJob, pin: list[int] | None = None, measured: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The tool's median and mean for ``job``'s artifact, or why there is none; None when the backend declares no tool.
    ``pin``: the cores edgekd's benchmark was pinned to (the device's ``pin``); the tool runs on the same ones.
    ``measured``: edgekd's latency figures; a tool that only counts runs is given as many runs and warm-up runs."""
    info = BACKEND_INFO.get(job.backend) if job.backend in BACKEND_INFO else None
    tools = [tool for tool in (info.tools if info else ()) if tool in DEVICE_TOOLS]
    if not tools:
        return None
    found = [(tool, exe) for tool in tools if (exe := find_tool(tool))]
    if not found:
        return {"tool": tools[0], "status": "not run here", "reason": f"{' or '.join(tools)}: not on PATH on this machine"}
    tool, exe = found[0]
    driver = DEVICE_TOOLS.get(tool)()
    command = driver.local_command(exe, str(job.artifact), job.options, tool_settings(driver, job.settings, measured), [])
    shown = driver.shown(command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=job.timeout_s,
                              preexec_fn=child_setup(pin))
    except subprocess.TimeoutExpired:
        return {"tool": tool, "status": "failed", "reason": f"ran past the timeout ({job.timeout_s:.0f} s)"}
    except OSError as error:  # the tool (or the interpreter its script names) cannot be executed
        return {"tool": tool, "status": "failed", "reason": f"could not start {command[0]}: {error}", "command": shown}
    output = done.stdout + done.stderr
    try:
        if done.returncode != 0:
            raise ValueError(f"exited {done.returncode}: {tail(output)}")
        stats = driver.parse(output)
    except ValueError as why:
        return {"tool": tool, "status": "failed", "reason": str(why), "command": shown}
    return {"tool": tool, "status": "ok", "p50": stats.get("p50"), "mean": stats.get("mean"),
            "runs": stats.get("runs"), "command": (f"taskset -c {','.join(map(str, pin))} " if pin else "") + shown}
