"""Energy meters behind one interface (``Meter``), found by name or detected in priority order.

Importing this package registers every meter; none imports an optional dependency until it
is opened (pynvml only in ``nvml``), so detection works with the standard library alone.
"""

from __future__ import annotations

from pathlib import Path

from . import android, jetson, nvml, powermetrics, rapl  # noqa: F401  (each registers its meter)
from .base import METERS, CounterMeter, Meter, MeterUnavailable, PowerMeter, register

# Most specific first: a GPU's own counter, then a Jetson's module input, then the CPU package,
# then a phone battery, then Apple's estimate.
DETECT_ORDER = ("nvml", "jetson-ina3221", "rapl", "android-battery", "powermetrics")


def open_meter(name: str, root: Path = Path("/"), **options) -> Meter:
    """Open the meter registered as ``name``; raises ``MeterUnavailable`` if it cannot run here."""
    try:
        cls = METERS[name]
    except KeyError:
        raise ValueError(f"unknown meter {name!r}; known meters: {', '.join(sorted(METERS))}") from None
    return cls.open(Path(root), **options)


def detect(root: Path = Path("/")) -> tuple[Meter | None, dict[str, str]]:
    """The first meter in ``DETECT_ORDER`` that opens, and why each one before it did not."""
    skipped: dict[str, str] = {}
    for name in DETECT_ORDER:
        try:
            return METERS[name].open(Path(root)), skipped
        except MeterUnavailable as exc:
            skipped[name] = exc.reason
    return None, skipped


__all__ = [
    "DETECT_ORDER",
    "METERS",
    "CounterMeter",
    "Meter",
    "MeterUnavailable",
    "PowerMeter",
    "detect",
    "open_meter",
    "register",
]
