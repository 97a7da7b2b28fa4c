"""The SSH runner against real OpenSSH servers on loopback, each one a Linux "edge device".

Each server is Debian's ``sshd`` started here with a host key and a client key
generated for the run, its own known_hosts entry and its own TMPDIR (so we can
see that every run cleans up after itself). The device's Python is this venv's,
so the same onnxruntime and openvino run "there". Skipped, with the reason, only
when ``/usr/sbin/sshd`` is missing (``.ci/system-deps.sh`` installs it).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import edgekd
from edgekd.backends.openvino.tool import parse_benchmark_app
from edgekd.backends.tensorrt.tool import parse_trtexec
from edgekd.cli import app
from edgekd.records import ProfiledArtifact
from edgekd.runners import HostKeyRefused, ProfileJob, runner_for
from edgekd.runners.ssh import SshRunner, parse_address, remote_command, ssh_command
from edgekd.stages.profile import ProfileStage
from edgekd.targets import DeviceSpec

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(not SSHD.is_file() or not shutil.which("ssh"),
                                reason="needs openssh-server (/usr/sbin/sshd) and openssh-client; .ci/system-deps.sh installs them")

QUICK = {"warmup_s": 0.2, "warmup_runs": 5, "runs": 200, "min_seconds": 0.3, "repeats": 1, "energy": {"meter": "none"}}
ARTIFACTS = [{"backend": "onnxruntime", "precisions": ["fp32", "int8"], "options": {"threads": 1}},
             {"backend": "openvino", "precisions": ["fp32"], "options": {"threads": 1, "inference_precision": "f32"}}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd forks a process per connection, in its own session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Server:
    """One sshd on 127.0.0.1:port; ``stop()`` kills it and every session it started, as a device losing power."""

    def __init__(self, root: Path, keys: Path) -> None:
        self.root, self.keys, self.port = root, keys, free_port()
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {keys / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password",
            f"SetEnv TMPDIR={self.tmp}", "LogLevel VERBOSE", ""]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 15 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def sessions(self) -> list[str]:
        """Command lines of the processes this server's sessions are running."""
        lines = []
        for pid in descendants(self.proc.pid) if self.proc else []:
            try:
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
        return lines

    def device(self, known_hosts: Path | None = None, **extra) -> dict:
        return {"ssh": f"{getpass.getuser()}@127.0.0.1:{self.port}", "python": sys.executable,
                "identity_file": str(self.keys / "client_key"), "known_hosts": str(known_hosts or self.keys / "known_hosts"),
                "connect_timeout_s": 5, **extra}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ssh-keys")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgekd-test-{name}", "-f", str(root / name)], check=True)
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    (root / "known_hosts").write_text("")
    (root / "empty_known_hosts").write_text("")
    try:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
    except OSError as error:
        pytest.skip(f"sshd needs /run/sshd, which cannot be created here ({error}); .ci/system-deps.sh creates it")
    return root


@pytest.fixture(scope="module")
def servers(keys, tmp_path_factory):
    started = [Server(tmp_path_factory.mktemp(f"sshd-{name}"), keys).start() for name in ("a", "b")]
    host_key = (keys / "host_key.pub").read_text().split()
    with (keys / "known_hosts").open("a") as known:
        for server in started:
            known.write(f"[127.0.0.1]:{server.port} {host_key[0]} {host_key[1]}\n")
    yield started
    for server in started:
        server.stop()


def leftovers(server: Server) -> list[str]:
    """Run directories left on the device (onnxruntime itself leaves a .ses telemetry file in TMPDIR: not ours)."""
    return [p.name for p in server.tmp.glob("edgekd.*")]


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def target(tmp: Path, name: str, device: dict | None) -> str:
    data = {"name": name, "artifacts": ARTIFACTS, "power": {"model": "tdp-fraction", "tdp_w": 10.0, "cores": 2}}
    if device:
        data["device"] = device
    return str(write_yaml(tmp / f"{name}.yaml", data))


