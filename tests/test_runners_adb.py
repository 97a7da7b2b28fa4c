"""The ADB runner: benchmark_model's output in both forms, its command lines, and a run through a fake adb.

No phone is attached here. The fake ``adb`` (a test double written below)
records its arguments and plays a phone: ``push`` copies into a folder that
stands for the phone's filesystem, and ``shell`` hands the command line to a
real ``sh -c`` with the phone's paths mapped into that folder, so the runner's
quoting meets a real shell. The "phone's" benchmark_model prints a fixture from
``tests/fixtures/benchmark_model`` and its battery is three sysfs files.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from edgekd.backends.litert.tool import benchmark_model_args, parse_benchmark_model, parse_memory
from edgekd.records import CompiledArtifact, CompileRecord, Figures, ProfileRecord
from edgekd.report.schema import Report
from edgekd.runners import DeviceFailed, DeviceUnreachable, ProfileJob, runner_for
from edgekd.runners.adb import AdbRunner, battery_energy
from edgekd.runners.base import pin_mask
from edgekd.stages.profile import ProfileStage, result_row
from edgekd.targets import DeviceSpec

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
SETTINGS = {"warmup_s": 0.5, "warmup_runs": 20, "runs": 400, "min_seconds": 1.0, "max_seconds": 30.0, "stability_threshold": 0.05,
            "energy": {"meter": "auto", "windows": 1, "window_s": 1.0}}

FAKE_ADB = r'''#!{python}
"""A fake adb: records argv, plays one phone whose filesystem is $FAKE_ADB_ROOT."""
import json, os, shutil, subprocess, sys
root, args = os.environ["FAKE_ADB_ROOT"], sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:1] != ["-s"] or len(args) < 3:
    sys.exit("fake adb: expected -s SERIAL COMMAND")
serial, command = args[1], args[2:]
state = os.environ.get("FAKE_ADB_STATE", "device")
if state == "missing":
    print(f"error: device '{serial}' not found", file=sys.stderr); sys.exit(1)
if state != "device":
    print(f"error: device {state}", file=sys.stderr); sys.exit(1)
phone = lambda path: root + path if path.startswith("/") else path
if command[0] == "get-state":
    print("device")
elif command[0] == "push":
    os.makedirs(os.path.dirname(phone(command[2])), exist_ok=True)
    shutil.copy(command[1], phone(command[2]))
    print(f"{command[1]}: 1 file pushed")
elif command[0] == "shell":
    line = " ".join(command[1:]).replace("/data/local/tmp", root + "/data/local/tmp").replace("/sys/class", root + "/sys/class")
    sys.exit(subprocess.run(["sh", "-c", line]).returncode)
else:
    sys.exit(f"fake adb: unknown command {command[0]}")
'''

FAKE_BENCHMARK_MODEL = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_BM_ARGV"
sleep "${FAKE_BM_SLEEP:-0}"
cat "$FAKE_BM_OUTPUT"
exit "${FAKE_BM_RC:-0}"
"""


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """The fake adb on a path of its own, a phone root, a battery, and a benchmark_model binary to push."""
    root = tmp_path / "phone"
    (root / "data/local/tmp").mkdir(parents=True)
    battery = root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    for name, value in (("current_now", "-350000"), ("voltage_now", "3850000"), ("status", "Discharging")):
        (battery / name).write_text(value + "\n")
    adb = tmp_path / "bin" / "adb"
    adb.parent.mkdir()
    adb.write_text(FAKE_ADB.replace("{python}", sys.executable))
    adb.chmod(0o755)
    binary = tmp_path / "benchmark_model"
    binary.write_text(FAKE_BENCHMARK_MODEL)
    binary.chmod(0o755)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3 not a real model: the fake benchmark_model never reads it")
    env = {"FAKE_ADB_ROOT": str(root), "FAKE_ADB_LOG": str(tmp_path / "adb.log"), "FAKE_BM_ARGV": str(tmp_path / "bm.argv"),
           "FAKE_BM_OUTPUT": str(FIXTURES / "newer.txt"), "FAKE_BM_SLEEP": "1.2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    class Phone:
        pass

    p = Phone()
    p.root, p.battery, p.adb, p.binary, p.model, p.tmp = root, battery, adb, binary, model, tmp_path
    p.calls = lambda: [json.loads(line) for line in (tmp_path / "adb.log").read_text().splitlines()]
    p.bm_argv = lambda: (tmp_path / "bm.argv").read_text().splitlines()
    p.device = lambda **extra: {"adb": "R5CT10ABCDE", "adb_path": str(adb), "benchmark_model": str(binary), **extra}
    return p


def job_for(model: Path, **extra) -> ProfileJob:
    return ProfileJob(artifact=model, files=[model], backend="litert", precision="int8", options={"threads": 4},
                      data=model, timeout_s=60, settings={**SETTINGS, **extra})


def test_older_statistics_lines_give_mean_std_min_max_and_no_made_up_percentiles():
    lat = parse_benchmark_model((FIXTURES / "older.txt").read_text(), stability_threshold=0.05)
    assert lat["measured_by"] == "benchmark_model" and lat["format"].startswith("older")
    assert (lat["mean"], lat["std"], lat["min"], lat["max"]) == pytest.approx((21.6226, 0.389, 21.334, 24.871))
    assert lat["runs"] == 1000 and lat["warmup_runs"] == 92
    assert lat["load_ms"] == pytest.approx(21.352) and lat["first_inference_ms"] == pytest.approx(31.254)
    assert lat["p50"] is None and lat["p95"] is None and lat["p99"] is None
    assert lat["unknown"] == ["p50", "p90", "p95", "p99", "p50_spread", "stable"]
    # no per-run times, so no block medians: stability unknown, whatever the per-sample CoV (kept as context)
    assert lat["cov"] == pytest.approx(0.389 / 21.6226) and lat["stable"] is None and lat["stability_threshold"] == 0.05
    memory = parse_memory((FIXTURES / "older.txt").read_text())
    assert memory == {"peak_memory_mb": None, "memory_delta_init_mb": 3.47656, "memory_delta_overall_mb": 22.4531}


def test_newer_statistics_lines_add_p5_median_and_p95():
    text = (FIXTURES / "newer.txt").read_text()
    lat = parse_benchmark_model(text, stability_threshold=0.03)
    assert lat["format"].startswith("newer")
    assert (lat["p5"], lat["p50"], lat["p95"], lat["mean"]) == pytest.approx((2.41, 2.48, 2.69, 2.5004))
    assert lat["runs"] == 400 and lat["warmup_runs"] == 187 and lat["warmup_seconds"] == pytest.approx(187 * 2688.7e-6)
    # a CoV of 0.038 above the threshold flags nothing: the threshold is for p50_spread, which the tool cannot give
    assert lat["unknown"] == ["p90", "p99", "p50_spread", "stable"] and lat["stable"] is None
    assert parse_memory(text)["peak_memory_mb"] == pytest.approx(15.3359)
    with pytest.raises(ValueError, match="no benchmark_model statistics"):
        parse_benchmark_model((FIXTURES / "failed.txt").read_text())


def test_command_lines_follow_the_profile_settings_and_pin_with_taskset():
    args = benchmark_model_args("./benchmark_model", "/data/local/tmp/x/m.tflite", {"threads": 4}, SETTINGS, ["--use_gpu=false"])
    assert args == ["./benchmark_model", "--graph=/data/local/tmp/x/m.tflite", "--warmup_runs=20", "--warmup_min_secs=0.5",
                    "--num_runs=400", "--min_secs=1", "--max_secs=30", "--use_xnnpack=true", "--num_threads=4", "--use_gpu=false"]
    assert pin_mask([4, 5, 6, 7]) == "f0" and pin_mask([0]) == "1" and pin_mask([1, 3]) == "a"
    with pytest.raises(ValueError):
        pin_mask([])


def test_a_run_through_adb_pushes_runs_pinned_reads_the_battery_and_cleans_up(phone):
    runner = runner_for(DeviceSpec(**phone.device(pin=[1], tool_args=["--use_gpu=false"])))
    assert isinstance(runner, AdbRunner) and runner.label == "adb:R5CT10ABCDE"
    out = runner.profile(job_for(phone.model))
    assert out["status"] == "ok" and out["measured_by"] == "benchmark_model"
    assert out["latency_ms"]["p50"] == pytest.approx(2.48) and out["peak_memory_mb"] == pytest.approx(15.3359)
    assert out["accuracy"] is None and "cannot score accuracy" in out["accuracy_note"]
    # 0.35 A x 3.85 V while discharging, over the timed runs: 1.3475 W x 2.5004 ms per inference
    energy = out["energy"]
    assert energy["source"] == "measured" and energy["boundary"] == "battery" and energy["meter"] == "android-battery"
    assert energy["avg_power_w"] == pytest.approx(1.3475) and energy["mj_per_inference"] == pytest.approx(1.3475 * 2.5004)
    assert energy["idle_power_w"] == pytest.approx(1.3475) and energy["windows"][0]["readings"] >= 2

    calls = phone.calls()
    assert all(call[:2] == ["-s", "R5CT10ABCDE"] for call in calls)
    assert calls[0][2:] == ["get-state"]
    shells = [c for c in calls if c[2] == "shell"]
    assert all(len(c) == 4 for c in shells)  # one quoted command line each: adb would join several words with spaces
    workdir = shlex.split(shells[0][3])[2]
    assert shlex.split(shells[0][3]) == ["mkdir", "-p", workdir] and workdir.startswith("/data/local/tmp/edgekd-")
    assert [c[3:] for c in calls if c[2] == "push"] == [[str(phone.binary), f"{workdir}/benchmark_model"],
                                                        [str(phone.model), f"{workdir}/model.tflite"]]
    run = shlex.split(shells[2][3])
    assert run[:2] == ["sh", "-c"] and run[3:10] == ["edgekd", workdir, "2", "1", "1", "/sys/class/power_supply/battery", "0.25"]
    assert run[10:] == ["./benchmark_model", f"--graph={workdir}/model.tflite", "--warmup_runs=20", "--warmup_min_secs=0.5",
                       "--num_runs=400", "--min_secs=1", "--max_secs=30", "--use_xnnpack=true", "--num_threads=4", "--use_gpu=false"]
    assert shlex.split(shells[-1][3]) == ["rm", "-rf", workdir]
    assert phone.bm_argv()[0].endswith("/model.tflite") and "--num_threads=4" in phone.bm_argv()
    assert list((phone.root / "data/local/tmp").iterdir()) == []  # nothing left on the phone


def test_pinning_really_runs_under_taskset(phone, tmp_path, monkeypatch):
    """The fake benchmark_model reports the CPUs it may use: pin [1] must leave it only core 1."""
    if len(os.sched_getaffinity(0)) < 2 or 1 not in os.sched_getaffinity(0):
        pytest.skip("needs cores 0 and 1")
    phone.binary.write_text(FAKE_BENCHMARK_MODEL.replace('sleep "${FAKE_BM_SLEEP:-0}"',
                                                         'grep Cpus_allowed_list /proc/self/status > "$FAKE_BM_ARGV.cpus"'))
    monkeypatch.setenv("FAKE_BM_SLEEP", "0")
    runner = runner_for(DeviceSpec(**phone.device(pin=[1])))
    out = runner.profile(job_for(phone.model, energy={"meter": "none", "windows": 0}))
    assert out["status"] == "ok" and out["energy"] is None
    assert Path(os.environ["FAKE_BM_ARGV"] + ".cpus").read_text().split() == ["Cpus_allowed_list:", "1"]


def test_a_charging_phone_gets_no_energy_figure_and_says_why(phone):
    (phone.battery / "status").write_text("Charging\n")
    out = runner_for(DeviceSpec(**phone.device())).profile(job_for(phone.model))
    assert out["status"] == "ok" and out["energy"] is None
    assert "charger" in out["meters_unavailable"]["android-battery"]
    compiled = CompiledArtifact(target="pixel", backend="litert", precision="int8", status="ok", accuracy=0.93,
                                per_class_accuracy=[0.9, 0.96])
    row = result_row(compiled, out, {"model": "tdp-fraction", "tdp_w": 5.0}, "adb:R5CT10ABCDE")
    assert row.energy.source == "estimated" and "charger" in row.energy.meters_unavailable["android-battery"]
    # accuracy comes from the compile check of this artifact, and the row says so
    assert row.accuracy == 0.93 and row.accuracy_source.startswith("build machine")
    assert row.measured_by == "benchmark_model"


def test_names_and_paths_cannot_run_commands_on_the_phone(phone, tmp_path):
    canary = tmp_path / "pwned"
    evil = tmp_path / "m'; touch pwned; echo '$(touch pwned) `touch pwned`.tflite"
    evil.write_bytes(b"TFL3")
    out = runner_for(DeviceSpec(**phone.device(tool_args=[f"--x=$(touch {canary})", f"; touch {canary}"]))).profile(job_for(evil))
    assert out["status"] == "ok"
    assert phone.bm_argv()[0].startswith("--graph=") and phone.bm_argv()[0].endswith("/" + evil.name)
    assert f"--x=$(touch {canary})" in phone.bm_argv() and f"; touch {canary}" in phone.bm_argv()
    assert not canary.exists() and not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("state, retried", [("offline", True), ("missing", True), ("unauthorized", False)])
def test_an_absent_or_unauthorized_phone_is_unreachable(phone, monkeypatch, state, retried):
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    runner = runner_for(DeviceSpec(**phone.device()))
    with pytest.raises(DeviceUnreachable) as caught:
        runner.profile(job_for(phone.model))
    assert caught.value.retry is retried
    compiled = CompiledArtifact(target="pixel", backend="litert", precision="int8", status="ok")
    row = ProfileStage._attempt(runner, job_for(phone.model), compiled, None, 0)
    assert row.status == "unreachable" and "R5CT10ABCDE" in row.reason
    check = runner.check()
    assert check["reachable"] is False


def test_a_failing_benchmark_model_is_a_failed_row_with_its_message(phone, monkeypatch):
    monkeypatch.setenv("FAKE_BM_OUTPUT", str(FIXTURES / "failed.txt"))
    monkeypatch.setenv("FAKE_BM_RC", "1")
    monkeypatch.setenv("FAKE_BM_SLEEP", "0")
    with pytest.raises(DeviceFailed, match="exited 1.*Benchmarking failed"):
        runner_for(DeviceSpec(**phone.device())).profile(job_for(phone.model))
    assert list((phone.root / "data/local/tmp").iterdir()) == []


def test_what_the_adb_runner_cannot_run_is_said_plainly(phone, tmp_path):
    runner = runner_for(DeviceSpec(**phone.device()))
    onnx = ProfileJob(artifact=tmp_path / "m.onnx", files=[], backend="onnxruntime", precision="fp32", options={}, data=tmp_path)
    refused = runner.profile(onnx)
    assert refused["status"] == "not run here" and "onnxruntime does not declare" in refused["reason"]
    assert refused["reason"].endswith("backends that do: litert")  # the backends that declare benchmark_model, by name
    with pytest.raises(DeviceFailed, match="benchmark_model"):
        runner_for(DeviceSpec(adb="R5CT10ABCDE", adb_path=str(phone.adb))).profile(job_for(phone.model))
    check = runner.check()
    assert check["reachable"] is True and check["meters"]["available"] == "android-battery"
    assert check["runtimes"]["litert"]["ok"] is True


def test_battery_readings_outside_the_timed_runs_are_idle():
    lines = ["edgekd-battery 99.75 -100000 4000000 Discharging", "edgekd-battery 100.00 -100000 4000000 Discharging",
             "edgekd-start 100.10",
             *(f"edgekd-battery {101 + i * 0.25:.2f} -500000 4000000 Discharging" for i in range(5)), "edgekd-end 102.20"]
    energy, why = battery_energy("\n".join(lines), {"runs": 400, "mean": 2.5})
    assert why == {} and energy["idle_power_w"] == pytest.approx(0.4) and energy["avg_power_w"] == pytest.approx(2.0)
    assert energy["net_mj_per_inference"] == pytest.approx((2.0 - 0.4) * 2.5)
    one_idle = battery_energy("\n".join(lines[1:]), {"runs": 400, "mean": 2.5})[0]
    assert one_idle["idle_power_w"] is None and one_idle["net_mj_per_inference"] is None  # no span to integrate over
    none, why = battery_energy("edgekd-start 1\nedgekd-end 2", {"runs": 10, "mean": 1.0})
    assert none is None and "no readable" in why["android-battery"]


def test_a_phone_row_reaches_report_json_with_only_what_the_tool_printed():
    """benchmark_model prints no p90/p99: report.json (which validates) carries its p50 and mean, null p90/p99,
    and a p99 budget reports "not measured" and fails while a p50 budget is judged on the phone's number."""
    from edgekd.report.build import build_report

    bench = AdbRunner.result((FIXTURES / "newer.txt").read_text() + "\nedgekd-rc 0\n", {"stability_threshold": 0.05}, energy_on=False)
    compiled = CompiledArtifact(target="pixel-8", backend="litert", precision="int8", status="ok", path="m.tflite",
                                accuracy=0.93, per_class_accuracy=[0.9, 0.96])
    row = result_row(compiled, bench, {"model": "tdp-fraction", "tdp_w": 5.0}, "adb:R5CT10ABCDE")
    assert row.latency_ms.p50 == pytest.approx(2.48) and row.latency_ms.p99 is None
    assert row.latency_ms.measured_by == "benchmark_model"
    figures = Figures(accuracy=0.95, per_class_accuracy=[0.94, 0.96])
    report = build_report(CompileRecord(artifacts=[compiled]), ProfileRecord(artifacts=[row], test_samples=100),
                          figures, figures, ["0", "1"], "t")
    Report.model_validate(report)
    (artifact,) = report["artifacts"]
    assert artifact["status"] == "ok" and artifact["accuracy"] == 0.93
    assert artifact["latency_ms"]["p50"] == pytest.approx(2.48) and artifact["latency_ms"]["p99"] is None
    from edgekd.gate.budgets import BudgetsFile
    from edgekd.gate.check import check_artifact

    checks = {c["budget"]: c for c in check_artifact(artifact, report, BudgetsFile.model_validate(
        {"budgets": [{"target": "*", "max_latency_ms": {"p50": 3.0, "p99": 3.0}}]}))}
    assert checks["max_latency_ms.p50"]["passed"] and not checks["max_latency_ms.p99"]["passed"]
    assert "not measured" in checks["max_latency_ms.p99"]["message"]
    assert artifact["energy"]["source"] == "estimated" and artifact["host"]["runner"] == "adb:R5CT10ABCDE"


def test_phone_energy_is_the_android_meters_arithmetic_on_the_same_readings(tmp_path):
    """The adb runner's battery readings give what AndroidBatteryMeter computes from the same readings of its
    own files: uneven gaps (a late poll) and changing power, where a plain mean of the readings would differ."""
    from edgekd.ondevice.meters.android import AndroidBatteryMeter

    readings = [(200.00, -300000, 3900000), (200.25, -800000, 3880000), (200.50, -350000, 3895000),
                (201.50, -900000, 3870000), (201.75, -400000, 3890000)]  # (uptime, µA, µV); one poll came a second late
    output = "\n".join(["edgekd-start 199.90", *(f"edgekd-battery {t:.2f} {i} {v} Discharging" for t, i, v in readings),
                        "edgekd-end 201.80"])
    energy, why = battery_energy(output, {"runs": 800, "mean": 2.5})
    assert why == {}

    supply = tmp_path / "sys/class/power_supply/battery"
    supply.mkdir(parents=True)
    (supply / "status").write_text("Discharging\n")

    def show(reading):
        t, current, voltage = reading
        (supply / "current_now").write_text(f"{current}\n")
        (supply / "voltage_now").write_text(f"{voltage}\n")
        now[0] = t - 200.0

    now = [0.0]
    show(readings[0])
    meter = AndroidBatteryMeter.open(tmp_path, poll_s=3600)
    meter.clock = lambda: now[0]
    meter.start()
    for reading in readings[1:-1]:
        show(reading)
        meter.joules()
    show(readings[-1])
    meter.stop()
    seconds = readings[-1][0] - readings[0][0]
    assert energy["windows"][0]["joules"] == pytest.approx(meter.joules())
    assert energy["avg_power_w"] == pytest.approx(meter.joules() / seconds)
    assert energy["mj_per_inference"] == pytest.approx(1000.0 * meter.joules() / (seconds / 2.5e-3))
    plain_mean = sum(abs(i) * v * 1e-12 for _, i, v in readings) / len(readings)
    assert abs(energy["avg_power_w"] - plain_mean) > 0.01  # the readings' gaps count, as they do for the meter
    assert energy["describe"]["meter"] == "android-battery" and energy["describe"]["update_period_s"] == 0.25
