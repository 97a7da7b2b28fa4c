"""CPU package energy from RAPL through Linux powercap (Intel, and AMD since kernel 5.8).

Only package domains are read: RAPL domains nest (psys contains package contains core and
uncore) and DRAM is a separate domain, so summing every zone over-counts. Each socket has its
own package zone and those are summed. The same package can also appear under
``intel-rapl-mmio``; such a duplicate (same zone name) is dropped in favour of the MSR zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .base import CounterMeter, MeterUnavailable, read_number, read_text, register

_TOP_ZONE = re.compile(r"^intel-rapl(-mmio)?:(\d+)$")  # intel-rapl:0, never the sub-zone intel-rapl:0:1


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str
    max_uj: float


@register
class RaplMeter(CounterMeter):
    """Sum of the package zones' ``energy_uj`` counters, each wrapping at ``max_energy_range_uj``."""

    name = "rapl"
    method = "rapl-package"
    boundary = "cpu-package"

    def __init__(self, zones: list[Zone], others: list[str], *, poll_s: float | None, update_period_s: float, hint: str):
        super().__init__([z.max_uj for z in zones], 1e-6, poll_s=poll_s, update_period_s=update_period_s)
        self.zones = zones
        self._others = others
        self._hint = hint

    @classmethod
    def open(cls, root: Path = Path("/"), *, poll_s: float | None = None, update_period_s: float = 0.001) -> "RaplMeter":
        """``update_period_s``: the RAPL energy status updates about every millisecond."""
        base = Path(root) / "sys/class/powercap"
        hint = f"run `sudo chmod -R a+r {base}/*` (until reboot; the entries are symlinks, so name them) or run as root"
        if not base.is_dir():
            raise MeterUnavailable(f"no {base}: this kernel exposes no powercap/RAPL (common in VMs and containers)")
        found = []
        for entry in base.iterdir():
            match = _TOP_ZONE.match(entry.name)
            if match:
                found.append((bool(match.group(1)), int(match.group(2)), entry))
        if not found:
            raise MeterUnavailable(f"no {base}/intel-rapl:* zones")
        msr: dict[str, Path] = {}
        mmio: dict[str, Path] = {}
        others = []
        for is_mmio, _, entry in sorted(found):
            zone_name = read_text(entry / "name", hint)
            if not zone_name.startswith("package"):
                others.append(f"{entry.name} ({zone_name})")
            else:
                (mmio if is_mmio else msr).setdefault(zone_name, entry)
        for zone_name, entry in mmio.items():
            if zone_name in msr:
                others.append(f"{entry.name} ({zone_name}, duplicate of {msr[zone_name].name})")
        chosen = {**mmio, **msr}
        if not chosen:
            raise MeterUnavailable(f"no package zone under {base} (found: {', '.join(others)})")
        zones = [Zone(p, n, read_number(p / "max_energy_range_uj", hint)) for n, p in sorted(chosen.items())]
        meter = cls(zones, others, poll_s=poll_s, update_period_s=update_period_s, hint=hint)
        meter.read_counters()  # energy_uj is root-only on kernels >= 5.10: fail here, with the hint
        return meter

    def read_counters(self) -> list[float]:
        return [read_number(z.path / "energy_uj", self._hint) for z in self.zones]

    def sources(self) -> list[str]:
        return [str(z.path / "energy_uj") for z in self.zones]

    def notes(self) -> str:
        text = (
            f"package zones {', '.join(z.name for z in self.zones)} summed; sub-zones (core, uncore, dram) never "
            f"read; other zones not summed (overlapping or duplicate): {', '.join(self._others) or 'none'}. "
            "Socket-level counter: includes every "
            "process on the machine, and excludes DRAM, disks and the rest of the board."
        )
        if any("-die-" in z.name for z in self.zones):
            text += " Per-die package zones are summed; on some AMD parts they mirror one socket counter."
        return text
