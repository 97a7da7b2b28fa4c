"""The one interface every energy meter implements, and the two ways energy is accumulated.

Meters read hardware counters or power sensors that differ in unit, update rate and what they
include, so each meter says what it measures (``boundary``) and how often its reading changes
(``update_period_s``): energy windows shorter than ten update periods are refused upstream,
and energies measured at different boundaries must never be compared.

This module runs on edge devices with only the standard library (see ``edgekd.ondevice``).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar, Sequence, TypeVar

from ..registry import Registry


class MeterUnavailable(Exception):
    """This meter cannot measure here; ``reason`` says why (missing device, permissions, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


REFUSED = "refused: "  # how a refusal reads wherever meter reasons are listed (and how the profile tells one)


class EnergyRefused(MeterUnavailable):
    """The meter read, but its reading cannot be right (a counter that did not advance, a negative
    delta, a window shorter than the meter updates, a charger powering the device): never report it."""

    def __init__(self, reason: str):
        super().__init__(reason if reason.startswith(REFUSED) else REFUSED + reason)


# How a figure was taken, named as MLCommons' power work names them; each meter declares its own.
METHODS = ("power-analyzer", "ina3221-rail", "odpm-rail", "battery-fuel-gauge", "rapl-package", "nvml-board",
           "soc-power-model", "model-estimate")

# Each module of the meters package registers its meter when the package is imported (discover).
METERS: "Registry[type[Meter]]" = Registry("meter")
M = TypeVar("M", bound="type[Meter]")


def register(cls: M) -> M:
    """Class decorator: make a meter reachable by its ``name`` through ``open_meter`` and ``detect``."""
    return METERS.register(cls.name, cls)


def read_text(path: Path, hint: str = "") -> str:
    """The stripped contents of a sysfs file; an unreadable file becomes ``MeterUnavailable``.

    Permission errors are the common failure (RAPL is root-only since CVE-2020-8694), so they
    carry ``hint``, the command that fixes them.
    """
    try:
        return Path(path).read_text().strip()
    except PermissionError as exc:
        raise MeterUnavailable(f"permission denied reading {path}" + (f": {hint}" if hint else "")) from exc
    except OSError as exc:
        raise MeterUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_number(path: Path, hint: str = "") -> float:
    """A sysfs file holding one number (counters can exceed 2**53 µJ only after years; float is fine)."""
    text = read_text(path, hint)
    try:
        return float(int(text))
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise MeterUnavailable(f"{path} does not hold a number: {text!r}") from None


class Meter(ABC):
    """Energy in joules since ``start()``, readable at any time from any thread."""

    name: ClassVar[str]
    method: ClassVar[str]  # one of METHODS
    boundary: str
    update_period_s: float

    @property
    def sampling_interval_s(self) -> float:
        """How often the figure is sampled: a counter is read at the window edges (its update period
        is its resolution); a power sensor is integrated from samples (see ``PowerMeter``)."""
        return self.update_period_s

    @classmethod
    @abstractmethod
    def open(cls, root: Path = Path("/"), **options) -> "Meter":
        """Find the device under ``root`` (a filesystem root, so tests can point at fixture trees).

        Raises ``MeterUnavailable`` with the reason when the device is absent or unreadable.
        """

    @abstractmethod
    def start(self) -> None:
        """Zero the energy and begin accumulating."""

    @abstractmethod
    def joules(self) -> float:
        """Energy since ``start()``; read at window edges (it reads the hardware, not a cache)."""

    @abstractmethod
    def stop(self) -> None:
        """Take a final reading and stop; ``joules()`` keeps returning the final total."""

    def describe(self) -> dict:
        """What was measured and how, for the result record."""
        return {
            "meter": self.name,
            "measurement_method": self.method,
            "boundary": self.boundary,
            "update_period_s": self.update_period_s,
            "sampling_interval_s": self.sampling_interval_s,
            "sources": self.sources(),
            "notes": self.notes(),
        }

    def sources(self) -> list[str]:
        return []

    def notes(self) -> str:
        return ""

    def __enter__(self) -> "Meter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _PollingMeter(Meter):
    """Shared machinery: a daemon thread calls ``_sample()`` under a lock every ``_interval()``.

    Errors raised while polling are kept and re-raised by the next ``joules()``, so a meter that
    breaks mid-measurement (device gone, charger plugged in) fails loudly instead of reading zero.
    """

    def __init__(self, *, poll_s: float | None, update_period_s: float):
        self._poll_s = poll_s
        self.update_period_s = update_period_s
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._started = False
        self._total_j = 0.0
        self.polls = 0  # completed background samples; tests wait on it

    @abstractmethod
    def _begin(self) -> None:
        """Take the first reading (called under the lock)."""

    @abstractmethod
    def _sample(self) -> None:
        """Take a reading and add the energy since the previous one to ``_total_j`` (under the lock)."""

    @abstractmethod
    def _interval(self) -> float:
        """Seconds until the next background sample."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} meter already started")
        with self._lock:
            self._total_j, self._error, self.polls = 0.0, None, 0
            self._begin()
            self._started = True
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name=f"edgekd-meter-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop_event.wait(self._interval()):
            try:
                with self._lock:
                    self._sample()
                    self.polls += 1
            except BaseException as exc:  # kept for joules(); a dead thread must not look like zero power
                self._error = exc
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def joules(self) -> float:
        if not self._started:
            raise RuntimeError(f"{self.name} meter not started")
        with self._lock:
            self._raise_error()
            if self._thread is not None:
                self._sample()
            return self._total_j

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop_event.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            if self._error is None:
                try:
                    self._sample()
                except BaseException as exc:
                    self._error = exc


class CounterMeter(_PollingMeter):
    """Accumulates a cumulative energy counter (or several, e.g. one per socket) that wraps.

    Subclasses give each counter's wrap value (``ranges``, counter units) and the joules per
    unit, and implement ``read_counters``. A background thread polls so that no counter wraps
    twice between reads: every 0.1 s while any counter is within one second of wrapping at
    ``max_power_w``, else every 1 s (Zeus's scheme). When a reading is below the previous one
    the counter wrapped once: the delta is ``(max - last) + new``, unless that is more energy
    than ``max_power_w`` could draw since the last read: then the counter went backwards (a
    driver reload, a reset) and the reading is refused, not turned into a huge number.
    """

    max_power_w: ClassVar[float] = 1000.0  # Zeus's assumed worst-case draw when choosing poll rate

    def __init__(self, ranges: Sequence[float], unit_j: float, *, poll_s: float | None, update_period_s: float):
        super().__init__(poll_s=poll_s, update_period_s=update_period_s)
        self._ranges = [float(r) for r in ranges]
        self._unit_j = unit_j
        self._last: list[float] = []
        self._last_t = 0.0

    @abstractmethod
    def read_counters(self) -> list[float]:
        """The raw counter values, one per entry of ``ranges``."""

    def _begin(self) -> None:
        self._last = self.read_counters()
        self._last_t = time.monotonic()

    def _sample(self) -> None:
        now, t = self.read_counters(), time.monotonic()
        delta = 0.0
        for new, last, top in zip(now, self._last, self._ranges):
            if new >= last:
                delta += new - last
                continue
            wrapped_j = ((top - last) + new) * self._unit_j
            if wrapped_j > self.max_power_w * (t - self._last_t + 1.0):
                raise EnergyRefused(f"the {self.name} counter went backwards ({last:.0f} -> {new:.0f}) and a wrap "
                                    f"would mean {wrapped_j:.3g} J in {t - self._last_t:.2g} s: reset or reloaded")
            delta += (top - last) + new
        self._total_j += delta * self._unit_j
        self._last, self._last_t = now, t

    def _interval(self) -> float:
        if self._poll_s is not None:
            return self._poll_s
        last = self._last  # a racy read is fine: it only picks the poll rate
        headroom_j = min(((top - value) * self._unit_j for top, value in zip(self._ranges, last)), default=float("inf"))
        return 0.1 if headroom_j < self.max_power_w * 1.0 else 1.0


class PowerMeter(_PollingMeter):
    """Integrates an instantaneous power reading (W) over time with the trapezoid rule.

    The reading is polled every ``poll_s`` and also at every ``joules()`` call, so window edges
    fall on real samples. Resolution is the slower of the sensor's own update and the poll.
    """

    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, *, poll_s: float, update_period_s: float):
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        super().__init__(poll_s=poll_s, update_period_s=update_period_s)
        self._t = 0.0
        self._p = 0.0

    @abstractmethod
    def read_power_w(self) -> float:
        """Instantaneous power in watts."""

    def _begin(self) -> None:
        self._p = self.read_power_w()
        self._t = self.clock()

    def _sample(self) -> None:
        p = self.read_power_w()
        t = self.clock()
        self._total_j += 0.5 * (p + self._p) * (t - self._t)
        self._t, self._p = t, p

    @property
    def sampling_interval_s(self) -> float:
        return max(self._poll_s, self.update_period_s)

    def _interval(self) -> float:
        return self._poll_s
