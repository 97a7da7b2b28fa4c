"""Device runners, one module each. Importing this package registers them."""

from . import local  # noqa: F401  (registration)
from .base import RUNNERS, DeviceFailed, DeviceRunner, DeviceUnreachable, ProfileJob, bench_args

__all__ = ["RUNNERS", "DeviceFailed", "DeviceRunner", "DeviceUnreachable", "ProfileJob", "bench_args", "runner_for"]


def runner_for(device) -> DeviceRunner:
    """The runner a target's ``device:`` block asks for (ssh, adb), or this machine."""
    if getattr(device, "ssh", None):
        return RUNNERS.get("ssh")(device.ssh, device.model_dump())
    if getattr(device, "adb", None):
        return RUNNERS.get("adb")(device.adb, device.model_dump())
    return RUNNERS.get("local")(None, device.model_dump() if device is not None else {})
