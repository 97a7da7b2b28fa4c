"""An Android phone over adb: TFLite's ``benchmark_model`` times the artifact, the battery gauge gives energy.

A phone has no Python, so the device-side benchmark is the user's own
``benchmark_model`` binary (built for the phone's ABI; ``device.benchmark_model``),
pushed with the artifact into a fresh directory under /data/local/tmp and
removed afterwards. It runs pinned with ``taskset`` when ``device.pin`` names
cores, with the profile section's warm-up and run settings. Its command line and
the parsing of its output are the driver of the backend that declares the tool
(``DEVICE_TOOLS``; LiteRT's ``tool.py``), so this runner times the artifacts of
whichever backend declares ``benchmark_model`` and refuses the others, naming
the backends it can time. It feeds random inputs, so accuracy is not measured
on the phone (see ``tool_result``). While it runs, a shell loop on the phone samples the
battery's current, voltage and status; energy is reported only when the battery
was discharging the whole time (a USB charger otherwise powers the phone).

adb joins the words after ``shell`` into one command line for the phone's shell,
so every word is quoted here; a serial is one argument of adb itself. This
runner has not been run against a phone here: its command construction and
its parsing are tested against a fake adb and benchmark_model outputs.
"""

from __future__ import annotations

import math
import re
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

from ..backends import DEVICE_TOOLS, DeviceTool
from ..ondevice.backend_info import BACKEND_INFO
from ..ondevice.meters.android import POLL_S, REFUSED_STATUS, BatteryReading, check_status, recorded_energy
from ..ondevice.energy import check_delta
from ..ondevice.meters.base import REFUSED, MeterUnavailable
from ..ondevice.settings import EnergySettings, LatencySettings
from .base import RUNNERS, DeviceFailed, DeviceRunner, DeviceUnreachable, ProfileJob, pin_mask, tail, tool_result

REMOTE_ROOT = "/data/local/tmp"
BATTERY = "/sys/class/power_supply/battery"
TOOL = "benchmark_model"  # the phone's benchmark: the binary device.benchmark_model names, driven by its backend's tool.py


def tool_backends() -> list[str]:
    """The backends whose artifacts the phone's benchmark times: those that declare it as their device tool."""
    return [name for name, info in BACKEND_INFO.items() if info.tool == TOOL]


def tool_driver() -> DeviceTool:
    """The declaring backend's driver of the tool: its command line and its output's parsers."""
    return DEVICE_TOOLS.get(TOOL, key="adb runner: device tool")()


# Runs on the phone: host facts, the battery sampler (when asked), the tool (pinned when asked), end markers.
# Every value arrives as a quoted positional argument; nothing is pasted into this text.
RUN_SCRIPT = r"""
d=$1; mask=$2; energy=$3; idle=$4; bat=$5; poll=$6; shift 6
cd "$d" || { echo "edgekd: no directory $d on the device" >&2; exit 86; }
echo "edgekd-model $(getprop ro.product.model 2>/dev/null)"
echo "edgekd-soc $(getprop ro.soc.model 2>/dev/null)"
echo "edgekd-uname $(uname -srm 2>/dev/null)"
echo "edgekd-cores $(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
sampler=
if [ "$energy" = 1 ]; then
  (while :; do read up rest < /proc/uptime; echo "edgekd-battery $up $(cat "$bat/current_now") $(cat "$bat/voltage_now") $(cat "$bat/status")"; sleep "$poll"; done) > battery.txt 2>/dev/null &
  sampler=$!
  sleep "$idle"
fi
read up rest < /proc/uptime; echo "edgekd-start $up"
if [ -n "$mask" ]; then set -- taskset "$mask" "$@"; fi
"$@" 2>&1
rc=$?
read up rest < /proc/uptime; echo "edgekd-end $up"
if [ -n "$sampler" ]; then sleep 1; kill "$sampler" 2>/dev/null; cat battery.txt; fi
echo "edgekd-rc $rc"
"""


