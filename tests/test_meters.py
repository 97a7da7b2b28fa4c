"""Energy meters against sysfs trees laid out as the kernel does (tests/fixtures/sysfs), and the
energy-window recipe against a RAPL counter advanced at a known power.

Each test copies a tree into tmp_path and writes new counter/sensor values there; values are
replaced atomically (os.replace) because meters may read while a test writes.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from edgekd.ondevice.energy import measure_energy
from edgekd.ondevice.meters import (
    DETECT_ORDER,
    METERS,
    MeterUnavailable,
    PowerMeter,
    detect,
    open_meter,
)
from edgekd.ondevice.meters import powermetrics as pm
from edgekd.ondevice.meters.android import AndroidBatteryMeter
from edgekd.ondevice.meters.jetson import JetsonMeter
from edgekd.ondevice.meters.nvml import NvmlMeter
from edgekd.ondevice.meters.rapl import RaplMeter
from edgekd.ondevice.meters.base import EnergyRefused

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
PKG_MAX = 262143328850
LAPTOP, SERVER = "rapl-laptop-1socket", "rapl-server-2socket"
ORIN, NANO, PIXEL = "jetson-orin-nano-jp6", "jetson-nano-jp4", "android-pixel"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
NANO_IIO = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
BATTERY = "sys/class/power_supply/battery"


def tree(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst, symlinks=True)
    return dst


def write(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def read(path: Path) -> int:
    return int(path.read_text())


def advance(path: Path, delta_uj: int) -> None:
    write(path, read(path) + delta_uj)


def wait_polls(meter, n: int = 2, timeout: float = 5.0) -> None:
    """Block until the meter's thread has completed ``n`` more samples (so one began after the caller's write)."""
    target = meter.polls + n
    deadline = time.monotonic() + timeout
    while meter.polls < target:
        assert time.monotonic() < deadline, "meter thread stopped polling"
        time.sleep(0.001)


@pytest.fixture
def no_pynvml(monkeypatch):
    """A machine with a GPU and pynvml must not leak into detection tests."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


# --- RAPL ----------------------------------------------------------------------------------


def test_rapl_reads_only_package_zones(tmp_path):
    root = tree(tmp_path, LAPTOP)
    pc = root / "sys/class/powercap"
    meter = RaplMeter.open(root, poll_s=60)
    assert meter.sources() == [str(pc / "intel-rapl:0/energy_uj")]
    meter.start()
    advance(pc / "intel-rapl:0/energy_uj", 3_000_000)  # package-0
    advance(pc / "intel-rapl:0:0/energy_uj", 2_000_000)  # core, inside the package
    advance(pc / "intel-rapl:0:1/energy_uj", 500_000)  # uncore, inside the package
    advance(pc / "intel-rapl:0:2/energy_uj", 1_000_000)  # dram, separate domain
    advance(pc / "intel-rapl:1/energy_uj", 6_000_000)  # psys, contains the package
    advance(pc / "intel-rapl-mmio:0/energy_uj", 3_000_000)  # the same package again
    assert meter.joules() == pytest.approx(3.0)
    meter.stop()
    info = meter.describe()
    assert info["meter"] == "rapl" and info["boundary"] == "cpu-package"
    assert "psys" in info["notes"] and "duplicate of intel-rapl:0" in info["notes"]


def test_rapl_sums_the_package_of_every_socket(tmp_path):
    root = tree(tmp_path, SERVER)
    pc = root / "sys/class/powercap"
    meter = RaplMeter.open(root, poll_s=60)
    assert len(meter.zones) == 2
    meter.start()
    advance(pc / "intel-rapl:0/energy_uj", 3_000_000)
    advance(pc / "intel-rapl:1/energy_uj", 4_000_000)
    advance(pc / "intel-rapl:0:0/energy_uj", 1_000_000)
    advance(pc / "intel-rapl:1:0/energy_uj", 1_000_000)
    assert meter.joules() == pytest.approx(7.0)
    meter.stop()


def test_rapl_falls_back_to_the_mmio_package(tmp_path):
    root = tree(tmp_path, LAPTOP)
    pc = root / "sys/class/powercap"
    (pc / "intel-rapl:0").unlink()
    meter = RaplMeter.open(root, poll_s=60)
    assert meter.sources() == [str(pc / "intel-rapl-mmio:0/energy_uj")]


