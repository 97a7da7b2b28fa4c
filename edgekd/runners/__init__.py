"""Device runners, one module each; importing this package finds and registers them (no list to edit)."""

from __future__ import annotations

from pathlib import Path

from ..registry import discover
from .base import (RUNNERS, DeviceFailed, DeviceRunner, DeviceUnreachable, HostKeyRefused, ProfileJob, bench_args,
                   tool_latency, tool_result)

discover(__name__)

__all__ = ["RUNNERS", "DeviceFailed", "DeviceRunner", "DeviceUnreachable", "HostKeyRefused", "ProfileJob", "bench_args",
           "runner_for", "tool_latency", "tool_result"]


def runner_for(device, base_dir: Path | None = None) -> DeviceRunner:
    """The runner a target's ``device:`` block asks for by its address key (``ssh:``, ``adb:``, ...), else this machine.

    ``base_dir`` (the target file's folder) anchors relative paths in the block: an
    identity file, a known_hosts file, a benchmark_model binary.
    """
    spec = device.model_dump() if device is not None else {}
    asked = [name for name in RUNNERS.names() if name != LOCAL and spec.get(name)]
    if len(asked) > 1:
        raise ValueError(f"device: one way to reach a device, not {' and '.join(asked)}")
    return RUNNERS.get(asked[0] if asked else LOCAL).from_device(spec, base_dir)


LOCAL = "local"  # the runner for targets without a device address: this machine
