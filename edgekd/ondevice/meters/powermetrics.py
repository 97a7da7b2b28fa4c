"""Apple-silicon SoC power from macOS ``powermetrics``, streamed from a subprocess.

Each powermetrics sample is a text block opening with
``*** Sampled system activity (<date>) (<ms>ms elapsed) ***`` and reporting average power over
that interval, so energy is the sum of power x elapsed over complete samples (no polling, no
trapezoid). macOS 13+ prints ``Combined Power (CPU + GPU + ANE): N mW``; older releases only
the parts, which are summed (``GPU Power`` also repeats in the GPU section; the first counts).
Apple's man page says these values are estimated by its own model and are not for comparing
devices. powermetrics needs root: ``sudo -n`` must work without a password.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .base import Meter, MeterUnavailable, register

_HEADER = re.compile(r"^\*\*\* Sampled system activity\b.*?\(([\d.]+)\s*ms elapsed\)")
_COMBINED = re.compile(r"^Combined Power \(CPU \+ GPU \+ ANE\):\s*([\d.]+)\s*(mW|W)\b")
_PART = re.compile(r"^(CPU|GPU|ANE) Power:\s*([\d.]+)\s*(mW|W)\b")
SUDOERS = "<user> ALL = (root) NOPASSWD: /usr/bin/powermetrics"


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    power_w: float


def _watts(value: str, unit: str) -> float:
    return float(value) / (1000.0 if unit == "mW" else 1.0)


def parse_sample(block: str) -> Sample | None:
    """One sample block -> average power over its elapsed time; None if it holds no power lines."""
    elapsed_s, combined, parts = None, None, {}
    for line in block.splitlines():
        line = line.strip()
        if (m := _HEADER.match(line)) is not None:
            elapsed_s = float(m.group(1)) / 1000.0
        elif combined is None and (m := _COMBINED.match(line)) is not None:
            combined = _watts(m.group(1), m.group(2))
        elif (m := _PART.match(line)) is not None:
            parts.setdefault(m.group(1), _watts(m.group(2), m.group(3)))
    if elapsed_s is None or (combined is None and not parts):
        return None
    return Sample(elapsed_s, combined if combined is not None else sum(parts.values()))


def parse_powermetrics(text: str) -> list[Sample]:
    """Every complete sample in a powermetrics text dump, in order."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("*** Sampled system activity") and current:
            blocks.append("\n".join(current))
            current = []
        current.append(line)
    blocks.append("\n".join(current))
    return [s for s in map(parse_sample, blocks) if s is not None]


def _is_macos() -> bool:
    return sys.platform == "darwin"


@register
class PowermetricsMeter(Meter):
    name = "powermetrics"
    method = "soc-power-model"
    boundary = "soc"

    def __init__(self, command: list[str], *, update_period_s: float):
        self.command = command
        self.update_period_s = update_period_s
        self._lock = threading.Lock()
        self._total_j = 0.0
        self.samples = 0
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopping = False

    @classmethod
    def open(
        cls,
        root: Path = Path("/"),
        *,
        interval_ms: int = 100,
        samplers: str = "cpu_power,gpu_power,ane_power",
        sudo: bool = True,
        update_period_s: float | None = None,
    ) -> "PowermetricsMeter":
        """``update_period_s`` defaults to the sample interval (samples arrive one interval late)."""
        binary = Path(root) / "usr/bin/powermetrics"
        if not _is_macos():
            raise MeterUnavailable(f"powermetrics is macOS only (platform is {sys.platform})")
        if not binary.is_file():
            raise MeterUnavailable(f"no {binary}")
        prefix = ["sudo", "-n"] if sudo and os.geteuid() != 0 else []
        command = prefix + [str(binary), "--samplers", samplers, "-i", str(int(interval_ms))]
        if prefix:
            probe = prefix + [str(binary), "--samplers", samplers, "-i", "10", "-n", "1"]
            try:
                done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MeterUnavailable(f"`{' '.join(probe)}` failed: {exc}") from exc
            if done.returncode != 0:
                raise MeterUnavailable(
                    f"`{' '.join(probe)}` failed ({done.stderr.strip() or done.returncode}); allow it without a "
                    f"password with `sudo visudo` and the line `{SUDOERS}`"
                )
        return cls(command, update_period_s=interval_ms / 1000.0 if update_period_s is None else update_period_s)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("powermetrics meter already started")
        self._total_j, self.samples, self._error, self._stopping = 0.0, 0, None, False
        self._proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self._thread = threading.Thread(target=self._read, name="edgekd-meter-powermetrics", daemon=True)
        self._thread.start()

    def _add(self, block: list[str]) -> None:
        sample = parse_sample("\n".join(block))
        if sample is not None:
            with self._lock:
                self._total_j += sample.power_w * sample.elapsed_s
                self.samples += 1

    def _read(self) -> None:
        """A sample is complete when the next one's header arrives; the one cut off by stop() is dropped."""
        assert self._proc is not None and self._proc.stdout is not None
        block: list[str] = []
        for line in self._proc.stdout:
            if line.startswith("*** Sampled system activity") and block:
                self._add(block)
                block = []
            block.append(line)
        code = self._proc.wait()
        if not self._stopping:
            stderr = self._proc.stderr.read().strip() if self._proc.stderr else ""
            self._error = RuntimeError(f"powermetrics exited early with status {code}: {stderr}")

    def joules(self) -> float:
        if self._proc is None:
            raise RuntimeError("powermetrics meter not started")
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._total_j

    def stop(self) -> None:
        if self._thread is None or self._proc is None:
            return
        self._stopping = True
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=5)
        self._thread = None
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def sources(self) -> list[str]:
        return [" ".join(self.command)]

    def notes(self) -> str:
        return (
            "CPU+GPU+ANE power as estimated by Apple's own model (powermetrics man page: estimated, may be "
            "inaccurate, not for comparing devices); whole samples only, so a window edge lags by up to one "
            "sample interval."
        )