def test_rapl_wraparound_read_at_window_edges(tmp_path):
    root = tree(tmp_path, LAPTOP)
    counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    write(counter, PKG_MAX - 1000)
    meter = RaplMeter.open(root, poll_s=60)
    meter.start()
    write(counter, PKG_MAX - 100)
    assert meter.joules() == pytest.approx(900e-6, abs=1e-12)
    write(counter, 400)  # wrapped: 100 µJ to the top, then 400
    assert meter.joules() == pytest.approx(1400e-6, abs=1e-12)
    meter.stop()
    assert meter.joules() == pytest.approx(1400e-6, abs=1e-12)


def test_rapl_two_wraps_between_edges_are_caught_by_polling(tmp_path):
    root = tree(tmp_path, LAPTOP)
    zone = root / "sys/class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", 1_000_000)
    write(zone / "energy_uj", 800_000)
    meter = RaplMeter.open(root, poll_s=0.002)
    meter.start()
    for value in (900_000, 100_000, 950_000, 50_000):  # +100k, wrap +200k, +850k, wrap +100k
        write(zone / "energy_uj", value)
        wait_polls(meter)
    assert meter.joules() == pytest.approx(1.25)  # edge reads alone would see 800k -> 50k: 0.25 J
    meter.stop()


def test_rapl_polls_fast_only_near_the_wrap(tmp_path):
    root = tree(tmp_path, LAPTOP)
    counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    meter = RaplMeter.open(root)
    meter.start()
    assert meter._interval() == 1.0  # ~177 kJ of headroom
    write(counter, PKG_MAX - 500_000_000)  # 500 J left: a 1000 W draw wraps it within a second
    meter.joules()
    assert meter._interval() == 0.1
    meter.stop()


def test_rapl_counter_going_backwards_is_refused_not_read_as_a_wrap(tmp_path):
    root = tree(tmp_path, LAPTOP)
    counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    meter = RaplMeter.open(root, poll_s=60)
    write(counter, 100_000_000_000)
    meter.start()
    write(counter, 50_000_000_000)  # a reset: as a wrap it would be 212 kJ within a second
    with pytest.raises(EnergyRefused, match=r"refused: the rapl counter went backwards \(100000000000 -> 50000000000\)"):
        meter.joules()
    meter.stop()


def test_rapl_permission_error_names_the_fix(tmp_path, monkeypatch):
    root = tree(tmp_path, LAPTOP)
    real_read_text = Path.read_text

    def root_only(self, *args, **kwargs):  # kernels >= 5.10: energy_uj is 0400 root
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    with pytest.raises(MeterUnavailable) as info:
        RaplMeter.open(root)
    assert "permission denied reading" in info.value.reason
    assert "energy_uj" in info.value.reason and "sudo chmod -R a+r" in info.value.reason


def test_rapl_absent(tmp_path):
    with pytest.raises(MeterUnavailable, match="powercap"):
        RaplMeter.open(tmp_path)


# --- Jetson INA3221 ---------------------------------------------------------------------------


def test_jetson_orin_defaults_to_vdd_in_as_volts_times_amps(tmp_path):
    root = tree(tmp_path, ORIN)
    meter = JetsonMeter.open(root, poll_s=0.01)
    assert meter.boundary == "module-input-rail"
    assert [r.label for r in meter.rails] == ["VDD_IN"]
    assert meter.read_power_w() == pytest.approx(5.064 * 0.972)  # in1_input mV x curr1_input mA
    assert meter.update_period_s == pytest.approx(0.026)  # update_interval, ms
    assert JetsonMeter.open(root).update_period_s == pytest.approx(0.05)  # the default poll is slower
    assert "VDD_CPU_GPU_CV" in meter.describe()["notes"]


@pytest.mark.parametrize("name, parent, old, new", [(ORIN, ORIN_HWMON, "hwmon1", "hwmon7"),
                                                    (NANO, NANO_IIO, "iio:device0", "iio:device3")])
def test_jetson_found_whatever_the_device_index(tmp_path, name, parent, old, new):
    root = tree(tmp_path, name)
    device = (root / parent).resolve()
    device.rename(device.with_name(new))
    meter = JetsonMeter.open(root)
    assert all(new in source for source in meter.sources())
    assert meter.boundary == "module-input-rail"


