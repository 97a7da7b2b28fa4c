"""NVIDIA Jetson power rails from the on-module INA3221 monitors.

Two sysfs layouts exist, both found by glob because the hwmon/iio index changes between
boards and boots:

* newer kernels (JetPack 5/6, driver ``ina3221``): ``.../ina3221/<dev>/hwmon/hwmon*/`` with
  ``in<N>_label``, ``in<N>_input`` (mV), ``curr<N>_input`` (mA), and ``power<N>_input`` (µW, the
  hwmon ABI unit) only where a kernel adds it: mainline computes power host-side and does not;
* older kernels (JetPack 4, driver ``ina3221x``): ``.../ina3221x/<dev>/iio:device*/`` with
  ``rail_name_<N>``, ``in_power<N>_input`` (mW), ``in_voltage<N>_input`` (mV), ``in_current<N>_input`` (mA).

The default rail is the module's total input (``VDD_IN``; Nano names it ``POM_5V_IN``). Carrier
board power is not on these sensors. Without an input rail the rails are summed, which is
recorded in the boundary because sub-rails may nest or miss parts of the module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .base import EnergyRefused, MeterUnavailable, PowerMeter, read_number, read_text, register

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_HINT = "run as root or make the INA3221 sysfs files readable"


@dataclass(frozen=True)
class Rail:
    label: str
    voltage: Path  # mV
    current: Path  # mA
    power: Path | None  # when present: µW (hwmon) or mW (iio)
    power_w_per_unit: float

    def watts(self) -> float:
        if self.power is not None:
            return read_number(self.power, _HINT) * self.power_w_per_unit
        return read_number(self.voltage, _HINT) * read_number(self.current, _HINT) * 1e-6


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def find_rails(root: Path) -> tuple[list[Rail], list[float]]:
    """Every rail on every INA3221 under ``root``, and the sensors' update intervals in seconds."""
    drivers = Path(root) / "sys/bus/i2c/drivers"
    rails: list[Rail] = []
    intervals: list[float] = []
    for hwmon in sorted(drivers.glob("ina3221/*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            match = re.fullmatch(r"in(\d+)_label", label_file.name)
            if not match:
                continue
            n = match.group(1)
            current = hwmon / f"curr{n}_input"
            label = read_text(label_file, _HINT)
            # in7_label is the "sum of shunt voltages" channel: no current file, not a rail
            if not current.is_file() or label.upper() == "NC":
                continue
            rails.append(Rail(label, hwmon / f"in{n}_input", current, _optional(hwmon / f"power{n}_input"), 1e-6))
        if (hwmon / "update_interval").is_file():
            intervals.append(read_number(hwmon / "update_interval", _HINT) / 1000.0)
    for iio in sorted(drivers.glob("ina3221x/*/iio:device*")):
        for name_file in sorted(iio.glob("rail_name_*")):
            n = name_file.name.rsplit("_", 1)[1]
            label = read_text(name_file, _HINT)
            if label.upper() == "NC":
                continue
            rails.append(
                Rail(label, iio / f"in_voltage{n}_input", iio / f"in_current{n}_input",
                     _optional(iio / f"in_power{n}_input"), 1e-3)
            )
    return rails, intervals


@register
class JetsonMeter(PowerMeter):
    name = "jetson-ina3221"
    method = "ina3221-rail"

    def __init__(self, rails: list[Rail], all_labels: list[str], boundary: str, *, poll_s: float, update_period_s: float):
        super().__init__(poll_s=poll_s, update_period_s=update_period_s)
        self.rails = rails
        self.boundary = boundary
        self._all_labels = all_labels

    @classmethod
    def open(
        cls, root: Path = Path("/"), *, rail: str | None = None, poll_s: float = 0.05, update_period_s: float | None = None
    ) -> "JetsonMeter":
        """``rail``: a rail label, ``"all"`` to sum every rail, or None for the module input rail
        (falling back to the sum). ``update_period_s`` defaults to the slower of the sensor's
        ``update_interval`` and ``poll_s``."""
        rails, intervals = find_rails(root)
        if not rails:
            raise MeterUnavailable(
                f"no INA3221 rails under {Path(root) / 'sys/bus/i2c/drivers'}/ina3221*/ (not a Jetson, or a Nano 2GB)"
            )
        labels = [r.label for r in rails]
        if rail is None:
            rail = next((name for name in INPUT_RAILS if name in labels), "all")
        total = next((name for name in INPUT_RAILS if name in labels), None)
        if rail == "all" and total is not None:
            # the input rail already contains the sub-rails: adding them counts the same watts twice
            raise EnergyRefused(f"rail='all' would add the sub-rails to {total}, which is the module's total input and "
                                f"already includes them: use rail={total!r} (the default) for the module, or one "
                                f"sub-rail ({', '.join(n for n in labels if n != total)})")
        if rail == "all":
            chosen, boundary = rails, "rails-sum"
        elif rail in labels:
            chosen = [r for r in rails if r.label == rail]
            boundary = "module-input-rail" if rail in INPUT_RAILS else f"rail:{rail}"
        else:
            raise MeterUnavailable(f"no rail {rail!r} on this board (rails: {', '.join(labels)})")
        if update_period_s is None:
            update_period_s = max(intervals + [poll_s])
        meter = cls(chosen, labels, boundary, poll_s=poll_s, update_period_s=update_period_s)
        meter.read_power_w()
        return meter

    def read_power_w(self) -> float:
        return sum(r.watts() for r in self.rails)

    def sources(self) -> list[str]:
        return [str(r.power) if r.power else f"{r.voltage} x {r.current}" for r in self.rails]

    def notes(self) -> str:
        used = ", ".join(r.label for r in self.rails)
        how = "power file" if all(r.power for r in self.rails) else "V x I where no power file"
        text = f"rails {used} ({how}); rails on this board: {', '.join(self._all_labels)}."
        if self.boundary == "rails-sum":
            text += " Sum of rails, not the module input: sub-rails may nest or miss parts of the module."
        return text + " Carrier-board power is not measured by the on-module sensors."