@pytest.fixture(scope="module")
def fleet(pretrained_config, servers, tmp_path_factory):
    """One tiny pipeline whose artifacts are profiled here and on both loopback devices, concurrently."""
    a, b = servers
    tmp = tmp_path_factory.mktemp("fleet")
    cfg = pretrained_config({
        "prune": {"enabled": False}, "quantize": {"mode": "ptq", "calibration_size": 64},
        "targets": [target(tmp, "here", None), target(tmp, "dev-a", a.device(retries=1)), target(tmp, "dev-b", b.device())],
        "profile": {**QUICK, "samples": 200},
    })
    spans: dict[str, list[tuple[float, float]]] = {}
    original = SshRunner.profile

    def timed(self, job):
        started = time.perf_counter()
        try:
            return original(self, job)
        finally:
            spans.setdefault(self.label, []).append((started, time.perf_counter()))

    SshRunner.profile = timed
    try:
        result = edgekd.run(write_yaml(tmp / "pipeline.yaml", cfg), tmp / "run")
    finally:
        SshRunner.profile = original
    return result, cfg, tmp, spans


def rows(result, target_name: str) -> dict[str, ProfiledArtifact]:
    return {f"{r.backend}/{r.precision}": r for r in result["profile"].artifacts if r.target == target_name}


def measured(block) -> set[str]:
    """The fields a row or block carries (null ones left out): the form of what was measured."""
    return set(block.model_dump(exclude_none=True))


@pytest.mark.slow  # the two-device SSH fleet (a pipeline run and two sshd: ~90 s to set up); CI runs it in make test-slow
def test_two_devices_at_once_give_the_local_run_in_form_and_accuracy(fleet, servers):
    result, _, _, spans = fleet
    here, a, b = rows(result, "here"), rows(result, "dev-a"), rows(result, "dev-b")
    assert set(here) == set(a) == set(b) == {"onnxruntime/fp32", "onnxruntime/int8", "openvino/fp32"}
    for name, local in here.items():
        assert local.status == "ok", local.reason
        for remote, server in ((a[name], servers[0]), (b[name], servers[1])):
            assert remote.status == "ok", remote.reason
            # the native tool beside edgekd's benchmark runs on this machine only (latency_ms.native)
            assert measured(remote) == measured(local) and measured(remote.latency_ms) == measured(local.latency_ms) - {"native"}
            assert measured(remote.host) == measured(local.host)
            assert remote.host.runner == f"ssh:{getpass.getuser()}@127.0.0.1:{server.port}"
            assert remote.accuracy_source == local.accuracy_source == "device"
            # the device scored the same test slice in the same runtime: same accuracy, same logits
            assert remote.samples == local.samples == 200
            assert remote.accuracy == local.accuracy and remote.per_class_accuracy == local.per_class_accuracy
            assert remote.logits_sha256 == local.logits_sha256
            assert remote.latency_ms.runs >= QUICK["runs"] and remote.latency_ms.p50 > 0
    # the two devices ran at the same time: their benchmark intervals overlap
    (span_a, span_b) = (spans[f"ssh:{getpass.getuser()}@127.0.0.1:{s.port}"] for s in servers)
    assert max(s for s, _ in span_a) < max(e for _, e in span_b) and max(s for s, _ in span_b) < max(e for _, e in span_a)
    overlap = min(span_a[-1][1], span_b[-1][1]) - max(span_a[0][0], span_b[0][0])
    assert overlap > 0, (span_a, span_b)
    # report.json holds the device rows in the local rows' form, and every run removed its directory
    ids = {x["id"]: x for x in json.loads((result.run_dir / "report.json").read_text())["artifacts"]}
    assert ids["dev-a/onnxruntime/int8"]["host"]["runner"].startswith("ssh:") and ids["dev-b/openvino/fp32"]["status"] == "ok"
    for server in servers:
        assert leftovers(server) == []