def test_jetson_rail_selection(tmp_path):
    root = tree(tmp_path, ORIN)
    soc = JetsonMeter.open(root, rail="VDD_SOC")
    assert soc.boundary == "rail:VDD_SOC"
    assert soc.read_power_w() == pytest.approx(5.048 * 0.270)
    # VDD_IN is the module's total: adding its sub-rails to it would count their watts twice
    with pytest.raises(EnergyRefused, match=r"refused: rail='all' would add the sub-rails to VDD_IN.*rail='VDD_IN'") as info:
        JetsonMeter.open(root, rail="all")
    assert "VDD_CPU_GPU_CV, VDD_SOC" in info.value.reason  # the sub-rails one may pick instead
    with pytest.raises(MeterUnavailable, match="VDD_GPU.*VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"):
        JetsonMeter.open(root, rail="VDD_GPU")
    (root / ORIN_HWMON / "in1_label").unlink()  # no input rail: sum what there is, and say so
    fallback = JetsonMeter.open(root)
    assert fallback.boundary == "rails-sum"
    assert fallback.read_power_w() == pytest.approx(5.056 * 0.125 + 5.048 * 0.270)
    assert "not the module input" in fallback.describe()["notes"]


def test_jetson_hwmon_power_file_is_microwatts(tmp_path):
    root = tree(tmp_path, ORIN)
    write(root / ORIN_HWMON / "power1_input", 6_000_000)
    assert JetsonMeter.open(root).read_power_w() == pytest.approx(6.0)


def test_jetson_nano_old_layout(tmp_path):
    root = tree(tmp_path, NANO)
    meter = JetsonMeter.open(root)
    assert meter.boundary == "module-input-rail" and meter.rails[0].label == "POM_5V_IN"
    assert meter.read_power_w() == pytest.approx(2.621)  # in_power0_input, mW
    (root / NANO_IIO / "in_power0_input").unlink()
    assert JetsonMeter.open(root).read_power_w() == pytest.approx(5.032 * 0.521)


def test_jetson_integrates_a_constant_rail(tmp_path):
    root = tree(tmp_path, ORIN)
    meter = JetsonMeter.open(root, poll_s=0.005)
    watts = 5.064 * 0.972
    before = time.monotonic()
    meter.start()
    after_start = time.monotonic()
    time.sleep(0.1)
    before_read = time.monotonic()
    joules = meter.joules()
    after_read = time.monotonic()
    meter.stop()
    assert watts * (before_read - after_start) * 0.999 <= joules <= watts * (after_read - before) * 1.001


# --- PowerMeter integration rule ------------------------------------------------------------------


class ScriptedPower(PowerMeter):
    name = "scripted"
    boundary = "test"

    def __init__(self, readings):
        super().__init__(poll_s=3600, update_period_s=0.0)
        self.readings = iter(readings)  # (time_s, watts)
        self.now = 0.0
        self.clock = lambda: self.now

    @classmethod
    def open(cls, root=Path("/"), **options):
        raise NotImplementedError

    def read_power_w(self):
        self.now, watts = next(self.readings)
        return watts


def test_power_meter_integrates_with_the_trapezoid_rule():
    meter = ScriptedPower([(0.0, 2.0), (1.0, 4.0), (3.0, 4.0), (4.0, 0.0)])
    meter.start()
    assert meter.joules() == pytest.approx(3.0)  # (2 + 4) / 2 x 1 s
    assert meter.joules() == pytest.approx(11.0)  # + 4 W x 2 s
    meter.stop()
    assert meter.joules() == pytest.approx(13.0)  # stop takes the final sample: + (4 + 0) / 2 x 1 s


# --- Android battery ----------------------------------------------------------------------------------


def test_android_power_is_abs_current_times_voltage(tmp_path):
    root = tree(tmp_path, PIXEL)
    meter = AndroidBatteryMeter.open(root)
    assert meter.boundary == "battery"
    assert meter.read_power_w() == pytest.approx(0.498 * 3.871)  # -498000 µA x 3871000 µV
    write(root / BATTERY / "current_now", 498000)  # the other sign convention
    assert meter.read_power_w() == pytest.approx(0.498 * 3.871)
    notes = meter.describe()["notes"]
    assert "Discharging" in notes and "USB charging contaminates" in notes


@pytest.mark.parametrize("status", ["Charging", "Full", "Not charging"])
def test_android_refuses_while_on_a_charger(tmp_path, status):
    root = tree(tmp_path, PIXEL)
    write(root / BATTERY / "status", status)
    with pytest.raises(MeterUnavailable, match=status):
        AndroidBatteryMeter.open(root)


