"""Training under ``torchrun`` with DistributedDataParallel (gloo, CPU), run for real on this machine.

Every test launches ``torchrun --standalone --nproc_per_node N`` (N = 2 unless said) as a subprocess on the
tiny digits config of conftest.py, with the teacher loaded from the session's ``base_run`` (no teacher
training), one thread per process and a short collective timeout. They check that

* two processes with the same global batch and seed give the single-process student: exactly (up to float
  rounding) for a student without batch norm, within a stated tolerance for the tiny CNN (batch norm
  normalises each process's half batch; see TOLERANCES);
* ``torchrun --nproc_per_node 1`` is bitwise the single-process run (the distributed path adds nothing);
* exactly one set of run files is written, by rank 0 only, and the teacher cache once (a write spy);
* a process killed (SIGKILL) mid-epoch, or frozen (SIGSTOP), ends the other with a clear message within
  the timeout, and a resume on two processes continues from the checkpoint to the uninterrupted result;
* waiting for one process's solo work (teacher cache, export...) is bounded by EDGEKD_DIST_WAIT_S, not by the
  shorter collective timeout, and a failure in it ends the others with a message;
* a global batch that two processes cannot share fails at once on both, naming the key and the numbers;
* two "machines" (two torchrun agents, one process each, own teacher caches) give the same student.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import edgekd
from edgekd.io import read_json
from edgekd.records import StudentRecord, TeacherCache

EPOCHS = 12  # long enough to kill a process mid-run (an epoch takes ~0.2 s here)
TIMEOUT_S = 60  # EDGEKD_DIST_TIMEOUT_S for runs that should succeed (a busy 2-core CI machine)
HANG_TIMEOUT_S = 8  # EDGEKD_DIST_TIMEOUT_S for the frozen-process test
RUN_LIMIT_S = 240  # a torchrun job that takes longer than this has hung

# Tiny CNN (batch norm), 2 processes vs 1, same global batch 64 and seed. Each process normalises its
# 32-sample share with its own batch statistics, so the runs differ slightly: seen here, test accuracy
# 95.26 % vs 94.15 % and final train loss 0.133 vs 0.114 (train-mode loss, batch-norm noise included).
ACC_TOL = 0.03  # |accuracy difference| on the 359 test images (about 11 images)
LOSS_REL_TOL = 0.30  # |final train loss difference| / single-process final train loss
# Without batch norm the averaged gradient is the global batch's, so only float rounding differs.
EXACT_LOSS_REL_TOL = 1e-4
EXACT_ACC_TOL = 0.011  # two of the 180 test images of that run: a near-tied logit may flip under other rounding

WRITE_SPY = r'''
"""Runs ``python -m edgekd ARGS`` and logs, per rank, every file this process writes (and the student's hash)."""
import builtins, os, runpy, sys

spy = os.environ["EDGEKD_TEST_SPY"]
rank = os.environ.get("RANK", "none")
_open, _replace = builtins.open, os.replace
log = _open(os.path.join(spy, f"writes-rank{rank}.txt"), "a", buffering=1)

def replace(src, dst, *args, **kwargs):
    log.write(os.path.abspath(os.fspath(dst)) + "\n")
    return _replace(src, dst, *args, **kwargs)

def open_(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        log.write(os.path.abspath(os.fspath(file)) + "\n")
    return _open(file, mode, *args, **kwargs)

os.replace, builtins.open = replace, open_

from edgekd.context import StageContext
_save = StageContext.save_model

def save_model(self, model, spec, kwargs, path):
    ref = _save(self, model, spec, kwargs, path)
    if os.path.basename(os.fspath(path)) == "student.safetensors":  # the distilled student, not a teacher member
        with _open(os.path.join(spy, f"student-rank{rank}.txt"), "a") as f:
            f.write(ref.sha256 + "\n")
    return ref

StageContext.save_model = save_model
sys.argv = ["edgekd", *sys.argv[1:]]
runpy.run_module("edgekd", run_name="__main__", alter_sys=True)
'''

NO_BATCH_NORM = '''
import torch
from torch import nn


class NoBN(nn.Module):
    """A student without batch norm: its gradient does not depend on how a batch is split."""

    def __init__(self, num_classes, in_channels, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
'''


# ---------------------------------------------------------------- helpers


def torchrun(*args: str | Path, nproc: int = 2, extra: tuple[str, ...] = ()) -> list[str]:
    launcher = Path(sys.executable).with_name("torchrun")
    base = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*base, "--standalone", f"--nproc_per_node={nproc}", "--tee=3", *extra, *map(str, args)]


def job_env(cache: Path, timeout_s: float = TIMEOUT_S, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "OMP_NUM_THREADS": "1", "EDGEKD_CACHE_DIR": str(cache), "EDGEKD_DIST_TIMEOUT_S": str(timeout_s),
        "COLUMNS": "2000",  # rich wraps messages at the terminal width; keep each on one line
        **extra,
    }


def run_job(cmd: list[str], env: dict[str, str], limit: float = RUN_LIMIT_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)


def rank_output(text: str, rank: int) -> str:
    """What one process printed (torchrun --tee prefixes its lines), whitespace normalised."""
    prefix = f"[default{rank}]:"
    lines = [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]
    return " ".join(" ".join(lines).split())


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def record(run_dir: Path) -> StudentRecord:
    """The distill stage's record as written (rank 0) and as the next run loads it."""
    return StudentRecord.model_validate(read_json(run_dir / "distill" / "stage.json")["record"])


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "distill" / "metrics.jsonl").read_text().splitlines()]


def files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def worker_pids(launcher_pid: int) -> dict[int, int]:
    """RANK -> pid of the worker processes that torchrun ``launcher_pid`` started."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != launcher_pid:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, limit: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the job ended ({proc.returncode}) before {what}:\n{err[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {limit} s")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ddp_config(pretrained_config, tmp_path_factory) -> tuple[dict, Path]:
    cfg = pretrained_config({"distill": {"train": {"epochs": EPOCHS}}})
    return cfg, write_config(cfg, tmp_path_factory.mktemp("ddp-config") / "tiny.yaml")


@pytest.fixture(scope="module")
def single(ddp_config, tmp_path_factory):
    """The reference: one process, in this interpreter (one thread, like every torchrun process here)."""
    cfg, _ = ddp_config
    out = tmp_path_factory.mktemp("ddp-single") / "run"
    edgekd.run(cfg, out, stages=["distill"])
    return out


@pytest.fixture(scope="module")
def two(ddp_config, tmp_path_factory):
    """The same config on two processes, through a spy that logs every file each process writes."""
    _, config_path = ddp_config
    root = tmp_path_factory.mktemp("ddp-two")
    spy, cache, out = root / "spy", root / "cache", root / "run"
    spy.mkdir()
    driver = root / "spy_driver.py"
    driver.write_text(WRITE_SPY)
    job = run_job(torchrun(driver, "distill", config_path, "--out", out), job_env(cache, EDGEKD_TEST_SPY=str(spy)))
    assert job.returncode == 0, job.stderr[-5000:]
    return {"out": out, "spy": spy, "cache": cache, "job": job}


# ---------------------------------------------------------------- parity and one writer


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_two_processes_match_one(single, two):
    one, dist = record(single), record(two["out"])
    acc_1, acc_2 = one.figures.accuracy, dist.figures.accuracy
    loss_1, loss_2 = one.train.final_train_loss, dist.train.final_train_loss
    assert abs(acc_2 - acc_1) <= ACC_TOL, (acc_1, acc_2)
    assert abs(loss_2 - loss_1) <= LOSS_REL_TOL * loss_1, (loss_1, loss_2)
    assert acc_2 > 0.8 and dist.val_accuracy > 0.8
    rows = metrics(two["out"])
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))  # one line per epoch, from one writer
    assert all(r["world_size"] == 2 for r in rows) and "world_size" not in metrics(single)[0]
    assert all(math.isfinite(r["train_loss"]) for r in rows) and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert dist.train.epochs_run == EPOCHS and dist.train.resumed_from_epoch == 0

    # rank 0 reports once: one summary table, one line per epoch, nothing from rank 1
    said = two["job"].stdout + two["job"].stderr
    assert rank_output(said, 0).count("distill epoch 1/") == 1 and rank_output(said, 0).count("edgekd run:") == 1
    assert rank_output(said, 1) == ""


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_one_checkpoint_set_written_by_rank_0_only(single, two):
    out, spy, cache = two["out"], two["spy"], two["cache"]
    # the run directory holds exactly what a single-process run writes: one checkpoint, one student, one marker each,
    # and the run's log of third-party output (edgekd.runlog)
    assert files(out) == files(single) == {
        "teacher/stage.json", "distill/stage.json", "distill/checkpoints/last.pt", "distill/metrics.jsonl",
        "distill/student.safetensors", "edgekd.log",
    }
    writes = {rank: (spy / f"writes-rank{rank}.txt").read_text().splitlines() for rank in (0, 1)}
    # rank 1 wrote nothing; it only opened the cache's lock file to take the lock (the file holds nothing)
    assert [w for w in writes[1] if not w.endswith(".lock")] == []
    rank0 = [Path(w) for w in writes[0]]
    assert sum(p == out / "distill" / "checkpoints" / "last.pt" for p in rank0) == EPOCHS  # one per epoch
    assert sum(p == out / "distill" / "student.safetensors" for p in rank0) == 1
    # the teacher cache: filled once, by rank 0 (this run's cache dir was empty), and read by both
    cached = sorted((cache / "teacher").glob("*.safetensors"))
    assert len(cached) == 1
    assert sum(p == cached[0] for p in rank0) == 1
    assert record(out).teacher_cache == TeacherCache(used=True, hit=False, path=str(cached[0]))
    # both processes ended with the same student: the one rank 0 saved and scored
    hashes = {rank: (spy / f"student-rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert hashes[0] == hashes[1] == [record(out).model.sha256]


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
# fixed mixup views: 2 epochs, the first of them at chance, where rounding apart (4e-8 after epoch 1) would
# otherwise grow to 3e-4 by epoch 4 as the model leaves chance
@pytest.mark.parametrize("augment", [{}, {"data": {"augment": {"shift": 1, "mixup": 0.4}},
                                          "distill": {"teacher_views": 2, "train": {"epochs": 2}}}],
                         ids=["plain", "fixed-mixup-views"])
def test_parity_is_exact_without_batch_norm_and_one_process_is_bitwise(pretrained_config, tmp_path, augment):
    """No batch norm: the averaged gradient is exactly the global batch's, so 2 processes = 1 up to rounding.
    And torchrun with one process takes the distributed code path yet gives bitwise the single-process run.
    With fixed mixup views each process takes its own samples' mixing shares (one per sample)."""
    from edgekd.data import prepare_data

    # 1,437 training images in global batches of 68: the last batch of each epoch has 9 images, split 5 / 4,
    # so the per-process loss weights (5/9 and 4/9 of that batch, not 1/2 each) must be right to match
    split = (0.8, 0.1, 0.1)
    assert len(prepare_data("builtin:digits", fractions=split).x_train) % 68 == 9
    module = tmp_path / "nobn.py"
    module.write_text(NO_BATCH_NORM)
    cfg = pretrained_config({"data": {"split": list(split), **augment.get("data", {})},
                             "student": {"model": f"python:{module}:NoBN", "kwargs": {"width": 8}},
                             "distill": {**augment.get("distill", {}),
                                         "train": {"epochs": 6, "batch_size": 68, **augment.get("distill", {}).get("train", {})}}})
    config_path = write_config(cfg, tmp_path / "nobn.yaml")
    edgekd.run(cfg, tmp_path / "single", stages=["distill"])
    env = job_env(tmp_path / "cache")
    job = run_job(torchrun("-m", "edgekd", "distill", config_path, "--out", tmp_path / "two"), env)
    assert job.returncode == 0, job.stderr[-5000:]
    one, dist = record(tmp_path / "single"), record(tmp_path / "two")
    assert abs(dist.figures.accuracy - one.figures.accuracy) <= EXACT_ACC_TOL
    rows_1, rows_2 = metrics(tmp_path / "single"), metrics(tmp_path / "two")
    for r1, r2 in zip(rows_1, rows_2, strict=True):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=EXACT_LOSS_REL_TOL), (r1, r2)
        assert r2["train_accuracy"] == pytest.approx(r1["train_accuracy"], abs=0.003)
    assert dist.model.sha256 != one.model.sha256  # really trained apart, in two processes

    job = run_job(torchrun("-m", "edgekd", "distill", config_path, "--out", tmp_path / "one", nproc=1), env)
    assert job.returncode == 0, job.stderr[-5000:]
    assert metrics(tmp_path / "one")[0]["world_size"] == 1
    assert record(tmp_path / "one").model.sha256 == one.model.sha256
    assert [r["train_loss"] for r in metrics(tmp_path / "one")] == [r["train_loss"] for r in rows_1]


# ---------------------------------------------------------------- a process dies or hangs


def _start(config_path: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        torchrun("-m", "edgekd", "distill", config_path, "--out", out), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        for pid in worker_pids(proc.pid).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    return proc.communicate(timeout=60)


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_killed_process_ends_the_other_with_a_message_then_resume_matches(ddp_config, two, tmp_path):
    _, config_path = ddp_config
    out, checkpoint = tmp_path / "run", tmp_path / "run" / "distill" / "checkpoints" / "last.pt"
    env = job_env(two["cache"], timeout_s=30)
    proc = _start(config_path, out, env)
    try:
        wait_for(checkpoint.exists, RUN_LIMIT_S, "epoch checkpoint", proc)
        time.sleep(0.05)  # into the next epoch
        pids = worker_pids(proc.pid)
        assert sorted(pids) == [0, 1] and proc.poll() is None, "training finished before it could be killed"
        os.kill(pids[1], signal.SIGKILL)
        proc.wait(timeout=30 + 30)  # the collective timeout, plus time to print and exit: not a hang
    finally:
        stdout, stderr = _stop(proc)
    assert proc.returncode != 0
    survivor = rank_output(stderr, 0)
    # rank 0 says what happened, as an edgekd error (exit 2), not a traceback
    assert re.search(r"error: rank 0 of 2 \(.+?\): (stopped by SIGTERM from the launcher|lost contact with another process)", survivor), stderr[-4000:]
    assert "Traceback" not in survivor
    assert not (out / "distill" / "stage.json").exists()  # a killed stage never looks complete
    done = len(metrics(out))
    assert 1 <= done < EPOCHS

    # every process resumes from rank 0's checkpoint and ends where the uninterrupted run ended
    job = run_job(torchrun("-m", "edgekd", "distill", config_path, "--out", out, "--resume"), job_env(two["cache"]))
    assert job.returncode == 0, job.stderr[-5000:]
    resumed = record(out)
    assert resumed.train.resumed_from_epoch >= done
    assert resumed.train.epochs_run == EPOCHS
    assert [r["epoch"] for r in metrics(out)] == list(range(EPOCHS))
    assert resumed.model.sha256 == record(two["out"]).model.sha256
    assert [r["train_loss"] for r in metrics(out)] == [r["train_loss"] for r in metrics(two["out"])]


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_frozen_process_times_out_with_a_message(ddp_config, two, tmp_path):
    """SIGSTOP: the process lives on, so neither torchrun nor the socket notices; only the timeout ends the wait."""
    _, config_path = ddp_config
    out, checkpoint = tmp_path / "run", tmp_path / "run" / "distill" / "checkpoints" / "last.pt"
    proc = _start(config_path, out, job_env(two["cache"], timeout_s=HANG_TIMEOUT_S))
    try:
        wait_for(checkpoint.exists, RUN_LIMIT_S, "epoch checkpoint", proc)
        pids = worker_pids(proc.pid)
        assert sorted(pids) == [0, 1] and proc.poll() is None, "training finished before a process could be frozen"
        os.kill(pids[1], signal.SIGSTOP)
        # rank 0 must give up by itself: the timeout, plus time to print and exit
        wait_for(lambda: not alive(pids[0]), HANG_TIMEOUT_S + 60, "exit of rank 0 after its peer froze")
    finally:
        stdout, stderr = _stop(proc)
    survivor = rank_output(stderr, 0)
    assert re.search(rf"error: rank 0 of 2 \(.+?\): .+ did not complete within {HANG_TIMEOUT_S} s \(EDGEKD_DIST_TIMEOUT_S sets it\)", survivor), stderr[-4000:]
    assert "Traceback" not in survivor
    assert not (out / "distill" / "stage.json").exists()


# ---------------------------------------------------------------- waiting for one process's solo work

SOLO_WORK = r'''
import time
from edgekd import distributed
from edgekd.errors import EdgekdError

rank = distributed.rank()
# 1. rank 0 works alone longer than the collective timeout (2 s), within the wait (5 s): the others wait
print(f"R{rank} phase1 {distributed.on_writer(lambda: (time.sleep(3.5), 42)[1], 'long solo work')}", flush=True)
# 2. rank 0's solo work fails: it raises its own error, the others a DistributedError, nobody hangs
try:
    distributed.on_writer(lambda: 1 / 0, "failing solo work")
except ZeroDivisionError:
    print(f"R{rank} phase2 ZeroDivisionError", flush=True)
except EdgekdError as error:
    print(f"R{rank} phase2 {error}", flush=True)
# 3. rank 0 hangs past the wait: the others give up after EDGEKD_DIST_WAIT_S
try:
    distributed.on_writer(lambda: time.sleep(9), "hanging solo work")
    print(f"R{rank} phase3 returned", flush=True)
except EdgekdError as error:
    print(f"R{rank} phase3 {type(error).__name__}: {error}", flush=True)
'''


def test_waiting_for_one_process_is_bounded_by_its_own_limit(tmp_path):
    script = tmp_path / "solo.py"
    script.write_text(SOLO_WORK)
    job = run_job(torchrun(script), job_env(tmp_path / "cache", timeout_s=2, EDGEKD_DIST_WAIT_S="5"))
    said = {rank: rank_output(job.stdout + job.stderr, rank) for rank in (0, 1)}
    assert "R0 phase1 42" in said[0] and "R1 phase1 42" in said[1], job.stdout + job.stderr[-3000:]
    assert "R0 phase2 ZeroDivisionError" in said[0]
    assert "R1 phase2 rank 1 of 2 (" in said[1] and "another process failed while failing solo work" in said[1]
    assert re.search(r"R1 phase3 DistributedError: rank 1 of 2 \(.+?\): hanging solo work did not complete within 5 s "
                     r"\(EDGEKD_DIST_WAIT_S sets it\)", said[1]), said[1]


# ---------------------------------------------------------------- a bad launch


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_batch_that_does_not_split_fails_on_every_process(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {"train": {"batch_size": 63, "epochs": 1}}})
    job = run_job(torchrun("-m", "edgekd", "distill", write_config(cfg, tmp_path / "bad.yaml"), "--out", tmp_path / "run"),
                  job_env(tmp_path / "cache"))
    assert job.returncode != 0
    for rank in (0, 1):
        said = rank_output(job.stderr, rank)
        assert "error: distill.train.batch_size: the global batch size 63 must be a multiple of the world size 2" in said, job.stderr[-4000:]
        assert "63 % 2 = 1" in said and "Use 62 or 64" in said
        assert "Traceback" not in said
    assert not (tmp_path / "run" / "distill").exists()  # refused before any stage ran


# ---------------------------------------------------------------- several machines


@pytest.mark.slow  # torchrun with two training processes (20-40 s each); CI runs it in make test-slow
def test_two_machines_each_with_its_own_cache(ddp_config, two, tmp_path):
    """Two torchrun agents with one process each, joined by c10d rendezvous, as on two machines: each
    process is LOCAL_RANK 0, so each fills its own machine's teacher cache; the student is the 2-process one."""
    _, config_path = ddp_config
    port, out = free_port(), tmp_path / "run"
    launcher = Path(sys.executable).with_name("torchrun")
    base = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    procs = []
    try:
        for node in (0, 1):
            cmd = [*base, "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}", "--rdzv-backend=c10d",
                   f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=edgekd-test", f"--rdzv-conf=is_host={'true' if node == 0 else 'false'}",
                   "--tee=3", "-m", "edgekd", "distill", str(config_path), "--out", str(out)]
            procs.append(subprocess.Popen(cmd, env=job_env(tmp_path / f"cache{node}"), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [p.communicate(timeout=RUN_LIMIT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-5000:]
    for node in (0, 1):
        assert len(list((tmp_path / f"cache{node}" / "teacher").glob("*.safetensors"))) == 1
    assert record(out).model.sha256 == record(two["out"]).model.sha256


# ---------------------------------------------------------------- without torchrun


def test_helpers_without_torchrun_are_one_process(monkeypatch):
    from edgekd import distributed
    from edgekd.errors import ConfigError

    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.active() and distributed.context() is None
    assert distributed.is_writer() and distributed.is_local_leader()
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    distributed.check_batch_size("distill.train.batch_size", 63)  # any batch splits over one process
    obj = {"a": [1, 2]}
    assert distributed.broadcast_object(obj) is obj and distributed.all_gather_object(3) == [3]
    assert distributed.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    assert distributed.on_writer(lambda: 7, "x") == 7
    distributed.barrier("nothing")
    # shares of a batch: contiguous, covering it once, sizes differing by at most one
    for count, world in [(64, 2), (9, 2), (10, 3), (2, 4), (0, 2)]:
        parts = [distributed.shard(count, rank_=r, world=world) for r in range(world)]
        assert [i for p in parts for i in range(p.start, p.stop)] == list(range(count))
        sizes = [p.stop - p.start for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    monkeypatch.setenv("EDGEKD_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="EDGEKD_DIST_TIMEOUT_S='soon'"):
        distributed.timeout_s()
    monkeypatch.setenv("EDGEKD_DIST_TIMEOUT_S", "7.5")
    assert distributed.timeout_s() == 7.5


def test_collective_errors_read_clearly():
    from edgekd import distributed

    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 5000ms for recv operation to complete")
    text = str(distributed.explain(gloo, "distill epoch 2, batch 13 (gradient all-reduce)"))
    assert "distill epoch 2, batch 13 (gradient all-reduce) did not complete within" in text
    assert "EDGEKD_DIST_TIMEOUT_S" in text and "Timed out waiting 5000ms" in text
    assert "[" not in text  # the CLI prints with rich markup, where "[/...]" would be a closing tag
    reset = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:3783: Connection reset by peer. "
                         "This is typically caused by a remote worker hanging or bugs in the application. Check the logs")
    text = str(distributed.explain(reset, "summing metrics"))
    assert "lost contact with another process during summing metrics" in text and "[" not in text