@pytest.mark.slow  # the two-device SSH fleet (a pipeline run and two sshd: ~90 s to set up); CI runs it in make test-slow
def test_a_device_stopped_mid_run_is_unreachable_and_the_other_finishes(fleet, servers):
    result, cfg, tmp, _ = fleet
    a, b = servers
    slow = {**cfg, "profile": {**cfg["profile"], "min_seconds": 4.0}}  # long enough to stop a device in the middle
    killed = threading.Event()

    def stop_a_once_it_benchmarks():
        deadline = time.time() + 120
        while time.time() < deadline and not killed.is_set():
            if any("edgekd_ondevice.ondevice.bench" in line for line in a.sessions()):
                time.sleep(0.5)
                a.stop()
                killed.set()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_a_once_it_benchmarks, daemon=True)
    watcher.start()
    try:
        started = time.perf_counter()
        second = edgekd.run(write_yaml(tmp / "slow.yaml", slow), result.run_dir, stages=["profile"], force="profile")
        seconds = time.perf_counter() - started
    finally:
        watcher.join(timeout=5)
        a.start()  # back for the other tests
    assert killed.is_set(), "device a was never seen benchmarking"
    on_a, on_b = rows(second, "dev-a"), rows(second, "dev-b")
    assert {r.status for r in on_a.values()} == {"unreachable"}, on_a
    first = on_a["onnxruntime/fp32"]
    assert "closed" in first.reason or "refused" in first.reason or "reset" in first.reason, first.reason
    assert "after 2 attempts" in first.reason  # dev-a has retries: 1, and the retry found nothing listening
    assert all(r.reason.startswith("not tried:") for k, r in on_a.items() if k != "onnxruntime/fp32")
    assert {r.status for r in on_b.values()} == {"ok"} and {r.status for r in rows(second, "here").values()} == {"ok"}
    assert second["profile"].counts() == {"ok": 6, "failed": 0, "not run here": 0, "unreachable": 3}
    report = {x["id"]: x for x in second.report["artifacts"]}
    assert report["dev-a/openvino/fp32"]["status"] == "failed" and "unreachable" in report["dev-a/openvino/fp32"]["reason"]
    print(f"profile with one device stopped: {seconds:.1f}s")


@pytest.mark.slow  # the two-device SSH fleet (a pipeline run and two sshd: ~90 s to set up); CI runs it in make test-slow
def test_an_unknown_or_changed_host_key_is_refused_and_not_retried(fleet, servers, keys, tmp_path):
    result, _, _, _ = fleet
    row = next(r for r in result["compile"].artifacts if r.id == "dev-b/onnxruntime/fp32")
    path = result.run_dir / row.path
    job = ProfileJob(artifact=path, files=[path], backend="onnxruntime", precision="fp32", options={}, data=path, timeout_s=60)
    server = servers[1]
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    changed = tmp_path / "changed_known_hosts"
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    changed.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
    for known_hosts, words in ((keys / "empty_known_hosts", "host key"), (changed, "host key")):
        runner = SshRunner(server.device()["ssh"], server.device(known_hosts=known_hosts))
        calls = []
        original = runner.profile
        runner.profile = lambda job: calls.append(1) or original(job)  # noqa: E731
        with pytest.raises(HostKeyRefused, match=words):
            original(job)
        row_out = ProfileStage._attempt(runner, job, row, None, retries=3)
        assert row_out.status == "unreachable" and "host key refused" in row_out.reason
        assert len(calls) == 1  # a security refusal is not retried
    assert leftovers(server) == []  # nothing reached the device