def test_android_charger_plugged_in_mid_run_fails_the_measurement(tmp_path):
    root = tree(tmp_path, PIXEL)
    meter = AndroidBatteryMeter.open(root, poll_s=3600)
    meter.start()
    write(root / BATTERY / "status", "Charging")
    with pytest.raises(MeterUnavailable, match="Charging"):
        meter.joules()
    meter.stop()


# --- macOS powermetrics ------------------------------------------------------------------------------

# A macOS 14 text sample (cpu_power,gpu_power,ane_power samplers), per-CPU lines trimmed.
MACOS14 = """\
Machine model: Mac14,2
OS version: 23F79
Boot arguments:
Boot time: Tue Jun 11 09:12:40 2024



*** Sampled system activity (Tue Jun 11 10:01:02 2024 +0200) (102.34ms elapsed) ***


**** Processor usage ****

E-Cluster HW active frequency: 1321 MHz
E-Cluster HW active residency:  61.52% (600 MHz:   0% 912 MHz:  38% 1284 MHz:  17% 1752 MHz:  22% 2004 MHz:  23%)
E-Cluster idle residency:  38.48%
CPU 0 frequency: 1362 MHz
CPU 0 active residency:  47.65% (600 MHz:   0% 912 MHz:  17% 1284 MHz: 8.1% 1752 MHz:  11% 2004 MHz:  12%)
CPU 0 idle residency:  52.35%

P-Cluster HW active frequency: 3012 MHz
P-Cluster HW active residency:  88.10% (660 MHz: 1.2% 924 MHz:   0% 3204 MHz:  87%)
P-Cluster idle residency:  11.90%

CPU Power: 5521 mW
GPU Power: 312 mW
ANE Power: 0 mW
Combined Power (CPU + GPU + ANE): 5833 mW

**** GPU usage ****

GPU HW active frequency: 444 MHz
GPU HW active residency:   9.42% (444 MHz: 9.4% 612 MHz:   0% 808 MHz:   0% 968 MHz:   0% 1110 MHz:   0% 1236 MHz:   0% 1338 MHz:   0% 1398 MHz:   0%)
GPU SW requested state: (P1 : 100% P2 :   0% P3 :   0% P4 :   0% P5 :   0% P6 :   0% P7 :   0% P8 :   0%)
GPU idle residency:  90.58%
GPU Power: 312 mW


*** Sampled system activity (Tue Jun 11 10:01:02 2024 +0200) (100.87ms elapsed) ***


**** Processor usage ****

CPU Power: 1040 mW
GPU Power: 18 mW
ANE Power: 1204 mW
Combined Power (CPU + GPU + ANE): 2262 mW

**** GPU usage ****

GPU HW active frequency: 444 MHz
GPU idle residency:  99.10%
GPU Power: 18 mW
"""

# macOS 12 prints no combined line (and package/DRAM lines that are not CPU + GPU + ANE).
MACOS12 = """\
*** Sampled system activity (Mon Jun 13 16:19:40 2022 -0700) (250.12ms elapsed) ***

**** Processor usage ****

ANE Power: 10 mW
DRAM Power: 36 mW
CPU Power: 422 mW
GPU Power: 28 mW
Package Power: 515 mW

**** GPU usage ****

GPU active frequency: 389 MHz
GPU Power: 28 mW
"""


def test_powermetrics_parser_reads_the_combined_line():
    samples = pm.parse_powermetrics(MACOS14)
    assert [s.elapsed_s for s in samples] == pytest.approx([0.10234, 0.10087])
    assert [s.power_w for s in samples] == pytest.approx([5.833, 2.262])


def test_powermetrics_parser_sums_parts_once_without_a_combined_line():
    (sample,) = pm.parse_powermetrics(MACOS12)
    assert sample.elapsed_s == pytest.approx(0.25012)
    assert sample.power_w == pytest.approx(0.422 + 0.028 + 0.010)  # GPU counted once; no DRAM/package


def test_powermetrics_unavailable_off_macos_or_without_the_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(pm, "_is_macos", lambda: False)
    with pytest.raises(MeterUnavailable, match="macOS"):
        pm.PowermetricsMeter.open(tmp_path)
    monkeypatch.setattr(pm, "_is_macos", lambda: True)
    with pytest.raises(MeterUnavailable, match="usr/bin/powermetrics"):
        pm.PowermetricsMeter.open(tmp_path)


