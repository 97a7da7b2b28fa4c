"""A meter reading that cannot be right is refused, and the report and the gate say why (issue 16).

Each case runs the device-side benchmark's energy path (``measured_energy``) against a recorded sysfs tree
made wrong in one way, then the profile row and the report built from it, then the gate.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekd.gate.budgets import BudgetsFile
from edgekd.gate.check import evaluate
from edgekd.ondevice.bench import measured_energy
from edgekd.records import CompiledArtifact
from edgekd.report.schema import Report
from edgekd.stages.profile import result_row

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
RAPL_COUNTER = "sys/class/powercap/intel-rapl:0/energy_uj"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
BATTERY = "sys/class/power_supply/battery"
TDP = {"model": "tdp-fraction", "tdp_w": 15.0, "idle_fraction": 0.3, "cores": 2}


def tree(tmp_path: Path, name: str) -> Path:
    shutil.copytree(FIXTURES / name, tmp_path / name, symlinks=True)
    return tmp_path / name


def write(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def infer() -> None:
    time.sleep(0.002)


def bench_result(energy, reasons) -> dict:
    latency = {"p50": 2.0, "p90": 2.1, "p95": 2.2, "p99": 2.5, "mean": 2.0, "runs": 500, "cpu_utilization": 1.0}
    return {"status": "ok", "latency_ms": latency, "accuracy": 0.98, "per_class_accuracy": [0.98, 0.98],
            "energy": energy, "meters_unavailable": reasons, "cpu_utilization": 1.0}


def report_with(energy, reasons, power=None) -> dict:
    """The report.json artifact of one profiled row, checked against the report's schema."""
    row = CompiledArtifact(target="cpu", backend="onnxruntime", precision="fp32", status="ok")
    profiled = result_row(row, bench_result(energy, reasons), power, "local")
    artifact = {"id": profiled.id, "target": "cpu", "backend": "onnxruntime", "precision": "fp32", "path": None,
                "status": "ok", "accuracy": profiled.accuracy, "latency_ms": profiled.latency_ms.to_dict(),
                "energy": None if profiled.energy is None else profiled.energy.to_dict(),
                "accuracy_per_watt": profiled.accuracy_per_watt, "accuracy_per_joule": profiled.accuracy_per_joule}
    figures = {"accuracy": 0.98, "per_class_accuracy": [0.98, 0.98]}
    report = {"edgekd_version": "0", "created": "2026-01-01T00:00:00+00:00", "run": "t", "class_names": ["a", "b"],
              "teacher": figures, "student": figures, "artifacts": [artifact]}
    return Report.model_validate(report).model_dump(mode="json")


def gate(report: dict, **budget) -> dict[str, dict]:
    budgets = BudgetsFile.model_validate({"budgets": [{"target": "*", **budget}]})
    return {c["budget"]: c for c in evaluate(report, budgets)["per_artifact"]["cpu/onnxruntime/fp32"]}


def assert_refused(report: dict, meter: str, reason: str) -> None:
    energy = report["artifacts"][0]["energy"]
    assert energy["status"] == "refused" and energy["mj_per_inference"] is None, energy
    assert energy["reason"].startswith(f"{meter}: refused: ") and reason in energy["reason"], energy["reason"]
    assert report["artifacts"][0]["accuracy_per_watt"] is None  # no figure made from a wrong reading
    checks = gate(report, require_measured_energy=True, max_energy_mj=5.0)
    for check in checks.values():
        assert not check["passed"] and reason in check["message"], check


def test_a_counter_that_never_advances_is_refused(tmp_path):
    root = tree(tmp_path, "rapl-laptop-1socket")  # energy_uj never changes: a VM's frozen counter
    energy, reasons = measured_energy(infer, "rapl", windows=2, window_s=0.05, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), "rapl", "did not advance over the window 1 of 2")


def test_a_window_with_zero_energy_is_refused(tmp_path):
    root = tree(tmp_path, "rapl-laptop-1socket")
    counter, frozen = root / RAPL_COUNTER, threading.Event()  # advances through idle, freezes at the first inference

    def advance():
        value = int(counter.read_text())
        while not frozen.is_set():
            value += 50_000  # 50 mJ every 5 ms: 10 W
            write(counter, value)
            time.sleep(0.005)

    def infer_and_freeze():
        frozen.set()
        infer()

    writer = threading.Thread(target=advance)
    writer.start()
    try:
        energy, reasons = measured_energy(infer_and_freeze, "rapl", windows=3, window_s=0.1, root=root)
    finally:
        frozen.set()
        writer.join()
    assert energy is None
    report = report_with(energy, reasons)
    assert_refused(report, "rapl", "did not advance over the window ")
    assert re.search(r"over the window [123] of 3 \(", report["artifacts"][0]["energy"]["reason"])  # idle advanced


