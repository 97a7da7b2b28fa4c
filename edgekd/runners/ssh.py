"""A Linux (or macOS) device over SSH: the same benchmark as here, run there, brought back as JSON.

One ``ssh`` session per artifact streams a tar of the self-contained
``edgekd/ondevice`` package and each backend's runtime, in edgekd's own layout
under the name ``edgekd_ondevice`` (so an edgekd installed on the device is never
imported instead, and the runtimes' relative imports resolve as they do here),
the artifact's files and the test slice into a ``mktemp -d`` directory, runs
``python -m edgekd_ondevice.ondevice.bench`` there
(latency protocol, on-device accuracy, the device's energy meter) and prints
the result; a shell trap removes the directory however the run ends. With
``device.tool`` the device's own tool that a backend declares (``benchmark_model``,
``trtexec``, ``benchmark_app``; ``edgekd/backends/<name>/tool.py``) times the
artifact instead and its output is parsed.

The system ``ssh`` client is used, so ``~/.ssh/config``, agents and keys work as
they do for the user. Host keys are always checked (``StrictHostKeyChecking=yes``,
or ``accept-new`` when a target asks); an unknown or changed key is refused,
named as such, and not retried. Locally everything is an argument list; the
remote command is a fixed script whose values arrive as ``shlex.quote``d
positional arguments, so no device name, path or option can run a command.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .. import ondevice
from ..backends import DEVICE_TOOLS
from ..ondevice.backend_info import BACKEND_INFO
from .base import (RUNNERS, DeviceFailed, DeviceRunner, DeviceUnreachable, HostKeyRefused, ProfileJob, tail, tool_result,
                   tool_settings)

PACKAGE = "edgekd_ondevice"  # edgekd's name on the device: the ondevice package and the backends' runtimes only
DEVICE_SIDE = ("__init__.py", "runtime.py")  # what a backend folder holds for the device: its declaration and its runtime
NO_RESULT = 86  # the remote script's exit status when it stopped before the tool ran
MARKER = "@@edgekd-result@@"

# Runs on the device under ``sh -c``: $1 is the time limit, the rest the command. The tar of the
# files arrives on stdin. Prints the command's output, its exit status, a marker and result.json.
RUN_SCRIPT = r"""
limit=$1; shift
d=$(mktemp -d "${TMPDIR:-/tmp}/edgekd.XXXXXX") || { echo "edgekd: mktemp failed on the device" >&2; exit 86; }
trap 'rm -rf "$d"' EXIT
trap 'exit 143' HUP INT TERM
tar -x -f - -C "$d" || { echo "edgekd: could not unpack the files on the device (is tar there?)" >&2; exit 86; }
cd "$d" || exit 86
if command -v timeout >/dev/null 2>&1; then set -- timeout "$limit" "$@"; fi
"$@" > log.txt 2>&1
rc=$?
cat log.txt
echo
echo "edgekd-rc $rc"
echo "@@edgekd-result@@"
if [ -f result.json ]; then cat result.json; fi
"""

_HOST_KEY = ("host key verification failed", "remote host identification has changed", "host key is known",
             "no matching host key type", "host key for", "offending")
_LOGIN = ("permission denied", "too many authentication failures")


def parse_address(address: str) -> tuple[str, str | None]:
    """``user@host:port`` -> (``user@host``, ``port``); an alias or ``host`` alone keeps ssh's own port.

    IPv6 addresses take brackets: ``pi@[fe80::1]:2222``; a bare IPv6 address has no port.
    """
    user, at, host = address.rpartition("@")
    port = None
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest.startswith(":") and rest[1:]:
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    if port is not None and not port.isdigit():
        raise ValueError(f"ssh address {address!r}: port {port!r} is not a number")
    if not host or host.startswith("-"):
        raise ValueError(f"ssh address {address!r} has no host")
    return f"{user}{at}{host}", port


def _option_path(path: str) -> str:
    """A path as an ``-o Key=value`` value: ssh splits values at spaces unless they are double-quoted."""
    return f'"{path}"' if any(c.isspace() for c in path) else path


def ssh_command(address: str, device: dict[str, Any], remote: str, base_dir: Path | None = None) -> list[str]:
    """The local ``ssh`` argument list: batch mode (never a password prompt), host keys checked, keepalives."""
    destination, port = parse_address(address)
    checking = device.get("host_key_checking") or "yes"
    if checking not in ("yes", "accept-new"):
        raise ValueError(f"host_key_checking {checking!r}: only yes or accept-new; host keys are never left unchecked")
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={checking}",
               "-o", f"ConnectTimeout={int(device.get('connect_timeout_s') or 10)}",
               "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
    if device.get("known_hosts"):
        command += ["-o", f"UserKnownHostsFile={_option_path(str(resolve(device['known_hosts'], base_dir)))}"]
    if device.get("identity_file"):
        command += ["-i", str(resolve(device["identity_file"], base_dir)), "-o", "IdentitiesOnly=yes"]
    if port:
        command += ["-p", port]
    return command + ["--", destination, remote]


def resolve(path: str, base_dir: Path | None) -> Path:
    """``~`` expanded; a relative path is relative to the target file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else (base_dir / p)