def fake_powermetrics(root: Path, body: str) -> None:
    binary = root / "usr/bin/powermetrics"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    binary.chmod(0o755)


def test_powermetrics_streams_samples_from_the_subprocess(tmp_path, monkeypatch):
    fake_powermetrics(tmp_path, f"""
        import sys, time
        sys.stdout.write({MACOS14!r} + {MACOS12!r})
        sys.stdout.flush()
        time.sleep(60)
    """)
    monkeypatch.setattr(pm, "_is_macos", lambda: True)
    meter = pm.PowermetricsMeter.open(tmp_path, sudo=False, interval_ms=250)
    assert meter.command[-4:] == ["--samplers", "cpu_power,gpu_power,ane_power", "-i", "250"]
    assert meter.update_period_s == 0.25
    meter.start()
    deadline = time.monotonic() + 10
    while meter.samples < 2:  # the third sample is complete only when a fourth begins
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert meter.joules() == pytest.approx(5.833 * 0.10234 + 2.262 * 0.10087)
    meter.stop()
    assert meter._proc.poll() is not None
    assert "estimated" in meter.describe()["notes"]


def test_powermetrics_that_dies_fails_the_measurement(tmp_path, monkeypatch):
    fake_powermetrics(tmp_path, """
        import sys
        sys.exit("powermetrics must be invoked as the superuser")
    """)
    monkeypatch.setattr(pm, "_is_macos", lambda: True)
    meter = pm.PowermetricsMeter.open(tmp_path, sudo=False)
    meter.start()
    meter._thread.join(timeout=10)
    with pytest.raises(RuntimeError, match="superuser"):
        meter.joules()
    meter.stop()


# --- NVML ---------------------------------------------------------------------------------------------


def fake_pynvml(energy_mj: list[int], *, init_error: str = "", energy_error: str = "") -> types.ModuleType:
    class NVMLError(Exception):
        pass

    def init():
        if init_error:
            raise NVMLError(init_error)

    def energy(handle):
        assert handle == "gpu0"
        if energy_error:
            raise NVMLError(energy_error)
        return energy_mj[0]

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=init,
        nvmlDeviceGetHandleByIndex=lambda index: f"gpu{index}",
        nvmlDeviceGetName=lambda handle: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetTotalEnergyConsumption=energy,
    )


def test_nvml_reads_the_total_energy_counter(monkeypatch):
    counter = [123_456_789]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(counter))
    meter = NvmlMeter.open(index=0, poll_s=60)
    assert meter.boundary == "gpu-board" and meter.update_period_s == 0.1
    meter.start()
    counter[0] += 2500  # mJ
    assert meter.joules() == pytest.approx(2.5)
    meter.stop()
    assert "H100" in meter.sources()[0]


@pytest.mark.parametrize("module, reason", [
    (None, "not importable"),
    (fake_pynvml([0], init_error="Driver Not Loaded"), "NVML init failed: Driver Not Loaded"),
    (fake_pynvml([0], energy_error="Not Supported"), "Volta"),
])
def test_nvml_unavailable_reasons(monkeypatch, module, reason):
    monkeypatch.setitem(sys.modules, "pynvml", module)
    with pytest.raises(MeterUnavailable, match=reason):
        NvmlMeter.open()


# --- registry and detection ------------------------------------------------------------------------------


def test_registry_and_open_meter(tmp_path):
    assert set(DETECT_ORDER) <= set(METERS)  # every meter detection prefers is registered (not a fixed list)
    with pytest.raises(ValueError, match="unknown meter 'wattmeter'.*android-battery.*rapl"):
        open_meter("wattmeter")
    assert isinstance(open_meter("rapl", tree(tmp_path, LAPTOP), poll_s=60), RaplMeter)


def test_detect_on_an_empty_root_gives_a_reason_per_meter(tmp_path, no_pynvml):
    meter, skipped = detect(tmp_path)
    assert meter is None
    # the preferred meters first, then every other registered one (a meter added later is tried too)
    assert list(skipped)[: len(DETECT_ORDER)] == list(DETECT_ORDER) and set(skipped) == set(METERS)
    assert all(reason for reason in skipped.values())


