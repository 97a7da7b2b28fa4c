"""How a target's device is reached: a runner runs ``edgekd.ondevice.bench`` next to the artifact.

The local runner starts it as a subprocess here; the SSH and ADB runners reach
a device. Each returns the benchmark's JSON (the same form everywhere) or
raises ``DeviceUnreachable`` / ``DeviceFailed`` with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..registry import Registry


class DeviceUnreachable(Exception):
    """The device could not be reached (offline, refused, host key unknown); worth a retry."""


class DeviceFailed(Exception):
    """The device was reached but the benchmark could not run there."""


@dataclass
class ProfileJob:
    artifact: Path  # the file the runtime loads
    files: list[Path]  # everything to copy to a device (an OpenVINO .bin, a whole .mlpackage)
    backend: str
    precision: str
    options: dict[str, Any]
    data: Path  # .npz with the preprocessed test inputs x and labels y
    bench_args: list[str] = field(default_factory=list)  # latency and energy settings for the benchmark
    timeout_s: float = 900.0


class DeviceRunner(ABC):
    kind: ClassVar[str]

    def __init__(self, address: str | None, device: dict[str, Any] | None = None) -> None:
        self.address, self.device = address, device or {}

    @property
    def label(self) -> str:
        return self.kind if not self.address else f"{self.kind}:{self.address}"

    @abstractmethod
    def profile(self, job: ProfileJob) -> dict[str, Any]:
        """Run the benchmark for one artifact and return its JSON."""

    def check(self) -> dict[str, Any]:
        """Reachability, runtimes and meters of the device (``edgekd devices check``)."""
        return {"reachable": True}


RUNNERS: Registry[type[DeviceRunner]] = Registry("runner")


def bench_args(profile_cfg) -> list[str]:
    """The profile section as the benchmark's command-line options."""
    c = profile_cfg
    return [
        "--warmup-s", str(c.warmup_s), "--warmup-runs", str(c.warmup_runs), "--runs", str(c.runs),
        "--min-seconds", str(c.min_seconds), "--max-seconds", str(c.max_seconds),
        "--cov-threshold", str(c.cov_threshold), "--repeats", str(c.repeats),
        "--meter", c.energy.meter, "--energy-windows", str(c.energy.windows), "--energy-window-s", str(c.energy.window_s),
    ]
