"""Android (or any Linux battery device) power from the battery's fuel gauge in sysfs.

``current_now`` is in µA and ``voltage_now`` in µV (kernel power-supply ABI), so power is
|I| x V x 1e-12 W. The sign of ``current_now`` differs between devices and documents, so it is
ignored; that is only valid while the battery alone powers the device. A charger (USB, which
is how adb usually connects) powers the device and charges the battery at once, so the battery
current says nothing about consumption: the meter refuses to open, and stops, unless
``status`` reports discharging. Some gauges report mA/mV instead; check one reading against
``dumpsys batterystats`` on a new device.

A phone without Python (the adb runner) samples the same files with a shell loop;
``recorded_energy`` runs those readings through this meter's own arithmetic, so
energy on a phone is computed one way whichever side read the gauge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from .base import EnergyRefused, MeterUnavailable, PowerMeter, read_number, read_text, register

REFUSED_STATUS = ("Charging", "Full", "Not charging")  # "Not charging": plugged in, charging paused
POLL_S = 0.25  # Perfetto's battery poll
_HINT = "run from `adb shell` as root, or pick a readable supply with supply=..."


def battery_power_w(current_ua: float, voltage_uv: float) -> float:
    """|current_now| x voltage_now: µA x µV = 1e-12 W, the sign ignored."""
    return abs(current_ua) * voltage_uv * 1e-12


def check_status(status: str) -> None:
    """Refuse a status in which a charger, not the battery, powers the device."""
    if status in REFUSED_STATUS:
        raise EnergyRefused(
            f"battery status is {status!r}: a connected charger powers the device, so the battery "
            "current does not measure consumption. Unplug USB (use adb over Wi-Fi); `dumpsys battery unplug` "
            "only changes what Android reports, not the charger"
        )


@register
class AndroidBatteryMeter(PowerMeter):
    name = "android-battery"
    method = "battery-fuel-gauge"
    boundary = "battery"

    def __init__(self, supply: Path, *, poll_s: float, update_period_s: float):
        super().__init__(poll_s=poll_s, update_period_s=update_period_s)
        self.supply = supply
        self.status = ""

    @classmethod
    def open(
        cls, root: Path = Path("/"), *, supply: str = "battery", poll_s: float = POLL_S, update_period_s: float | None = None
    ) -> "AndroidBatteryMeter":
        """``poll_s`` 0.25 s is Perfetto's battery poll; gauges often average over longer, so keep windows >= 10 s."""
        path = Path(root) / "sys/class/power_supply" / supply
        if not (path / "current_now").is_file() or not (path / "voltage_now").is_file():
            raise MeterUnavailable(f"no {path}/current_now and voltage_now")
        meter = cls(path, poll_s=poll_s, update_period_s=poll_s if update_period_s is None else update_period_s)
        meter.read_power_w()
        return meter

    def read_power_w(self) -> float:
        """Checks ``status`` on every reading so a charger plugged in mid-run fails the measurement."""
        status_file = self.supply / "status"
        self.status = read_text(status_file, _HINT) if status_file.is_file() else "unknown"
        check_status(self.status)
        current_ua = read_number(self.supply / "current_now", _HINT)
        voltage_uv = read_number(self.supply / "voltage_now", _HINT)
        return battery_power_w(current_ua, voltage_uv)

    def sources(self) -> list[str]:
        return [str(self.supply / "current_now"), str(self.supply / "voltage_now")]

    def notes(self) -> str:
        return (
            f"battery output, |current_now| x voltage_now (sign ignored; conventions differ between devices); "
            f"status was {self.status!r} (refused: {', '.join(REFUSED_STATUS)}: USB charging contaminates the "
            "reading). Whole-device power including screen and radios."
        )


class BatteryReading(NamedTuple):
    """One reading of the gauge's files, taken at ``time_s`` (any clock that counts seconds)."""

    time_s: float
    current_ua: float
    voltage_uv: float
    status: str = "unknown"


class _Recorded(AndroidBatteryMeter):
    """The meter over readings taken elsewhere: its clock and its files are the recorded ones."""

    def __init__(self, readings: Sequence[BatteryReading], supply: Path, poll_s: float):
        super().__init__(supply, poll_s=3600.0, update_period_s=poll_s)  # never polled: each reading is fed by hand
        self._readings: Iterator[BatteryReading] = iter(readings)
        self._now = 0.0

    def clock(self) -> float:  # type: ignore[override]  # the reading's own time, not this machine's
        return self._now

    @property
    def sampling_interval_s(self) -> float:  # the phone's loop read the gauge; this meter is never polled
        return self.update_period_s

    def read_power_w(self) -> float:
        reading = next(self._readings)
        self.status, self._now = reading.status, reading.time_s
        check_status(reading.status)
        return battery_power_w(reading.current_ua, reading.voltage_uv)


def recorded_energy(readings: Sequence[BatteryReading], *, supply: Path = Path("/sys/class/power_supply/battery"),
                    poll_s: float = POLL_S) -> tuple[float, float, dict]:
    """(joules, seconds, describe) over readings taken elsewhere, computed as this meter computes its own:
    each reading's status checked, power as ``battery_power_w``, joules by ``PowerMeter``'s integration.

    Raises ``MeterUnavailable`` for a charging status and ``ValueError`` for fewer than two readings.
    """
    if len(readings) < 2:
        raise ValueError(f"{len(readings)} battery reading(s): energy needs at least two")
    meter = _Recorded(readings, supply, poll_s)
    meter.start()  # the first reading
    try:
        for _ in readings[2:]:
            meter.joules()  # each call takes the next reading, as at a window edge
    finally:
        meter.stop()  # the last reading
    return meter.joules(), readings[-1].time_s - readings[0].time_s, meter.describe()
