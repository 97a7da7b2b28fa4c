"""The profile protocol's settings and their defaults, declared once.

The pipeline YAML's ``profile`` section (``edgekd.config``), the device-side
benchmark's flags (``bench.py``) and the runners that drive a device's own
tool (``benchmark_model``, ``trtexec``, ``benchmark_app``) all take their
defaults from these two dataclasses. They live here, in the self-contained
ondevice package (standard library only), because the benchmark runs on
devices where the rest of edgekd is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping


def _from(cls, settings: Mapping[str, Any] | None, renamed: Mapping[str, str] | None = None):
    """``cls`` from a profile-section mapping: known keys taken, missing or None ones left at the default."""
    settings, renamed = settings or {}, renamed or {}
    given = {f.name: settings.get(renamed.get(f.name, f.name)) for f in fields(cls)}
    return cls(**{name: value for name, value in given.items() if value is not None})


@dataclass
class LatencySettings:
    """Single-stream batch-1 timing; the recipe of trtexec, benchmark_app and benchmark_model."""

    warmup_s: float = 2.0  # warm-up lasts at least this long (CPUs take over a second to reach their boost clock) ...
    warmup_runs: int = 20  # ... and at least this many runs
    runs: int = 1000  # timed runs: at least this many ...
    min_seconds: float = 2.0  # ... and for at least this long
    max_seconds: float = 60.0  # but never longer than this
    # p50_spread (the spread of the medians of 5 consecutive blocks of the timed runs, over the median; see
    # ondevice/latency.py) above this repeats the measurement, then flags it unstable. 0.05: the p50 tolerance
    # (0.95-1.05 of a native tool) asked elsewhere; above the sampling floor measured by
    # benchmarks/latency_stability.py (20 us and 2 ms ONNX models, 1 thread, 2 s loops: the same runs shuffled
    # give 0.002-0.038) while a busy machine's drift shows (0.03-0.59 in time order; per-sample CoV 0.2-3.8).
    stability_threshold: float = 0.05
    max_repeats: int = 3  # measurements at most, when unstable (``repeats`` in the profile section)

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any] | None) -> "LatencySettings":
        """From the profile section as a mapping (``ProfileJob.settings``)."""
        return _from(cls, settings, {"max_repeats": "repeats"})


@dataclass
class EnergySettings:
    """Energy in windows (MLPerf Tiny: at least 10 s each); the median joules per inference is reported."""

    meter: str = "auto"  # auto | none | a meter's name
    windows: int = 5  # 0 turns energy off on the benchmark's command line
    window_s: float = 10.0
    min_duration_s: float = 0.0  # the windows together last at least this long (MLPerf Power: 600 s)

    @classmethod
    def from_profile(cls, settings: Mapping[str, Any] | None) -> "EnergySettings":
        """From the profile section as a mapping: its ``energy`` block."""
        return _from(cls, (settings or {}).get("energy"))


LATENCY = LatencySettings()
ENERGY = EnergySettings()
