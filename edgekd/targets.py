"""Hardware targets: one YAML file per device in ``targets/``.

A target names the artifacts to build for it (backend, precisions, runtime
options), how to reach the device (ssh, adb, or this machine) and its power model. A new
device of a known backend is only a new YAML file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypedDict

from . import yamlfile
from .errors import ConfigError

_ADDRESS = re.compile(r"[A-Za-z0-9_.%@:\[\]+-]+")  # user@host:port, [ipv6], a serial, an alias
PACKAGE_TARGETS = Path(__file__).resolve().parents[1] / "targets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Runtime options travel to the device as JSON and into command lines: plain values only.
OptionValue = Union[bool, int, float, str]


class PowerSpec(TypedDict):
    """A target's ``power:`` block: the power model's name, and its parameters as further keys (checked against
    the model before any stage runs). A mapping, as the power models take it."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]  # the model's parameters
    model: str


class ArtifactSpec(_Strict):
    backend: str
    precisions: list[str] = Field(..., min_length=1)
    options: dict[str, OptionValue] = Field(default_factory=dict, description="the backend's runtime options")


class DeviceSpec(_Strict):
    """How the target's device is reached. No ``ssh``/``adb``: the target runs on this machine.

    Everything here reaches a remote shell only quoted or as a separate argument, so a
    name, path or option cannot run a command there (see ``edgekd.runners``).
    """

    ssh: str | None = Field(None, description="user@host[:port] or an ~/.ssh/config alias; keys, config and known hosts are ssh's own")
    adb: str | None = Field(None, description="device serial (adb devices)")
    macos_runner: str | None = Field(None, description="ssh destination of a Mac that can run Core ML")
    pin: list[int] | None = Field(None, description="CPU cores the benchmark is pinned to (taskset), e.g. a phone's big cores")
    python: str = Field("python3", description="ssh: the device's Python, with numpy and the artifact's runtime")
    identity_file: str | None = Field(None, description="ssh: private key to log in with (default: ssh's own choice)")
    known_hosts: str | None = Field(None, description="ssh: known_hosts file the host key is checked against (default: ~/.ssh/known_hosts)")
    host_key_checking: Literal["yes", "accept-new"] = Field(
        "yes", description="ssh StrictHostKeyChecking: yes refuses unknown hosts; accept-new trusts a first key; never off")
    connect_timeout_s: int = Field(10, ge=1, description="ssh/adb: seconds to wait for the connection")
    tool: str | None = Field(
        None, description="ssh: time the artifact with the device's own tool (one a backend declares in its folder, "
                          "e.g. benchmark_app or trtexec), instead of the Python benchmark or beside it (tool_as)")
    tool_as: Literal["gated", "beside"] = Field(
        "gated", description="ssh: gated: the tool's figures are the artifact's, for every artifact of the target (a "
                             "device without the runtime's Python API); beside: edgekd's benchmark is gated and, for "
                             "the artifacts of the tool's own runtime, the tool runs after it on the pinned cores, its "
                             "median and the ratio kept beside (latency_ms.native), as on this machine")
    tool_path: str | None = Field(None, description="ssh: the tool on the device (default: its name, found on PATH)")
    tool_args: list[str] = Field(default_factory=list, description="extra arguments for the tool (each quoted)")
    benchmark_model: str | None = Field(None, description="adb: this machine's path of an Android benchmark_model binary, pushed to the phone")
    adb_path: str = Field("adb", description="adb: the adb executable")
    timeout_s: float | None = Field(None, gt=0, description="per artifact on this device (default: profile.timeout_s)")
    retries: int | None = Field(None, ge=0, description="attempts after the device was unreachable (default: profile.retries)")

    @field_validator("ssh", "adb", "macos_runner")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        """A destination starting with '-' would be read as an option; an address has no spaces or shell characters.

        (Addresses reach a shell only quoted; refusing ``host;reboot`` here names the mistake instead.)"""
        if value is not None and (value.startswith("-") or not _ADDRESS.fullmatch(value)):
            raise ValueError(f"{value!r} is not a device address: letters, digits and . _ - @ : % + [ ] only, "
                             "no leading '-'")
        return value

    @field_validator("tool")
    @classmethod
    def _tool(cls, value: str | None) -> str | None:
        """A tool some backend declares (edgekd/backends/<name>/__init__.py), which the SSH runner can drive."""
        from .ondevice.backend_info import device_tools

        if value is not None:
            device_tools().get(value)  # ValueError naming the near miss and the declared tools
        return value

    @model_validator(mode="after")
    def _tool_beside_needs_a_tool(self) -> "DeviceSpec":
        if self.tool_as == "beside" and self.tool is None:
            raise ValueError("tool_as: beside runs the device's own tool after edgekd's benchmark: set device.tool "
                             "too (e.g. benchmark_app, trtexec)")
        return self


class Target(_Strict):
    name: str
    description: str = ""
    artifacts: list[ArtifactSpec]
    device: DeviceSpec = DeviceSpec()
    power: PowerSpec | None = Field(None, description="power model used when no meter exists")
    rate_hz: float | None = Field(None, gt=0, description="the application's inference rate on this device (a 30 fps "
                                  "camera: 30): the gate judges accuracy per watt at this rate and fails an artifact "
                                  "too slow to sustain it, wherever budgets apply (a budget's own rate_hz wins)")
    source: str = Field("", exclude=True)


def search_dirs(base_dir: Path | None = None) -> list[Path]:
    dirs = [Path.cwd() / "targets"]
    if base_dir is not None:
        dirs.insert(0, Path(base_dir) / "targets")
        dirs.insert(1, Path(base_dir).parent / "targets")
    dirs.append(PACKAGE_TARGETS)
    return list(dict.fromkeys(d.resolve() for d in dirs))


def load_target(name: str, base_dir: Path | None = None, key: str = "targets") -> Target:
    """``name`` is a target name (looked up in the targets folders) or a path to a YAML file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate if candidate.is_absolute() or base_dir is None else Path(base_dir) / candidate
        if not path.is_file():
            raise ConfigError(f"{key}: target file {path} does not exist")
    else:
        found = [d / f"{name}.yaml" for d in search_dirs(base_dir) if (d / f"{name}.yaml").is_file()]
        if not found:
            known = ", ".join(t.name for t in list_targets(base_dir)) or "none"
            raise ConfigError(f"{key}: unknown target {name!r}; known targets: {known}")
        path = found[0]
    return yamlfile.load(path, Target, what="target file", extra={"source": str(path)})


def list_targets(base_dir: Path | None = None) -> list[Target]:
    """Every target in the targets folders (the first of each name); a file that does not load is an error."""
    seen: dict[str, Target] = {}
    broken: list[str] = []
    for directory in search_dirs(base_dir):
        for path in sorted(directory.glob("*.yaml")):
            if path.stem not in seen:
                try:
                    seen[path.stem] = load_target(str(path))
                except ConfigError as error:  # never skipped: a target the user wrote must not vanish unseen
                    broken.append(str(error))
    if broken:
        raise ConfigError(f"{len(broken)} broken target file(s) in {', '.join(map(str, search_dirs(base_dir)))}:\n"
                          + "\n".join(f"  {b}" for b in broken))
    return list(seen.values())


def target_rates(config) -> dict[str, float]:
    """The inference rate each of a run's targets states (target ``rate_hz``), by target name."""
    targets = (load_target(t, config.base_dir, key=f"targets[{i}]") for i, t in enumerate(config.targets))
    return {t.name: t.rate_hz for t in targets if t.rate_hz is not None}
