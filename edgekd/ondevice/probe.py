"""What this device can run: Python, numpy, each runtime that imports, the energy meter, the tools on PATH.

``edgekd devices check`` copies this package to a device and runs
``python -m <package>.probe``; it prints one JSON object. Standard library
only at the top, so it answers even where numpy is missing (and says so).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys

# Beside the backends' own tools (each backend declares its runtime's modules and its tool).
TOOLS = ("taskset", "tar")


def _version(module_name: str) -> str:
    top = importlib.import_module(module_name.split(".")[0])
    return f"{module_name.split('.')[0]} {getattr(top, '__version__', '?')}"


def runtimes() -> dict[str, dict[str, str | bool]]:
    from .backend_info import BACKEND_INFO  # standard library only, as this module

    found: dict[str, dict[str, str | bool]] = {}
    for backend, info in BACKEND_INFO.items():
        if info.systems and platform.system() not in info.systems:  # e.g. importing coremltools off macOS: seconds, for nothing
            found[backend] = {"ok": False, "reason": f"{backend} runs only on {', '.join(info.systems)} (this is {platform.system()})"}
            continue
        errors = []
        for name in info.modules:
            try:
                importlib.import_module(name)
                found[backend] = {"ok": True, "version": _version(name)}
                break
            except Exception as error:  # ImportError, or a runtime that fails while importing (no GPU driver)
                errors.append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        else:
            found[backend] = {"ok": False, "reason": "; ".join(errors)}
    return found


def tools() -> dict[str, str | None]:
    from .backend_info import device_tools

    return {tool: shutil.which(tool) for tool in [*device_tools().names(), *TOOLS]}


def meters() -> dict[str, object]:
    try:
        from .meters import detect

        meter, skipped = detect()
    except Exception as error:  # a meter that breaks detection must not hide the rest of the probe
        return {"available": None, "unavailable": {"all": f"{type(error).__name__}: {error}"}}
    name = meter.name if meter is not None else None
    if meter is not None:
        try:
            meter.stop()
        except Exception:
            pass
    return {"available": name, "unavailable": skipped}


def probe() -> dict[str, object]:
    try:
        import numpy

        numpy_version: str | None = numpy.__version__
    except ImportError:
        numpy_version = None
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cores": os.cpu_count(),
        "numpy": numpy_version,
        "runtimes": runtimes(),
        "meters": meters(),
        "tools": tools(),
    }


if __name__ == "__main__":
    print(json.dumps(probe()))
