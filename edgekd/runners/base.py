"""How a target's device is reached: a runner runs ``edgekd.ondevice.bench`` next to the artifact.

The local runner starts it as a subprocess here; the SSH and ADB runners reach
a device. Each returns the benchmark's JSON (the same form everywhere) or
raises ``DeviceUnreachable`` / ``DeviceFailed`` with the reason.
"""

from __future__ import annotations

import ctypes
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..records import LatencyStats
from ..registry import Registry

if TYPE_CHECKING:
    from ..backends.base import DeviceTool

NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"  # a number as device tools print it (sign, decimals, exponent)

# prctl(PR_SET_PDEATHSIG, SIGKILL), bound here so a child calls no more Python than that between fork and exec.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In a benchmark's process before it starts (Linux): the kernel kills it when edgekd's thread that started
    it dies, so a killed run leaves no benchmark running on, writing its result into the next run's scratch folder."""
    _PRCTL(1, 9)


def child_setup(pin: list[int] | None) -> Callable[[], None] | None:
    """What a benchmark's process does before it starts: run on the ``pin`` cores (where given) and die with its
    parent (Linux). The core set is built here, before the fork."""
    cores = frozenset(int(c) for c in pin or ())
    if not cores:
        return die_with_parent if _PRCTL else None

    def setup() -> None:
        os.sched_setaffinity(0, cores)
        if _PRCTL:
            _PRCTL(1, 9)

    return setup


class DeviceUnreachable(Exception):
    """The device could not be reached (offline, refused, timed out); worth a retry unless ``retry`` is False.

    A refused host key or a refused login is not retried: it is a security or
    configuration refusal that the next attempt would meet again.
    """

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.retry = retry


class HostKeyRefused(DeviceUnreachable):
    """The device's host key is unknown or changed: refused, never retried, never accepted silently."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retry=False)


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
    # The same settings as a dict (the profile section), for runners that drive a device's own tool
    # (benchmark_model, trtexec, benchmark_app) instead of the Python benchmark.
    settings: dict[str, Any] = field(default_factory=dict)
    # Where the runner keeps temporary files: the run folder's scratch space (edgekd.runlock.scratch_dir), so a
    # killed run leaves nothing in /tmp and the next run removes it. None: the system's temporary folder.
    work_dir: Path | None = None


class DeviceRunner(ABC):
    kind: ClassVar[str]

    def __init__(self, address: str | None, device: dict[str, Any] | None = None) -> None:
        self.address, self.device = address, device or {}

    @classmethod
    def from_device(cls, device: dict[str, Any], base_dir: Path | None) -> "DeviceRunner":
        """The runner for a target's ``device:`` block whose key ``kind`` holds the address (``ssh: pi@host``).

        ``base_dir`` (the target file's folder) anchors relative paths in the block."""
        return cls(device.get(cls.kind), device)

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


def pin_mask(cores: list[int]) -> str:
    """``taskset``'s hexadecimal CPU mask for a list of cores: [4, 5, 6, 7] -> "f0"."""
    if not cores or any(int(c) < 0 for c in cores):
        raise ValueError(f"pin: expected core numbers >= 0, got {cores}")
    return format(sum(1 << int(c) for c in set(cores)), "x")


def tail(text: str, lines: int = 3) -> str:
    """The last lines of a tool's output, joined: enough to say why, short enough for a row."""
    return " | ".join(line.strip() for line in (text or "").strip().splitlines()[-lines:] if line.strip())


def bench_args(profile_cfg) -> list[str]:
    """The profile section as the benchmark's command-line options."""
    c = profile_cfg
    return [
        "--warmup-s", str(c.warmup_s), "--warmup-runs", str(c.warmup_runs), "--runs", str(c.runs),
        "--min-seconds", str(c.min_seconds), "--max-seconds", str(c.max_seconds),
        "--stability-threshold", str(c.stability_threshold), "--repeats", str(c.repeats),
        "--meter", c.energy.meter, "--energy-windows", str(c.energy.windows), "--energy-window-s", str(c.energy.window_s),
        "--energy-min-duration-s", str(c.energy.min_duration_s),
    ]


# The statistics of a latency measurement (the report's LatencyStats, declared once in edgekd.records); a device's
# own tool prints only some of them. The other fields say how they were taken.
LATENCY_FIELDS = tuple(f for f in LatencyStats.model_fields if f not in ("stability_threshold", "measured_by", "unknown", "native",
                                                                   "harness_overhead_ms", "clock", "python_call_p50", "tail_spread"))


def tool_settings(driver: "DeviceTool", settings: dict[str, Any], measured: dict[str, Any] | None) -> dict[str, Any]:
    """The profile settings a tool runs with: one that only counts runs (no duration option) is given the runs and
    warm-up runs edgekd's benchmark took, so both time the same work (the profile's counts where none were kept)."""
    if not driver.counts_runs_only or not measured:
        return dict(settings)
    return {**settings, **{key: int(measured[key]) for key in ("runs", "warmup_runs") if measured.get(key)}}


def tool_latency(tool: str, stability_threshold: float | None, **known: Any) -> dict[str, Any]:
    """A latency dict of the Python benchmark's shape from a tool's printed statistics (milliseconds).

    What the tool did not print stays None and is listed in ``unknown``; nothing is
    interpolated. ``measured_by`` names the tool, so a reader never mistakes its numbers
    for the Python benchmark's protocol.

    Stability: these tools print aggregates of one loop, never per-run times, so there are no
    block medians and no ``p50_spread`` to judge against ``stability_threshold``: ``stable``
    stays None (unknown) unless a parser passes a judgement of its own. Their per-sample
    ``cov`` (from std and mean, where printed) is kept as context, as in edgekd's benchmark,
    and is not a stand-in: single runs of a fast model vary far more than its median does.
    """
    out: dict[str, Any] = {name: known.get(name) for name in LATENCY_FIELDS}
    if out["cov"] is None and out["std"] is not None and out["mean"]:
        out["cov"] = out["std"] / out["mean"]
    if out["stable"] is None and out["p50_spread"] is not None and stability_threshold is not None:
        out["stable"] = out["p50_spread"] <= stability_threshold
    out["repeats"] = out["repeats"] or 1
    out.update({k: v for k, v in known.items() if k not in out})
    out["stability_threshold"] = stability_threshold
    out["measured_by"] = tool
    out["unknown"] = [name for name in LATENCY_FIELDS if out[name] is None and name != "histogram"]
    return out


def tool_result(tool: str, latency: dict[str, Any], host: dict[str, Any], output: str, **extra: Any) -> dict[str, Any]:
    """A benchmark result (the Python benchmark's JSON form) for an artifact timed by a device's own tool.

    The tool feeds random inputs, so accuracy is not measured on the device: ``accuracy`` is
    None and ``accuracy_note`` says so; the profile stage then reports the compile check's
    accuracy for the same artifact, labelled as measured on the build machine.
    """
    result = {
        "status": "ok", "runtime": tool, "measured_by": tool, "latency_ms": latency,
        "accuracy": None, "per_class_accuracy": None, "samples": None,
        "accuracy_note": f"{tool} times random inputs and cannot score accuracy on the device",
        "energy": None, "meters_unavailable": {"all": f"{tool} reads no energy meter"},
        "cpu_utilization": None, "peak_memory_mb": None, "baseline_memory_mb": None,
        "host": host, "tool_output_tail": "\n".join(output.strip().splitlines()[-25:]),
    }
    result.update(extra)
    return result
