"""SIGKILL `edgekd run` at a random point inside each stage, rerun: the result is the uninterrupted run's.

One run folder is killed once inside each of teacher, distill, prune, quantize, export, compile and
profile (a seeded random delay after the stage's banner, within its duration in an uninterrupted run),
each time restarted from the stage before; then it runs to the end. Every stage.json must load as its
record, every artifact's hash equal the uninterrupted run's (and the file on disk), and no temporary
file, benchmark process or scratch folder of the killed runs may remain, in the run folder or in the
temporary folder (TMPDIR) the runs were given.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgekd.io import read_json, sha256_file
from edgekd.pipeline import stage_order
from edgekd.stages import STAGES

KILLED_IN = ("teacher", "distill", "prune", "quantize", "export", "compile", "profile")
SEED = int(os.environ.get("EDGEKD_KILL_SEED", "0"))  # a failure message names the delays; this replays them
ATTEMPTS = 3  # a kill that lands after the stage ended (a busy machine) is tried again, earlier
# ONNX Runtime only, one thread: the artifacts are quick to build and their bytes deterministic.
TARGET = {"name": "host-cpu", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32", "int8"], "options": {"threads": 1}}]}
PROFILE = {"warmup_s": 0.1, "warmup_runs": 5, "runs": 100, "min_seconds": 0.1, "repeats": 1, "samples": 64,
           "energy": {"meter": "none"}}
# What a killed run can leave: the atomic writer's and Core ML's .NAME.RANDOM.part, the export's .NAME.unverified,
# the scratch folder, the benchmark's folder, a failed export, and the lock.
TEMPORARY = re.compile(r"(^\..+\.part$|\.unverified$|^edgekd-bench-|^\.tmp$|\.failed$|^\.edgekd\.lock$)")


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", *map(str, args)]


def environment(tmp: Path, name: str) -> dict[str, str]:
    """Each run series its own teacher cache and temporary folder, so both can be checked after it."""
    (tmp / f"tmpdir-{name}").mkdir()
    return {**os.environ, "COLUMNS": "1000", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp / f"tmpdir-{name}"),
            "EDGEKD_CACHE_DIR": str(tmp / f"cache-{name}")}


def records(run_dir: Path) -> dict:
    """Every stage's stage.json, loaded as its stage's record (a stage.json that does not load fails here)."""
    out = {}
    for name in stage_order():
        saved = read_json(run_dir / name / "stage.json")
        out[name] = STAGES.get(name).record_type.model_validate(saved["record"])
    return out


def fingerprint(run_dir: Path) -> dict:
    """The hashes of everything the run built, each checked against the file on disk."""
    r = records(run_dir)
    for artifact in [*r["export"].artifacts.values(), *r["compile"].artifacts]:
        assert artifact.path and sha256_file(run_dir / artifact.path) == artifact.sha256, artifact.path
    return {
        "teacher": [m.sha256 for m in r["teacher"].members],
        "distill": r["distill"].model.sha256,
        "prune": r["prune"].model.sha256,
        "quantize": sha256_file(run_dir / r["quantize"].state),
        "export": {name: a.sha256 for name, a in r["export"].artifacts.items()},
        "compile": {a.id: (a.status, a.sha256) for a in r["compile"].artifacts},
        "profile": {a.id: (a.status, a.logits_sha256, a.accuracy) for a in r["profile"].artifacts},
    }


def temporary_files(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*") if TEMPORARY.search(p.name))


def survivors(run_dir: Path) -> list[str]:
    """Processes whose command line names the run folder (a benchmark left running by a killed run)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and int(proc.name) != os.getpid() and str(run_dir) in command:
            found.append(f"{proc.name}: {command}")
    return found


def kill_inside(stage: str, config: Path, run_dir: Path, env: dict, delay: float) -> bool:
    """Start `edgekd run` re-running ``stage``, SIGKILL it ``delay`` s after the stage's banner; True when the kill
    landed inside the stage (it left no stage.json)."""
    proc = subprocess.Popen(cli("run", config, "--out", run_dir, "--force", stage), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(f"{stage}: ") and "cached (" not in line:
                break
        else:
            pytest.fail(f"the run ended ({proc.wait()}) before stage {stage} began: {''.join(seen)[-3000:]}")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, f"the run ended before it was killed: {''.join(seen)[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    deadline = time.monotonic() + 10
    while survivors(run_dir):  # the kernel ends a benchmark whose parent died (edgekd.runners.base.die_with_parent)
        assert time.monotonic() < deadline, f"a process of the killed run is still running: {survivors(run_dir)}"
        time.sleep(0.1)
    return not (run_dir / stage / "stage.json").exists()


@pytest.mark.slow
def test_sigkill_inside_each_stage_then_rerun_matches_uninterrupted(tiny_config, tmp_path):
    target = tmp_path / "host-cpu.yaml"
    target.write_text(yaml.safe_dump(TARGET))
    cfg = tiny_config({
        "prune": {"ratio": 0.3, "steps": 1, "recovery": {"epochs": 1, "lr": 0.005, "warmup_epochs": 0}},
        # PTQ: QAD's conv-BN folding at export traces some 120 patterns with torch.export (half a minute)
        "quantize": {"mode": "ptq", "calibration_size": 64},
        "targets": [str(target)],
        "profile": PROFILE,
    })
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    clean_dir, clean_env = tmp_path / "clean", environment(tmp_path, "clean")
    clean = subprocess.run(cli("run", config, "--out", clean_dir), env=clean_env, capture_output=True, text=True, timeout=900)
    assert clean.returncode == 0, clean.stderr[-3000:]
    seconds = {name: read_json(clean_dir / name / "stage.json")["seconds"] for name in KILLED_IN}

    killed_dir, killed_env = tmp_path / "killed", environment(tmp_path, "killed")
    rng = random.Random(SEED)
    kills = []  # (stage, delay, landed inside) for the failure message
    for stage in KILLED_IN:
        fraction = rng.uniform(0.05, 0.7)
        for _ in range(ATTEMPTS):
            delay = fraction * seconds[stage]
            kills.append((stage, round(delay, 3), kill_inside(stage, config, killed_dir, killed_env, delay)))
            if kills[-1][2]:
                break
            fraction /= 3
        assert kills[-1][2], f"no kill landed inside {stage} (seed {SEED}): {kills}"

    rerun = subprocess.run(cli("run", config, "--out", killed_dir), env=killed_env, capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "taking over the lock left by pid" in " ".join(rerun.stderr.split())  # the last kill's lock, named

    assert fingerprint(killed_dir) == fingerprint(clean_dir), f"kills (seed {SEED}): {kills}"
    assert temporary_files(killed_dir, tmp_path / "cache-killed") == []
    # The temporary folder holds what an uninterrupted run leaves there too (third-party caches), nothing of edgekd's.
    left = sorted(p.name for p in (tmp_path / "tmpdir-killed").iterdir())
    assert left == sorted(p.name for p in (tmp_path / "tmpdir-clean").iterdir()), left
    assert not [name for name in left if name.startswith(("edgekd", "tmp"))], left