@pytest.mark.slow  # the two-device SSH fleet (a pipeline run and two sshd: ~90 s to set up); CI runs it in make test-slow
def test_names_paths_and_options_cannot_run_commands_on_the_device(fleet, servers, tmp_path):
    result, _, _, _ = fleet
    server = servers[1]
    canary = Path.home() / f"edgekd-pwned-{server.port}"  # what an injected `cd; touch ...` would create
    name = canary.name
    row = next(r for r in result["compile"].artifacts if r.id == "dev-b/onnxruntime/fp32")
    evil = tmp_path / f"m'; cd; touch {name}; echo '$(cd; touch {name}) `cd; touch {name}`.onnx"
    shutil.copy(result.run_dir / row.path, evil)
    data = result.run_dir / "profile" / "test.npz"
    job = ProfileJob(artifact=evil, files=[evil], backend="onnxruntime", precision="fp32",
                     options={"threads": 1, "note": f"$(cd; touch {name})"}, data=data, timeout_s=120,
                     bench_args=["--warmup-s", "0", "--warmup-runs", "2", "--runs", "20", "--min-seconds", "0", "--meter", "none"])
    runner = SshRunner(server.device()["ssh"], server.device())
    out = runner.profile(job)
    assert out["status"] == "ok" and out["samples"] == 200
    words = [f"$(cd; touch {name})", f"; cd; touch {name}", f"`cd; touch {name}`", "&& reboot", "'\"", "*"]
    echoed, _, _ = runner.run(["echo", *words], [], None, 30)
    assert " ".join(words) in echoed
    assert not canary.exists()
    assert "StrictHostKeyChecking=yes" in ssh_command("h", {}, "true") and "--" in ssh_command("h", {}, "true")
    assert "'$(touch x)'" in remote_command(5, ["$(touch x)"])