def remote_command(limit_s: float, argv: list[str]) -> str:
    """``sh -c RUN_SCRIPT`` with every value quoted: the device's login shell sees only literal words."""
    return " ".join(shlex.quote(w) for w in ["sh", "-c", RUN_SCRIPT, "edgekd", str(int(math.ceil(limit_s))), *argv])


def _empty(tar: tarfile.TarFile, arcname: str) -> None:
    tar.addfile(tarfile.TarInfo(arcname))  # a package marker: edgekd's own __init__ files import the host side


def pack(tar_path: Path, files: list[Path], data: Path | None) -> None:
    """edgekd_ondevice/ (edgekd/ondevice without caches, and each backend folder's declaration and runtime),
    the artifact's files under files/ and the test slice as data/test.npz."""
    source = Path(ondevice.__file__).parent
    backends = source.parent / "backends"
    with tarfile.open(tar_path, "w") as tar:
        _empty(tar, f"{PACKAGE}/__init__.py")
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                tar.add(path, arcname=f"{PACKAGE}/ondevice/{path.relative_to(source).as_posix()}", recursive=False)
        _empty(tar, f"{PACKAGE}/backends/__init__.py")
        for folder in sorted(p for p in backends.iterdir() if (p / "runtime.py").is_file()):
            for name in DEVICE_SIDE:
                tar.add(folder / name, arcname=f"{PACKAGE}/backends/{folder.name}/{name}", recursive=False)
        for file in files:
            tar.add(file, arcname=f"files/{file.name}")
        if data is not None:
            tar.add(data, arcname="data/test.npz")


def classify(returncode: int, stderr: str, label: str) -> None:
    """Raise what an ssh failure means: a refused host key, a refused login, or an unreachable device."""
    lowered = stderr.lower()
    if any(s in lowered for s in _HOST_KEY):
        raise HostKeyRefused(f"{label}: host key refused ({tail(stderr, 2)}); check the device's fingerprint and add it to "
                             "known_hosts (ssh-keyscan), then run again: unknown or changed keys are never accepted")
    if any(s in lowered for s in _LOGIN):
        raise DeviceUnreachable(f"{label}: login refused ({tail(stderr, 1)}); set up key login (ssh-copy-id) or device.identity_file",
                                retry=False)
    raise DeviceUnreachable(f"{label}: {tail(stderr, 2) or f'ssh exited {returncode}'}")


