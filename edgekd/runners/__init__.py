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
    """The runner a target's ``device:`` block asks for (ssh, adb), or this machine.

    ``base_dir`` (the target file's folder) anchors relative paths in the block: an
    identity file, a known_hosts file, a benchmark_model binary.
    """
    spec = device.model_dump() if device is not None else {}
    if spec.get("ssh"):
        return RUNNERS.get("ssh")(spec["ssh"], spec, base_dir=base_dir)
    if spec.get("adb"):
        if spec.get("benchmark_model") and base_dir is not None:
            path = Path(spec["benchmark_model"]).expanduser()
            spec["benchmark_model"] = str(path if path.is_absolute() else base_dir / path)
        return RUNNERS.get("adb")(spec["adb"], spec)
    return RUNNERS.get("local")(None, spec)
