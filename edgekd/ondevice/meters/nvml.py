"""NVIDIA GPU board energy from NVML's total-energy counter (Volta and newer).

``nvmlDeviceGetTotalEnergyConsumption`` is a 64-bit millijoule counter since driver load, so
it never wraps in practice; it updates every 20-100 ms depending on the product, hence the
0.1 s update period (windows of at least 1 s). pynvml (package ``nvidia-ml-py``) is imported
only when this meter is opened, so devices without it still import the package.
"""

from __future__ import annotations

from pathlib import Path

from .base import CounterMeter, MeterUnavailable, register


@register
class NvmlMeter(CounterMeter):
    name = "nvml"
    method = "nvml-board"
    boundary = "gpu-board"

    def __init__(self, nvml, handle, index: int, device_name: str, *, poll_s: float | None, update_period_s: float):
        super().__init__([2.0**64], 1e-3, poll_s=poll_s, update_period_s=update_period_s)
        self._nvml = nvml
        self._handle = handle
        self.index = index
        self.device_name = device_name

    @classmethod
    def open(
        cls, root: Path = Path("/"), *, index: int = 0, poll_s: float | None = None, update_period_s: float = 0.1
    ) -> "NvmlMeter":
        """``root`` is unused: NVML is a driver API, not a file tree."""
        try:
            import pynvml
        except ImportError as exc:
            raise MeterUnavailable(f"pynvml is not importable ({exc}); install nvidia-ml-py") from exc
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # pynvml.NVMLError and its many subclasses
            raise MeterUnavailable(f"NVML init failed: {exc}") from exc
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            device_name = pynvml.nvmlDeviceGetName(handle)
        except Exception as exc:
            raise MeterUnavailable(f"no NVIDIA GPU at index {index}: {exc}") from exc
        if isinstance(device_name, bytes):  # older pynvml returns bytes
            device_name = device_name.decode()
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as exc:
            raise MeterUnavailable(
                f"GPU {index} ({device_name}) has no total-energy counter ({exc}); it needs Volta or newer"
            ) from exc
        return cls(pynvml, handle, index, device_name, poll_s=poll_s, update_period_s=update_period_s)

    def read_counters(self) -> list[float]:
        return [float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))]

    def sources(self) -> list[str]:
        return [f"NVML nvmlDeviceGetTotalEnergyConsumption(index={self.index}, {self.device_name})"]

    def notes(self) -> str:
        return (
            "whole GPU board (mJ counter since driver load); excludes the host CPU, memory and the rest of "
            "the system. GPU work is asynchronous: run_once must synchronize before returning."
        )
