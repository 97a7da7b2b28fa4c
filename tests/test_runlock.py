"""One edgekd run per run folder (edgekd.runlock): a second run refuses naming the holder, or waits with --wait;
a lock left by a killed run is taken over with a message; a killed run's temporary files are removed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import edgekd
from edgekd.runlock import LOCK_FILE, SCRATCH, RunLock, RunLocked, remove_leftovers, run_lock

ENV = {**os.environ, "COLUMNS": "1000"}  # messages on one line


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", *map(str, args)]


def flat(text: str) -> str:
    return " ".join(text.split())


def holder_pid(run_dir: Path) -> int | None:
    """The pid the lock file names, once its holder has written it."""
    try:
        return yaml.safe_load((run_dir / LOCK_FILE).read_text())["pid"]
    except (FileNotFoundError, TypeError, KeyError, yaml.YAMLError):
        return None


def start_holder(config_path: Path, run_dir: Path) -> subprocess.Popen:
    """`edgekd distill` into ``run_dir``, returned once it holds the run folder's lock."""
    proc = subprocess.Popen(cli("distill", config_path, "--out", run_dir), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while holder_pid(run_dir) != proc.pid:
        assert proc.poll() is None, f"edgekd distill exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the run did not take the lock within 180 s"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait(timeout=60)


@pytest.fixture
def distill_config(pretrained_config, tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(pretrained_config(), sort_keys=False))
    return path


# ---------------------------------------------------------------- in one process


def test_lock_names_its_holder_and_is_removed_on_release(tmp_path):
    run_dir = tmp_path / "run"
    with run_lock(run_dir) as lock:
        assert holder_pid(run_dir) == os.getpid() and isinstance(lock, RunLock)
        with pytest.raises(RunLocked) as refused:  # a second open file description: flock refuses it too
            RunLock(run_dir).acquire()
        message = flat(str(refused.value))
        assert f"pid {os.getpid()}" in message and "started " in message and "--wait" in message, message
        assert str(run_dir) in message
    assert not (run_dir / LOCK_FILE).exists()


def test_leftovers_are_removed_but_nothing_else(tmp_path):
    run = tmp_path / "run"
    leftovers = [run / SCRATCH / "edgekd-bench-x" / "result.json", run / "export" / ".student_fp32.onnx.1a2b3c4d.part",
                 run / "export" / ".student_int8_qdq.onnx.unverified", run / "compile" / ".m.mlpackage.ab_c12xz.part" / "f"]
    kept = [run / "export" / "student_fp32.onnx", run / "export" / "student.onnx.failed", run / "notes.part",
            run / "distill" / "stage.json"]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    remove_leftovers(run)
    assert [p for p in leftovers if p.exists()] == [] and not (run / SCRATCH).exists()
    assert not (run / "compile" / ".m.mlpackage.ab_c12xz.part").exists()
    assert all(p.exists() for p in kept)


# ---------------------------------------------------------------- two edgekd runs into one folder


def test_second_run_refuses_naming_the_holder_or_waits_with_wait(distill_config, pretrained_config, tmp_path):
    run_dir = tmp_path / "run"
    first = start_holder(distill_config, run_dir)
    waiter = None
    try:
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock, deterministically, for as long as the test needs
        second = subprocess.run(cli("run", distill_config, "--out", run_dir), env=ENV, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr[-3000:]
        err = flat(second.stderr)
        assert f"pid {first.pid}" in err and "--wait" in err and "edgekd distill" in err and str(run_dir) in err, err
        assert "Traceback" not in second.stderr
        with pytest.raises(RunLocked, match=f"pid {first.pid}"):  # the same from Python
            edgekd.run(pretrained_config(), run_dir, stages=["distill"])

        waiter = subprocess.Popen(cli("distill", distill_config, "--out", run_dir, "--wait"), env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        said = ""
        while "waiting for it to finish" not in said:  # blocks until the waiter says it waits (or ends)
            line = waiter.stderr.readline()
            assert line, f"the waiter ended without saying it waits: {said[-3000:]}"
            said += line
        assert f"pid {first.pid}" in flat(said), said
        assert waiter.poll() is None
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
        rest = waiter.stderr.read()
        assert waiter.wait(timeout=300) == 0, rest[-3000:]
    finally:
        stop(first)
        if waiter is not None:
            stop(waiter)
    assert "waiting" not in rest  # said once
    assert "teacher: cached" in rest and "distill: cached" in rest, rest  # it ran after the first, on its records
    assert not (run_dir / LOCK_FILE).exists()


def test_lock_of_a_killed_run_is_taken_over_with_a_message(distill_config, tmp_path):
    run_dir = tmp_path / "run"
    killed = start_holder(distill_config, run_dir)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert holder_pid(run_dir) == killed.pid  # the file stays; its flock went with the process
    (run_dir / SCRATCH / "edgekd-bench-x").mkdir(parents=True)  # as a killed profile stage leaves it
    after = subprocess.run(cli("distill", distill_config, "--out", run_dir), env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert after.returncode == 0, after.stderr[-3000:]
    err = flat(after.stderr)
    assert f"taking over the lock left by pid {killed.pid}" in err and "killed or crashed" in err, err
    assert not (run_dir / LOCK_FILE).exists() and not (run_dir / SCRATCH).exists()


# ---------------------------------------------------------------- under torchrun

TAKE_LOCK = """
import json, os, sys
from edgekd import distributed
from edgekd.errors import EdgekdError
from edgekd.runlock import run_lock
try:
    with run_lock(sys.argv[1]) as lock:
        holder = json.load(open(os.path.join(sys.argv[1], ".edgekd.lock")))["pid"]
        print(f"rank {distributed.rank()} holds: {lock is not None}, named: {holder == os.getpid()}", flush=True)
        distributed.barrier("holding the lock")
except EdgekdError as error:
    print(f"rank {distributed.rank()} refused: {type(error).__name__}: {error}", flush=True)
"""


def test_under_torchrun_rank_0_holds_the_lock_and_a_refusal_ends_every_rank(tmp_path):
    script, run_dir = tmp_path / "take_lock.py", tmp_path / "run"
    script.write_text(TAKE_LOCK)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", str(script), str(run_dir)]
    done = subprocess.run(torchrun, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # Two processes share torchrun's stdout, so their lines may run together: find each report wherever it lies.
    lines = sorted(re.findall(r"rank \d holds: (?:True|False), named: (?:True|False)", done.stdout))
    assert lines == ["rank 0 holds: True, named: True", "rank 1 holds: False, named: False"], done.stdout
    assert not (run_dir / LOCK_FILE).exists()

    with run_lock(run_dir):  # held here: rank 0 is refused naming this process, rank 1 is told rank 0 failed
        done = subprocess.run(torchrun, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    out = flat(done.stdout)
    assert f"rank 0 refused: RunLocked: run folder {run_dir} is in use by another edgekd run: pid {os.getpid()}" in out, out
    assert "rank 1 refused: DistributedError" in out and "taking the run folder's lock" in out, out