def test_a_negative_energy_delta_is_refused(tmp_path):
    root = tree(tmp_path, "jetson-orin-nano-jp6")
    write(root / ORIN_HWMON / "curr1_input", -972)  # VDD_IN's current with the sign flipped: negative watts
    energy, reasons = measured_energy(infer, "jetson-ina3221", windows=1, window_s=0.5, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), "jetson-ina3221", "energy cannot be negative")


def test_a_window_shorter_than_ten_meter_updates_is_refused(tmp_path):
    root = tree(tmp_path, "rapl-laptop-1socket")
    energy, reasons = measured_energy(infer, "rapl", windows=2, window_s=0.005, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), "rapl", "window_s=0.005 s is shorter than 10x the rapl meter's update period")


def fake_nvml(monkeypatch, counter) -> None:
    """pynvml with one GPU whose total-energy counter (mJ) is ``counter()``."""
    import types

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda index: f"gpu{index}",
        nvmlDeviceGetName=lambda handle: "NVIDIA H200", nvmlDeviceGetTotalEnergyConsumption=lambda handle: counter()))


def fake_powermetrics(tmp_path, monkeypatch, milliwatts: int) -> Path:
    """A powermetrics on a pretend Mac that prints ``milliwatts`` every 100 ms; its root folder."""
    from edgekd.ondevice.meters import powermetrics

    binary = tmp_path / "usr/bin/powermetrics"
    binary.parent.mkdir(parents=True, exist_ok=True)
    sample = ("*** Sampled system activity (Wed Dec  3 10:00:00 2026 +0000) (100.00ms elapsed) ***\\n\\n"
              f"Combined Power (CPU + GPU + ANE): {milliwatts} mW\\n\\n")
    binary.write_text(f"#!{sys.executable}\nimport sys, time\nwhile True:\n"
                      f"    sys.stdout.write('{sample}')\n    sys.stdout.flush()\n    time.sleep(0.1)\n")
    binary.chmod(0o755)
    monkeypatch.setattr(powermetrics, "_is_macos", lambda: True)
    monkeypatch.setattr(powermetrics.os, "geteuid", lambda: 0)  # no sudo in front of the fake binary
    return tmp_path


def meter_root(meter: str, tmp_path: Path, monkeypatch, reading: int) -> Path:
    """Each meter on its recorded sysfs tree (or a fake driver or binary) with its power or counter step at
    ``reading`` (0: a sensor that reads nothing, a counter that does not move); the root to measure from.
    The too-short-window test needs no real reading: the window is refused before the meter is read."""
    if meter == "rapl":  # the recorded counter never moves (a VM's frozen one): reading 0 is all it can be
        return tree(tmp_path, "rapl-laptop-1socket")
    if meter == "jetson-ina3221":
        root = tree(tmp_path, "jetson-orin-nano-jp6")
        write(root / ORIN_HWMON / "curr1_input", reading)
        return root
    if meter == "android-battery":
        root = tree(tmp_path, "android-pixel")
        write(root / BATTERY / "current_now", -reading)  # discharging current is negative on this phone
        return root
    if meter == "nvml":
        ticks = iter(range(0, 10**9, max(reading, 0) or 1))
        fake_nvml(monkeypatch, (lambda: next(ticks)) if reading else (lambda: 987_654_321))
        return tmp_path  # NVML reads no files
    return fake_powermetrics(tmp_path, monkeypatch, reading)


METERS = ["rapl", "jetson-ina3221", "android-battery", "nvml", "powermetrics"]


@pytest.mark.parametrize("meter", METERS)
def test_every_meter_refuses_a_window_shorter_than_ten_of_its_updates(tmp_path, monkeypatch, meter):
    root = meter_root(meter, tmp_path, monkeypatch, reading=500)
    energy, reasons = measured_energy(infer, meter, windows=2, window_s=0.0005, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), meter, f"window_s=0.0005 s is shorter than 10x the {meter} meter's update period")


@pytest.mark.parametrize("meter", METERS)
def test_every_meter_refuses_a_reading_that_does_not_move(tmp_path, monkeypatch, meter):
    """A counter frozen (RAPL, NVML) or a power sensor that reads zero throughout (an INA3221 rail, a battery's
    current, powermetrics' samples): no energy went through the window, so the figure is refused, never 0 mJ."""
    root = meter_root(meter, tmp_path, monkeypatch, reading=0)
    window_s = 2.5 if meter == "android-battery" else 1.0  # ten of the fuel gauge's 0.25 s updates
    energy, reasons = measured_energy(infer, meter, windows=1, window_s=window_s, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), meter, "did not advance over the window 1 of 1")


