"""Energy meters behind one interface (``Meter``), found by name or detected in priority order.

Importing this package registers every meter: each module here is imported (``discover``) and
registers its own. None imports an optional dependency until it is opened (pynvml only in
``nvml``), so detection works with the standard library alone.
"""

from __future__ import annotations

from pathlib import Path

from ..registry import discover
from .base import METERS, CounterMeter, Meter, MeterUnavailable, PowerMeter, register

discover(__name__)

# Most specific first: a GPU's own counter, then a Jetson's module input, then the CPU package,
# then a phone battery, then Apple's estimate.
DETECT_ORDER = ("nvml", "jetson-ina3221", "rapl", "android-battery", "powermetrics")


def open_meter(name: str, root: Path = Path("/"), **options) -> Meter:
    """Open the meter registered as ``name``; raises ``MeterUnavailable`` if it cannot run here."""
    return METERS.get(name).open(Path(root), **options)


def detect(root: Path = Path("/")) -> tuple[Meter | None, dict[str, str]]:
    """The first meter that opens, in ``DETECT_ORDER`` then any other registered, and why each one before it did not."""
    skipped: dict[str, str] = {}
    for name in [*DETECT_ORDER, *(n for n in METERS if n not in DETECT_ORDER)]:
        try:
            return METERS.get(name).open(Path(root)), skipped
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