@pytest.mark.parametrize("name, expected", [(LAPTOP, RaplMeter), (ORIN, JetsonMeter), (PIXEL, AndroidBatteryMeter)])
def test_detect_finds_the_tree_meter(tmp_path, no_pynvml, name, expected):
    meter, skipped = detect(tree(tmp_path, name))
    assert isinstance(meter, expected)
    assert list(skipped) == list(DETECT_ORDER[: DETECT_ORDER.index(meter.name)])


# --- energy windows ----------------------------------------------------------------------------------------


class Load(threading.Thread):
    """A machine drawing ``watts``: advances a RAPL counter file about every millisecond.

    Like hardware, the counter is also brought up to date whenever the meter reads it
    (``sync``): a descheduled thread would otherwise leave it stale by the length of the stall
    on a busy machine, moving energy from one window into the next.
    """

    def __init__(self, counter: Path, watts: float):
        super().__init__(daemon=True)
        self.counter, self.watts = counter, watts
        self.lock = threading.Lock()
        self.energy_uj, self.then = float(read(counter)), time.perf_counter()
        self.done = threading.Event()

    def sync(self):
        with self.lock:
            now = time.perf_counter()
            self.energy_uj += self.watts * (now - self.then) * 1e6
            self.then = now
            write(self.counter, int(self.energy_uj))

    def set_watts(self, watts: float):
        if watts != self.watts:
            self.sync()
            self.watts = watts

    def run(self):
        while not self.done.wait(0.001):
            self.sync()


def test_measure_energy_windows_at_a_known_power(tmp_path):
    root = tree(tmp_path, LAPTOP)
    load = Load(root / "sys/class/powercap/intel-rapl:0/energy_uj", watts=2.0)  # idle
    meter = RaplMeter.open(root, poll_s=0.05, update_period_s=0.01)
    read_file = meter.read_counters
    meter.read_counters = lambda: (load.sync(), read_file())[1]

    def run_once():
        load.set_watts(5.0)  # busy while inferring
        time.sleep(0.005)

    load.start()
    try:
        result = measure_energy(run_once, meter, windows=3, window_s=0.3)
    finally:
        load.done.set()
        load.join()

    assert result["source"] == "measured" and result["meter"] == "rapl" and result["boundary"] == "cpu-package"
    assert result["describe"]["sources"] == meter.sources()
    assert len(result["windows"]) == 3
    for window in result["windows"]:
        assert window["seconds"] >= 0.3 and window["inferences"] >= 1
        # one window may catch a scheduling stall on a busy machine; the medians below are held to 15%
        assert window["joules"] == pytest.approx(5.0 * window["seconds"], rel=0.3)
        assert window["mj_per_inference"] == pytest.approx(1000.0 * window["joules"] / window["inferences"])
    assert result["avg_power_w"] == pytest.approx(5.0, rel=0.15)
    assert result["idle_power_w"] == pytest.approx(2.0, rel=0.15)
    per_inference_s = sorted(w["seconds"] / w["inferences"] for w in result["windows"])[1]
    assert result["mj_per_inference"] == pytest.approx(5000.0 * per_inference_s, rel=0.15)
    assert result["net_mj_per_inference"] == pytest.approx(3000.0 * per_inference_s, rel=0.3)
    assert result["inferences_per_joule"] == pytest.approx(1000.0 / result["mj_per_inference"])


def test_measure_energy_refuses_windows_under_ten_update_periods(tmp_path):
    meter = RaplMeter.open(tree(tmp_path, LAPTOP), update_period_s=0.01)
    with pytest.raises(EnergyRefused, match=r"refused: window_s=0.05 s .* \(0.01 s\): use at least 0.1 s"):
        measure_energy(lambda: None, meter, window_s=0.05)
    with pytest.raises(EnergyRefused, match="idle_s=0.02"):
        measure_energy(lambda: None, meter, window_s=0.5, idle_s=0.02)
    assert meter._thread is None  # refused before the meter started


# --- self-containment ----------------------------------------------------------------------------------------


def test_meters_and_energy_import_only_stdlib_numpy_and_pynvml():
    """edgekd/ondevice is copied to devices that have only Python and numpy."""
    package = Path(__file__).parents[1] / "edgekd" / "ondevice"
    allowed = set(sys.stdlib_module_names) | {"numpy", "pynvml"}
    for path in [package / "energy.py", *sorted((package / "meters").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