def test_devices_check_tells_reachability_runtimes_and_meters(servers, keys, tmp_path):
    a, b = servers
    refused = {**b.device(known_hosts=keys / "empty_known_hosts")}
    down_port = free_port()
    targets = [target(tmp_path, "dev-a", a.device()), target(tmp_path, "dev-refused", refused),
               target(tmp_path, "dev-down", {**a.device(), "ssh": f"root@127.0.0.1:{down_port}"})]
    outcome = CliRunner().invoke(app, ["devices", "check", "--targets", ",".join(targets), "--json"])
    assert outcome.exit_code == 0, outcome.output
    checks = {c["target"]: c for c in json.loads(outcome.stdout)}
    assert checks["dev-a"]["reachable"] is True
    assert checks["dev-a"]["runtimes"]["onnxruntime"]["ok"] and checks["dev-a"]["runtimes"]["openvino"]["ok"]
    assert checks["dev-a"]["runtimes"]["coreml"]["ok"] is False
    assert set(checks["dev-a"]["meters"]["unavailable"]) >= {"rapl", "nvml", "android-battery"}
    assert checks["dev-a"]["python"] == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert checks["dev-refused"]["reachable"] is False and "host key refused" in checks["dev-refused"]["reason"]
    assert checks["dev-down"]["reachable"] is False and "refused" in checks["dev-down"]["reason"].lower()
    table = CliRunner().invoke(app, ["devices", "check", "--targets", targets[0]], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "dev-a" in table.output and "onnxruntime" in table.output


def openvino_on_dev_b(fleet):
    """The fleet run, the venv's benchmark_app, and dev-b's OpenVINO FP32 row and IR (skips without benchmark_app)."""
    result = fleet[0]
    tool = Path(sys.executable).parent / "benchmark_app"
    if not tool.is_file():
        pytest.skip("openvino's benchmark_app is not installed in this environment (it ships in the openvino wheel)")
    row = next(r for r in result["compile"].artifacts if r.target == "dev-b" and r.backend == "openvino")
    return result, tool, row, result.run_dir / row.path


@pytest.mark.slow  # the two-device SSH fleet (a pipeline run and two sshd: ~90 s to set up); CI runs it in make test-slow
def test_benchmark_app_on_the_device_instead_of_the_python_benchmark(fleet, servers):
    """``device.tool``: OpenVINO's own benchmark_app (the venv's) times the artifact on the device; its output is parsed."""
    result, tool, row, path = openvino_on_dev_b(fleet)
    server = servers[1]
    spec = DeviceSpec(**server.device(tool="benchmark_app", tool_path=str(tool)))
    runner = runner_for(spec)
    job = ProfileJob(artifact=path, files=[path, path.with_suffix(".bin")], backend="openvino", precision="fp32",
                     options={"threads": 1}, data=path, timeout_s=120, settings={**QUICK, "runs": 50, "stability_threshold": 0.05})
    out = ProfileStage._attempt(runner, job, row, {"model": "tdp-fraction", "tdp_w": 10.0}, retries=0)
    assert out.status == "ok", out.reason
    lat = out.latency_ms
    assert out.measured_by == "benchmark_app" and lat.measured_by == "benchmark_app"
    assert lat.runs >= 50 and 0 < lat.min <= lat.p50 <= lat.max and lat.min <= lat.mean <= lat.max
    assert lat.load_ms > 0 and lat.first_inference_ms > 0
    assert {"p90", "p95", "p99", "std"} <= set(lat.unknown) and lat.p99 is None  # nothing is made up
    assert out.accuracy == row.accuracy and out.accuracy_source.startswith("build machine")
    assert leftovers(server) == []


TRTEXEC = """\
[11/29/2025-10:00:00] [I] Engine loaded in 0.0123 sec.
[11/29/2025-10:00:03] [I] Timing trace has 1000 queries over 3.00123 s
[11/29/2025-10:00:03] [I] === Performance summary ===
[11/29/2025-10:00:03] [I] Throughput: 1601.2 qps
[11/29/2025-10:00:03] [I] Latency: min = 0.58 ms, max = 1.2 ms, mean = 0.62 ms, median = 0.61 ms, percentile(90%) = 0.64 ms, percentile(95%) = 0.66 ms, percentile(99%) = 0.9 ms
[11/29/2025-10:00:03] [I] Enqueue Time: min = 0.01 ms, max = 0.05 ms, mean = 0.02 ms, median = 0.02 ms, percentile(90%) = 0.03 ms, percentile(95%) = 0.03 ms, percentile(99%) = 0.04 ms
[11/29/2025-10:00:03] [I] H2D Latency: min = 0.01 ms, max = 0.02 ms, mean = 0.011 ms, median = 0.011 ms, percentile(90%) = 0.012 ms, percentile(95%) = 0.013 ms, percentile(99%) = 0.015 ms
[11/29/2025-10:00:03] [I] GPU Compute Time: min = 0.5 ms, max = 1.1 ms, mean = 0.55 ms, median = 0.54 ms, percentile(90%) = 0.57 ms, percentile(95%) = 0.59 ms, percentile(99%) = 0.8 ms
&&&& PASSED TensorRT.trtexec [TensorRT v8602] # trtexec --loadEngine=files/model.engine
"""

BENCHMARK_APP_US = """\
[ INFO ] Read model took 8.50 ms
[ INFO ] Compile model took 41.00 ms
[ INFO ] First inference took 1.20 ms
[ INFO ] Count:            5000 iterations
[ INFO ] Duration:         2001.00 ms
[ INFO ] Latency:
[ INFO ]    99 percentile:     612.40 us
[ INFO ]    Average:       398.10 us
[ INFO ]    Min:           350.00 us
[ INFO ]    Max:           1500.20 us
[ INFO ] Throughput:   2498.75 FPS
"""


def test_trtexec_and_benchmark_app_outputs_are_parsed_without_inventing_numbers():
    trt = parse_trtexec(TRTEXEC, 0.1)
    assert (trt["p50"], trt["p90"], trt["p95"], trt["p99"], trt["mean"]) == (0.61, 0.64, 0.66, 0.9, 0.62)  # Latency, not GPU compute
    assert trt["runs"] == 1000 and trt["load_ms"] == pytest.approx(12.3) and trt["std"] is None and trt["stable"] is None
    assert trt["unknown"] == ["std", "cov", "p50_spread", "warmup_runs", "warmup_seconds", "first_inference_ms", "stable"]
    with pytest.raises(ValueError, match="Latency"):
        parse_trtexec(TRTEXEC.replace("PASSED", "FAILED"))
    app_ = parse_benchmark_app(BENCHMARK_APP_US)
    assert app_["p99"] == pytest.approx(0.6124) and app_["mean"] == pytest.approx(0.3981) and app_["p50"] is None
    assert app_["runs"] == 5000 and app_["load_ms"] == pytest.approx(49.5) and app_["first_inference_ms"] == 1.2


@pytest.mark.parametrize("address, expected", [
    ("pi@raspberrypi.local", ("pi@raspberrypi.local", None)),
    ("pi@10.0.0.5:2222", ("pi@10.0.0.5", "2222")),
    ("jetson", ("jetson", None)),
    ("root@[fe80::1]:22", ("root@fe80::1", "22")),
    ("root@fe80::1", ("root@fe80::1", None)),
])
def test_ssh_addresses(address, expected):
    assert parse_address(address) == expected


def test_device_specs_refuse_unchecked_host_keys_and_option_like_addresses():
    with pytest.raises(ValueError):
        DeviceSpec(ssh="pi@x", host_key_checking="no")
    with pytest.raises(ValueError):
        DeviceSpec(ssh="-oProxyCommand=touch /tmp/x")
    with pytest.raises(ValueError):
        DeviceSpec(adb="emulator-5554 ; reboot")
    with pytest.raises(ValueError, match="port"):
        parse_address("pi@host:22;reboot")


@pytest.mark.slow  # the two-device SSH fleet, as the test above
def test_benchmark_app_on_the_device_beside_the_python_benchmark(fleet, servers):
    """``device.tool_as: beside``: edgekd's benchmark gives the gated figures (and the accuracy on the device), then
    the device's benchmark_app times the same artifact on the same pinned core; its median and the ratio stay beside."""
    result, tool, row, path = openvino_on_dev_b(fleet)
    server = servers[1]
    spec = DeviceSpec(**server.device(tool="benchmark_app", tool_path=str(tool), tool_as="beside", pin=[0]))
    data = result.run_dir / "profile" / "test.npz"
    job = ProfileJob(artifact=path, files=[path, path.with_suffix(".bin")], backend="openvino", precision="fp32",
                     options={"threads": 1}, data=data, timeout_s=120,
                     settings={**QUICK, "runs": 50, "stability_threshold": 0.05}, bench_args=["--runs", "50", "--min-seconds", "0.2",
                                                                                      "--warmup-s", "0.2", "--meter", "none"])
    out = ProfileStage._attempt(runner_for(spec), job, row, None, retries=0)
    assert out.status == "ok", out.reason
    lat = out.latency_ms
    assert out.measured_by == "edgekd.ondevice.bench" and lat.clock.startswith("InferRequest.latency")
    assert out.accuracy_source == "device" and out.accuracy == pytest.approx(row.accuracy, abs=0.02)
    native = lat.native
    assert native.tool == "benchmark_app" and native.status == "ok" and native.p50 > 0, native
    assert native.p50_ratio == pytest.approx(lat.p50 / native.p50)
    assert native.command.startswith("taskset -c 0 ") and "-nthreads 1" in native.command
    ort = next(r for r in result["compile"].artifacts if r.target == "dev-b" and r.backend == "onnxruntime")
    ort_path = result.run_dir / ort.path
    other = ProfileStage._attempt(runner_for(spec), replace(job, artifact=ort_path, files=[ort_path], backend="onnxruntime"),
                                  ort, None, retries=0)
    assert other.status == "ok" and other.latency_ms.native is None  # benchmark_app is not ONNX Runtime's tool
    assert leftovers(server) == []


def test_tool_beside_without_a_tool_is_a_config_error():
    with pytest.raises(ValueError, match="tool_as: beside .* set device.tool"):
        DeviceSpec(ssh="pi@raspberrypi", tool_as="beside")
    with pytest.raises(ValueError, match="tool_as"):
        DeviceSpec(ssh="pi@raspberrypi", tool="benchmark_app", tool_as="instead")