@pytest.mark.parametrize("meter", ["android-battery", "auto"])
def test_a_charging_phone_is_refused(tmp_path, meter, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # auto tries NVML first: a GPU here must not answer for the phone
    root = tree(tmp_path, "android-pixel")
    write(root / BATTERY / "status", "Charging")  # the charger, not the battery, powers the phone
    energy, reasons = measured_energy(infer, meter, windows=1, window_s=0.5, root=root)
    assert energy is None
    assert_refused(report_with(energy, reasons), "android-battery", "battery status is 'Charging'")


def test_summing_jetson_sub_rails_into_the_total_rail_is_refused(tmp_path):
    root = tree(tmp_path, "jetson-orin-nano-jp6")  # VDD_IN is the module's input: it holds the other rails
    energy, reasons = measured_energy(infer, "jetson-ina3221", windows=1, window_s=0.5, root=root, rail="all")
    assert energy is None
    assert_refused(report_with(energy, reasons), "jetson-ina3221", "would add the sub-rails to VDD_IN")


def test_a_refused_reading_falls_back_to_the_power_model_and_says_why(tmp_path):
    root = tree(tmp_path, "rapl-laptop-1socket")
    energy, reasons = measured_energy(infer, "rapl", windows=2, window_s=0.05, root=root)
    report = report_with(energy, reasons, power=TDP)
    energy = report["artifacts"][0]["energy"]
    assert energy["status"] == "estimated" and energy["measurement_method"] == "model-estimate"
    assert energy["mj_per_inference"] == pytest.approx(15.0 * 2.0 * (0.3 + 0.7 * 0.5))  # W x ms, half of 2 cores busy
    assert "rapl: refused: " in energy["reason"]
    (check,) = gate(report, require_measured_energy=True).values()
    assert not check["passed"] and "energy is estimated" in check["message"] and "did not advance" in check["message"]


def test_a_measured_figure_records_how_it_was_taken(tmp_path):
    root = tree(tmp_path, "jetson-orin-nano-jp6")  # a constant 4.92 W on VDD_IN
    energy, reasons = measured_energy(infer, "jetson-ina3221", windows=2, window_s=0.5, min_duration_s=1.4, root=root)
    energy = report_with(energy, reasons)["artifacts"][0]["energy"]
    assert energy["status"] == "measured" and energy["measurement_method"] == "ina3221-rail"
    assert energy["boundary"] == "module-input-rail" and energy["sampling_interval_s"] == pytest.approx(0.05)
    assert energy["window_s"] == pytest.approx(0.7) and energy["window_count"] == 2  # stretched to min_duration_s
    assert energy["duration_s"] >= 1.4 and energy["idle_s"] >= 0.7 and energy["idle_subtracted"] is False
    assert energy["inferences"] == sum(w["inferences"] for w in energy["windows"])
    assert energy["avg_power_w"] == pytest.approx(5.064 * 0.972, rel=1e-3)
    assert abs(energy["net_mj_per_inference"]) < 1e-3 * energy["mj_per_inference"]  # idle and busy draw the same


def test_a_power_gated_rail_may_idle_at_zero_but_not_work_at_zero(tmp_path):
    root = tree(tmp_path, "jetson-orin-nano-jp6")
    current = root / ORIN_HWMON / "curr1_input"
    write(current, 0)  # the rail is off until the model runs

    def busy():
        write(current, 972)
        infer()

    energy, reasons = measured_energy(busy, "jetson-ina3221", windows=1, window_s=0.5, root=root)
    assert energy is not None and energy["idle_power_w"] == 0.0 and energy["mj_per_inference"] > 0, reasons
    write(current, 0)
    energy, reasons = measured_energy(infer, "jetson-ina3221", windows=1, window_s=0.5, root=root)
    assert energy is None and "did not advance over the window 1 of 1" in reasons["jetson-ina3221"]


def test_a_stuck_phone_gauge_is_refused_on_the_adb_path():
    from edgekd.runners.adb import battery_energy, parse_battery

    readings = "\n".join(f"edgekd-battery {t:.2f} 0 3850000 Discharging" for t in (0.0, 0.25, 0.5, 0.75, 1.0))
    output = f"edgekd-start 0.4\n{readings}\nedgekd-end 1.0\n"
    assert len(parse_battery(output)[0]) == 5
    energy, reasons = battery_energy(output, {"runs": 100, "mean": 5.0})
    assert energy is None and reasons["android-battery"].startswith("refused: the android-battery reading did not advance")


def test_too_few_phone_gauge_readings_during_the_runs_are_refused_on_the_adb_path():
    """One fuel-gauge reading inside the timed runs spans no time: no energy can be made of it."""
    from edgekd.runners.adb import battery_energy

    readings = "\n".join(f"edgekd-battery {t:.2f} -250000 3850000 Discharging" for t in (0.0, 0.25, 0.5, 0.95))
    energy, reasons = battery_energy(f"edgekd-start 0.9\n{readings}\nedgekd-end 1.0\n", {"runs": 20, "mean": 5.0})
    assert energy is None
    assert reasons["android-battery"] == ("refused: 1 battery reading(s) during the timed runs; raise the energy windows "
                                          "(profile.energy) so the runs last several 0.25 s polls")
