"""What each backend declares about itself, read by the probe, the manifest, targets and the SSH runner.

A backend is one folder, ``edgekd/backends/<name>/``; its ``__init__.py`` calls ``declare`` (and
nothing heavier), so the declarations are known without importing a converter, torch or a vendor
runtime. Standard library only: the probe reads them on devices where even numpy may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import Registry, discover

# The backends' package beside this one: edgekd.backends here, edgekd_ondevice.backends on a device
# (the SSH runner copies this package and each backend's runtime in edgekd's own layout).
BACKENDS_PACKAGE = __package__.rpartition(".")[0] + ".backends"


@dataclass(frozen=True)
class BackendInfo:
    name: str
    modules: tuple[str, ...]  # Python modules that provide the runtime; the first that imports is used
    packages: tuple[str, ...] = ()  # pip distributions of its converter and runtime (the manifest's toolchain)
    tool: str | None = None  # the device's own benchmark tool for its artifacts (a target's device.tool)
    other_tools: tuple[str, ...] = ()  # further tools that time them, tried in order where ``tool`` is not installed

    @property
    def tools(self) -> tuple[str, ...]:
        return ((self.tool,) if self.tool else ()) + self.other_tools
    systems: tuple[str, ...] = ()  # platform.system() names the runtime exists on; empty: any
    beside: tuple[str, ...] = ()  # suffixes of files written beside the artifact that belong to it (an IR's .bin)


BACKEND_INFO: Registry[BackendInfo] = Registry("backend", plugins=lambda: discover(BACKENDS_PACKAGE))


def declare(name: str, modules: tuple[str, ...], **fields) -> BackendInfo:
    return BACKEND_INFO.register(name, BackendInfo(name, tuple(modules), **fields))


def artifact_files(backend: str, path: Path) -> list[Path]:
    """The artifact and the files its backend writes beside it: what is hashed and copied to a device.
    A backend without a declaration (one registered from a test) has none."""
    beside = BACKEND_INFO.get(backend).beside if backend in BACKEND_INFO else ()
    return [path, *(path.with_suffix(suffix) for suffix in beside)]


def device_tools() -> Registry[str]:
    """Device tool name -> the backend that declares it."""
    tools: Registry[str] = Registry("device tool")
    for name, info in BACKEND_INFO.items():
        for tool in info.tools:
            tools.register(tool, name)
    return tools
