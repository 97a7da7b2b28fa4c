"""Android (or any Linux battery device) power from the battery's fuel gauge in sysfs.

``current_now`` is in µA and ``voltage_now`` in µV (kernel power-supply ABI), so power is
|I| x V x 1e-12 W. The sign of ``current_now`` differs between devices and documents, so it is
ignored; that is only valid while the battery alone powers the device. A charger (USB, which
is how adb usually connects) powers the device and charges the battery at once, so the battery
current says nothing about consumption: the meter refuses to open, and stops, unless
``status`` reports discharging. Some gauges report mA/mV instead; check one reading against
``dumpsys batterystats`` on a new device.
"""

from __future__ import annotations

from pathlib import Path

from .base import MeterUnavailable, PowerMeter, read_number, read_text, register

REFUSED_STATUS = ("Charging", "Full", "Not charging")  # "Not charging": plugged in, charging paused
_HINT = "run from `adb shell` as root, or pick a readable supply with supply=..."


@register
class AndroidBatteryMeter(PowerMeter):
    name = "android-battery"
    boundary = "battery"

    def __init__(self, supply: Path, *, poll_s: float, update_period_s: float):
        super().__init__(poll_s=poll_s, update_period_s=update_period_s)
        self.supply = supply
        self.status = ""

    @classmethod
    def open(
        cls, root: Path = Path("/"), *, supply: str = "battery", poll_s: float = 0.25, update_period_s: float | None = None
    ) -> "AndroidBatteryMeter":
        """``poll_s`` 0.25 s is Perfetto's battery poll; gauges often average over longer, so keep windows >= 10 s."""
        path = Path(root) / "sys/class/power_supply" / supply
        if not (path / "current_now").is_file() or not (path / "voltage_now").is_file():
            raise MeterUnavailable(f"no {path}/current_now and voltage_now")
        meter = cls(path, poll_s=poll_s, update_period_s=poll_s if update_period_s is None else update_period_s)
        meter.read_power_w()
        return meter

    def _check_status(self) -> None:
        status_file = self.supply / "status"
        self.status = read_text(status_file, _HINT) if status_file.is_file() else "unknown"
        if self.status in REFUSED_STATUS:
            raise MeterUnavailable(
                f"battery status is {self.status!r}: a connected charger powers the device, so the battery "
                "current does not measure consumption. Unplug USB (use adb over Wi-Fi); `dumpsys battery unplug` "
                "only changes what Android reports, not the charger"
            )

    def read_power_w(self) -> float:
        """Checks ``status`` on every reading so a charger plugged in mid-run fails the measurement."""
        self._check_status()
        current_ua = read_number(self.supply / "current_now", _HINT)
        voltage_uv = read_number(self.supply / "voltage_now", _HINT)
        return abs(current_ua) * voltage_uv * 1e-12

    def sources(self) -> list[str]:
        return [str(self.supply / "current_now"), str(self.supply / "voltage_now")]

    def notes(self) -> str:
        return (
            f"battery output, |current_now| x voltage_now (sign ignored; conventions differ between devices); "
            f"status was {self.status!r} (refused: {', '.join(REFUSED_STATUS)}: USB charging contaminates the "
            "reading). Whole-device power including screen and radios."
        )