def shell_line(words: list[str]) -> str:
    """One command line for the device's shell: every word quoted, so none is interpreted."""
    return " ".join(shlex.quote(str(w)) for w in words)


def parse_battery(output: str) -> tuple[list[BatteryReading], float | None, float | None]:
    """The battery readings (uptime, µA, µV, status), and the uptimes at which the tool started and ended."""
    readings, start, end = [], None, None
    for line in output.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "edgekd-start":
            start = float(rest)
        elif word == "edgekd-end":
            end = float(rest)
        elif word == "edgekd-battery":
            parts = rest.split()
            try:
                up, current_ua, voltage_uv = float(parts[0]), float(parts[1]), float(parts[2])
            except (IndexError, ValueError):
                continue  # an unreadable gauge leaves the reading empty
            readings.append(BatteryReading(up, current_ua, voltage_uv, " ".join(parts[3:]) or "unknown"))
    return readings, start, end


def battery_energy(output: str, latency: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Energy per inference from the battery readings of the timed runs, or None and why.

    The arithmetic is the android-battery meter's own (``recorded_energy``): the same power
    per reading, the same status refusal, the same integration over time. The timed runs are
    the last ``runs x mean`` seconds before the tool ended (benchmark_model prints no
    timestamps); readings before the start give the idle power.
    """
    readings, start, end = parse_battery(output)
    if not readings or start is None or end is None:
        return None, {"android-battery": f"no readable {BATTERY}/current_now, voltage_now and status on the device"}
    timed_s = latency["runs"] * latency["mean"] / 1000.0
    during = [r for r in readings if end - timed_s <= r.time_s <= end] or [r for r in readings if start <= r.time_s <= end]
    idle = [r for r in readings if r.time_s < start]
    try:
        for reading in readings:  # a charger plugged in at any point, idle or after the runs too
            check_status(reading.status)
        if len(during) < 2 or during[-1].time_s <= during[0].time_s:
            return None, {"android-battery": f"{REFUSED}{len(during)} battery reading(s) during the timed runs; raise the energy windows "
                                             f"(profile.energy) so the runs last several {POLL_S:g} s polls"}
        joules, seconds, describe = recorded_energy(during, supply=Path(BATTERY))
        check_delta("android-battery", "timed runs", joules, seconds)  # a gauge stuck at 0 mA measures nothing
        idle_power = None
        if len(idle) >= 2 and idle[-1].time_s > idle[0].time_s:
            idle_j, idle_s, _ = recorded_energy(idle, supply=Path(BATTERY))
            idle_power = idle_j / idle_s
    except MeterUnavailable as why:
        return None, {"android-battery": why.reason}
    power = joules / seconds
    inferences = seconds * 1000.0 / latency["mean"]  # the runs that fell between the first and last reading
    mj = 1000.0 * joules / inferences  # = power x mean latency (W x ms = mJ)
    net_mj = 1000.0 * (joules - idle_power * seconds) / inferences if idle_power is not None else None
    describe["notes"] = (f"read by a shell loop on the phone every {POLL_S:g} s during benchmark_model's timed runs; "
                         + describe["notes"])
    return {
        "status": "measured", "source": "measured", "meter": "android-battery", "boundary": "battery",
        "measurement_method": "battery-fuel-gauge", "sampling_interval_s": POLL_S, "window_s": seconds, "window_count": 1,
        "duration_s": seconds, "inferences": inferences, "idle_s": (idle[-1].time_s - idle[0].time_s) if idle_power else None,
        "idle_subtracted": False,
        "mj_per_inference": mj, "avg_power_w": power, "inferences_per_joule": 1000.0 / mj if mj > 0 else math.inf,
        "idle_power_w": idle_power, "net_mj_per_inference": net_mj,
        "windows": [{"seconds": seconds, "inferences": inferences, "joules": joules, "power_w": power, "readings": len(during),
                     "mj_per_inference": mj, "net_mj_per_inference": net_mj}],
        "describe": describe,
    }, {}


def parse_host(output: str) -> dict[str, Any]:
    facts = {}
    for line in output.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("edgekd-model", "edgekd-soc", "edgekd-uname", "edgekd-cores"):
            facts[word[7:]] = rest.strip()
    cpu = " ".join(v for v in (facts.get("model"), facts.get("soc")) if v)
    cores = facts.get("cores", "")
    return {"cpu": cpu or "android", "cores": int(cores) if cores.isdigit() else None, "machine": facts.get("uname", "")}


def _energy_wanted(energy: EnergySettings) -> bool:
    return energy.meter in ("auto", "android-battery") and energy.windows > 0


@RUNNERS.register("adb")
class AdbRunner(DeviceRunner):
    kind = "adb"

    @classmethod
    def from_device(cls, device: dict[str, Any], base_dir: Path | None) -> "AdbRunner":
        device = dict(device)
        if device.get("benchmark_model") and base_dir is not None:  # this machine's binary, pushed to the phone
            path = Path(device["benchmark_model"]).expanduser()
            device["benchmark_model"] = str(path if path.is_absolute() else base_dir / path)
        return cls(device["adb"], device)

    def _adb(self, *words: str, timeout: float = 120.0, stdin: str | None = None) -> subprocess.CompletedProcess:
        command = [self.device.get("adb_path") or "adb", "-s", str(self.address), *words]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=stdin)
        except FileNotFoundError:
            raise DeviceFailed(f"{command[0]} is not installed here (Android platform-tools)") from None
        except subprocess.TimeoutExpired:
            raise DeviceUnreachable(f"adb {words[0]} on {self.address} did not answer within {timeout:.0f} s") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            lowered = message.lower()
            if "unauthorized" in lowered:
                raise DeviceUnreachable(f"{self.address} has not authorized this computer: accept the prompt on the phone ({tail(message, 1)})", retry=False)
            if any(s in lowered for s in ("not found", "offline", "no devices", "device still connecting", "closed", "protocol fault")):
                raise DeviceUnreachable(f"adb cannot reach {self.address}: {tail(message, 2)}")
            raise DeviceFailed(f"adb {words[0]} failed on {self.address}: {tail(message)}")
        return done

    def _shell(self, words: list[str], timeout: float = 120.0) -> str:
        return self._adb("shell", shell_line(words), timeout=timeout).stdout

    def _online(self) -> None:
        state = self._adb("get-state", timeout=float(self.device.get("connect_timeout_s") or 10)).stdout.strip()
        if state != "device":
            raise DeviceUnreachable(f"{self.address} is {state or 'not connected'}")

    def profile(self, job: ProfileJob) -> dict[str, Any]:
        backends = tool_backends()
        if job.backend not in backends:
            return {"status": "not run here",
                    "reason": f"the adb runner times artifacts with the phone's {TOOL}, which {job.backend} does not declare as its "
                              f"device tool; backends that do: {', '.join(backends) or 'none'}"}
        binary = self.device.get("benchmark_model")
        if not binary or not Path(binary).is_file():
            raise DeviceFailed(f"device.benchmark_model must be this machine's path of an Android benchmark_model binary (got {binary!r})")
        self._online()
        workdir = f"{REMOTE_ROOT}/edgekd-{uuid.uuid4().hex[:12]}"
        settings, options = job.settings, job.options
        energy_cfg = EnergySettings.from_profile(settings)
        energy = _energy_wanted(energy_cfg)
        min_secs = LatencySettings.from_profile(settings).min_seconds
        if energy:  # the battery gauge needs long runs: as long as the energy windows would be
            min_secs = max(min_secs, energy_cfg.windows * energy_cfg.window_s, energy_cfg.min_duration_s)
        idle_s = min(10.0, energy_cfg.window_s)
        pin = self.device.get("pin")
        tool_words = tool_driver().command(f"./{TOOL}", f"{workdir}/{job.artifact.name}", options, {**settings, "min_seconds": min_secs},
                                           [str(a) for a in self.device.get("tool_args") or []])
        try:
            self._shell(["mkdir", "-p", workdir])
            self._adb("push", str(binary), f"{workdir}/{TOOL}", timeout=job.timeout_s)
            for file in job.files:
                self._adb("push", str(file), f"{workdir}/{file.name}", timeout=job.timeout_s)
            self._shell(["chmod", "755", f"{workdir}/{TOOL}"])
            output = self._shell(["sh", "-c", RUN_SCRIPT, "edgekd", workdir, pin_mask(pin) if pin else "",
                                  "1" if energy else "0", f"{idle_s:g}", BATTERY, f"{POLL_S:g}", *tool_words], timeout=job.timeout_s)
        finally:
            try:
                self._shell(["rm", "-rf", workdir], timeout=60)
            except (DeviceUnreachable, DeviceFailed):
                pass  # the phone went away; /data/local/tmp/edgekd-* is left behind and says so by name
        return self.result(output, settings, energy)

    @staticmethod
    def result(output: str, settings: dict[str, Any], energy_on: bool = True) -> dict[str, Any]:
        """The benchmark result from the phone's output: the tool's statistics, host facts, battery readings."""
        rc = re.search(r"^edgekd-rc (\d+)", output, re.M)
        if rc is None:
            raise DeviceFailed(f"the run on the phone ended early: {tail(output)}")
        tool_log = "\n".join(line for line in output.splitlines() if not line.startswith("edgekd-"))
        if rc.group(1) != "0":
            raise DeviceFailed(f"{TOOL} exited {rc.group(1)}: {tail(tool_log)}")
        driver = tool_driver()
        try:
            latency = driver.parse(output, settings.get("stability_threshold"))
        except ValueError as why:
            raise DeviceFailed(str(why)) from None
        energy, unavailable = battery_energy(output, latency) if energy_on else (None, {"all": "energy measurement turned off"})
        return tool_result(TOOL, latency, {**parse_host(output), "threads": None}, tool_log,
                           energy=energy, meters_unavailable=unavailable, peak_memory_mb=driver.peak_memory_mb(output))

    def check(self) -> dict[str, Any]:
        """adb state, the phone's model and ABI, taskset, the battery gauge, and whether a benchmark_model is given."""
        try:
            self._online()
            text = self._shell(["sh", "-c", CHECK_SCRIPT, "edgekd", BATTERY], timeout=30)
        except (DeviceUnreachable, DeviceFailed) as why:
            return {"reachable": False, "reason": str(why)}
        facts = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        binary = self.device.get("benchmark_model")
        have = bool(binary and Path(binary).is_file())
        status, current = facts.get("status", "").strip(), facts.get("current_now", "").strip()
        readable = bool(re.fullmatch(r"-?\d+", current))
        meter = "android-battery" if readable and status not in REFUSED_STATUS else None
        why_not = f"status {status or 'unreadable'!r}" + ("" if readable else f", current_now unreadable ({current or 'empty'})")
        return {
            "reachable": True, "machine": f"{facts.get('model', '').strip()} ({facts.get('abi', '').strip()})", "python": None,
            "runtimes": {name: {"ok": True, "version": f"{TOOL} {binary}"} if have
                         else {"ok": False, "reason": f"device.{TOOL} is not set to a file here"} for name in tool_backends()},
            "meters": {"available": meter, "unavailable": {} if meter else {"android-battery": why_not}},
            "tools": {"taskset": facts.get("taskset", "").strip() or None},
        }


# ``devices check`` on a phone: one key=value line per fact; $1 is the battery's sysfs folder.
CHECK_SCRIPT = r"""
echo "model=$(getprop ro.product.model 2>/dev/null)"
echo "abi=$(getprop ro.product.cpu.abi 2>/dev/null)"
echo "taskset=$(command -v taskset 2>/dev/null)"
echo "status=$(cat "$1/status" 2>/dev/null)"
echo "current_now=$(cat "$1/current_now" 2>/dev/null)"
"""