@RUNNERS.register("ssh")
class SshRunner(DeviceRunner):
    kind = "ssh"

    @classmethod
    def from_device(cls, device: dict[str, Any], base_dir: Path | None) -> "SshRunner":
        return cls(device["ssh"], device, base_dir=base_dir)  # identity and known_hosts files resolve against base_dir

    def __init__(self, address: str | None, device: dict[str, Any] | None = None, base_dir: Path | None = None) -> None:
        super().__init__(address, device)
        self.base_dir = base_dir
        parse_address(str(address))  # a malformed address fails here, before any connection

    def run(self, argv: list[str], files: list[Path], data: Path | None, timeout_s: float,
            work_dir: Path | None = None) -> tuple[str, dict | None, str]:
        """Copy, run ``argv`` in the device's run directory, clean up; (the command's output, result.json, ssh's stderr)."""
        with tempfile.TemporaryDirectory(prefix="edgekd-ssh-", dir=work_dir) as tmp:  # inside the run folder when given
            bundle = Path(tmp) / "bundle.tar"
            pack(bundle, files, data)
            command = ssh_command(str(self.address), self.device, remote_command(timeout_s, argv), self.base_dir)
            # Host-side limit: the device's own (timeout(1) there) plus time to connect and copy.
            limit = timeout_s + 4 * int(self.device.get("connect_timeout_s") or 10) + 60
            with bundle.open("rb") as stdin:
                try:
                    done = subprocess.run(command, stdin=stdin, capture_output=True, timeout=limit)
                except FileNotFoundError:
                    raise DeviceFailed("the ssh client is not installed here (openssh-client)") from None
                except subprocess.TimeoutExpired:
                    raise DeviceFailed(f"{self.label}: no answer within {limit:.0f} s (the run's timeout is {timeout_s:.0f} s)") from None
        stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        if done.returncode == 255:
            classify(done.returncode, stderr, self.label)
        if MARKER not in stdout:
            raise DeviceFailed(f"{self.label}: the run stopped before the benchmark (exit {done.returncode}): {tail(stderr or stdout)}")
        output, _, result = stdout.partition(MARKER)
        return output, (json.loads(result) if result.strip() else None), stderr

    def profile(self, job: ProfileJob) -> dict[str, Any]:
        tool = self.device.get("tool")
        if tool and self.device.get("tool_as", "gated") == "gated":
            return self._profile_with_tool(tool, job)
        result = self._profile_with_python(job)
        own = BACKEND_INFO.get(job.backend).tools if job.backend in BACKEND_INFO else ()
        if tool and tool in own and result.get("status") == "ok" and job.settings.get("native_tool", True):
            # after edgekd's: never both on the CPU at once; only the artifact's own runtime's tool, so the ratio
            # compares one runtime with itself (benchmark_app would also read an .onnx)
            result["native_latency"] = self._tool_beside(tool, job, result.get("latency_ms"))
        return result

    def _tool_beside(self, tool: str, job: ProfileJob, measured: dict[str, Any] | None) -> dict[str, Any]:
        """The device tool's median beside edgekd's figure, or why there is none (a side figure never fails the row)."""
        try:
            latency, _, argv = self._run_tool(tool, job, pinned=True, measured=measured)
        except (DeviceFailed, DeviceUnreachable) as why:
            return {"tool": tool, "status": "failed", "reason": str(why)}
        return {"tool": tool, "status": "ok", "p50": latency.get("p50"), "mean": latency.get("mean"),
                "runs": latency.get("runs"), "command": DEVICE_TOOLS.get(tool)().shown(argv)}

    def _profile_with_python(self, job: ProfileJob) -> dict[str, Any]:
        python = str(self.device.get("python") or "python3")
        argv = [python, "-m", f"{PACKAGE}.ondevice.bench", "--artifact", f"files/{job.artifact.name}", "--backend", job.backend,
                "--data", "data/test.npz", "--options", json.dumps(job.options), "--out", "result.json", *job.bench_args]
        if self.device.get("pin"):
            argv += ["--pin", ",".join(map(str, self.device["pin"]))]
        output, result, _ = self.run(argv, job.files, job.data, job.timeout_s, job.work_dir)
        if result is None:
            code = re.search(r"^edgekd-rc (\d+)", output, re.M)
            if code and code.group(1) == "124":
                raise DeviceFailed(f"{self.label}: the benchmark ran past its timeout ({job.timeout_s:.0f} s)")
            raise DeviceFailed(f"{self.label}: the benchmark wrote no result (exit {code.group(1) if code else '?'}): {tail(output)}")
        return result

    def _profile_with_tool(self, tool: str, job: ProfileJob) -> dict[str, Any]:
        latency, output, _ = self._run_tool(tool, job)
        driver = DEVICE_TOOLS.get(tool, key=f"{self.label}: device.tool")()
        return tool_result(tool, latency, {"cpu": "", "threads": job.options.get("threads")}, output,
                           peak_memory_mb=driver.peak_memory_mb(output))

    def _run_tool(self, tool: str, job: ProfileJob, pinned: bool = False,
                  measured: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, list[str]]:
        """The device tool on ``job``'s artifact: its parsed statistics, its output and its command; ``pinned``: on the
        device's ``pin`` cores, as edgekd's benchmark beside it was; ``measured``: that benchmark's figures."""
        path = str(self.device.get("tool_path") or tool)
        driver = DEVICE_TOOLS.get(tool, key=f"{self.label}: device.tool")()
        argv = driver.command(path, f"files/{job.artifact.name}", job.options, tool_settings(driver, job.settings, measured),
                              [str(a) for a in self.device.get("tool_args") or []])
        if pinned and self.device.get("pin"):  # util-linux and Android's toybox have taskset
            argv = ["taskset", "-c", ",".join(map(str, self.device["pin"])), *argv]
        output, _, _ = self.run(argv, job.files, None, job.timeout_s, job.work_dir)
        output, _, rc = output.rpartition("edgekd-rc ")
        if rc.strip() != "0":
            raise DeviceFailed(f"{self.label}: {tool} exited {rc.strip()}: {tail(output)}")
        try:
            return driver.parse(output, job.settings.get("stability_threshold")), output, argv
        except ValueError as why:
            raise DeviceFailed(f"{self.label}: {why}") from None

    def check(self) -> dict[str, Any]:
        """Connect, copy the ondevice package and run its probe: Python, runtimes, meters, tools."""
        python = str(self.device.get("python") or "python3")
        try:
            output, _, _ = self.run([python, "-m", f"{PACKAGE}.ondevice.probe"], [], None, 120)
        except (DeviceUnreachable, DeviceFailed) as why:
            return {"reachable": False, "reason": str(why), "host_key_refused": isinstance(why, HostKeyRefused)}
        body, _, rc = output.rpartition("edgekd-rc ")
        lines = [line for line in body.splitlines() if line.startswith("{")]
        if rc.strip() != "0" or not lines:
            return {"reachable": True, "reason": f"{python} could not run the probe: {tail(body)}"}
        return {"reachable": True, **json.loads(lines[-1])}
