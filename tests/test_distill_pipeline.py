"""End-to-end teacher -> distill runs on the tiny digits config (see conftest.py)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

import edgekd
from edgekd.errors import ConfigError
from edgekd.io import read_json
from edgekd.records import StudentRecord, TeacherRecord

CHANCE = 0.1  # 10 digit classes


def stage_json(run_dir: Path, stage: str) -> dict:
    return read_json(Path(run_dir) / stage / "stage.json")


def metrics(run_dir: Path, stage: str = "distill") -> list[dict]:
    lines = (Path(run_dir) / stage / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


# ---------------------------------------------------------------- records and caching


def test_base_run_records(base_run, tiny_config):
    teacher, student = base_run["teacher"], base_run["distill"]
    assert not base_run.stages["teacher"].cached and not base_run.stages["distill"].cached
    assert isinstance(teacher, TeacherRecord) and isinstance(student, StudentRecord)
    tf, sf = teacher.figures, student.figures
    assert tf.accuracy > 0.5 and sf.accuracy > 0.5, (tf.accuracy, sf.accuracy)
    assert teacher.val_accuracy > 0.5 and student.val_accuracy > 0.5
    for f in (tf, sf):
        assert f.params > 0 and f.macs > 0 and f.size_bytes > 0
        assert len(f.per_class_accuracy) == 10
        assert 0.0 <= f.ece <= 1.0
    assert sf.macs < tf.macs and sf.params < tf.params
    assert teacher.temperature == 1.0 and len(teacher.members) == 1
    assert [t.member for t in teacher.trained] == [0]

    # the saved student is the one that was scored
    assert student.model.weights_in_run and len(student.model.sha256) == 64
    assert (base_run.run_dir / student.model.weights).is_file()
    assert student.inputs[0].shape == ["batch", 1, 8, 8] and student.inputs[0].dtype == "float32"
    assert student.class_names == [str(i) for i in range(10)]
    assert student.teacher_cache.used is True

    # one metrics line per epoch, in order, with a finite train loss and the loss terms
    epochs = tiny_config()["distill"]["train"]["epochs"]
    rows = metrics(base_run.run_dir)
    assert [r["epoch"] for r in rows] == list(range(epochs))
    assert all(math.isfinite(r["train_loss"]) and r["train_loss"] > 0 for r in rows)
    assert all(set(r["terms"]) == {"ce", "kd"} for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert student.train.epochs_run == epochs and student.train.resumed_from_epoch == 0
    assert len(metrics(base_run.run_dir, "teacher/member0")) == 2
    # stage.json holds the same record as the returned result, as JSON
    saved = stage_json(base_run.run_dir, "distill")["record"]
    assert saved["model"] == student.model.to_dict()
    assert StudentRecord.model_validate(saved) == student


def test_rerun_is_cached_and_epoch_change_reruns_distill_only(base_run, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(base_run.run_dir, run_dir)  # records hold run-relative paths, so a run can move
    again = edgekd.run(tiny_config(), run_dir, stages=["distill"])
    assert again.stages["teacher"].cached and again.stages["distill"].cached
    assert again["distill"].model.sha256 == base_run["distill"].model.sha256
    assert again["teacher"] == base_run["teacher"]

    changed = edgekd.run(tiny_config({"distill": {"train": {"epochs": 2}}}), run_dir, stages=["distill"])
    assert changed.stages["teacher"].cached
    assert not changed.stages["distill"].cached
    assert changed["distill"].train.epochs_run == 2
    assert len(metrics(run_dir)) == 2
    assert changed["distill"].model.sha256 != base_run["distill"].model.sha256
    # and the changed config is now the cached one
    third = edgekd.run(tiny_config({"distill": {"train": {"epochs": 2}}}), run_dir, stages=["distill"])
    assert third.stages["distill"].cached


def test_teacher_cache_hit_gives_identical_student(pretrained_config, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "cache"))  # start with an empty cache
    cfg = pretrained_config({"data": {"augment": False}, "distill": {"cache_teacher": True}})
    first = edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    cache = first["distill"].teacher_cache
    assert cache.used is True and cache.hit is False
    assert Path(cache.path).is_file() and Path(cache.path).parent.parent == tmp_path / "cache"

    second = edgekd.run(cfg, tmp_path / "run", stages=["distill"], force="distill")
    assert second.stages["teacher"].cached and not second.stages["distill"].cached
    assert second["distill"].teacher_cache.hit is True
    assert second["distill"].teacher_cache.path == cache.path
    assert second["distill"].model.sha256 == first["distill"].model.sha256


def test_teacher_cache_off_with_augmentation(pretrained_config, tmp_path):
    cfg = pretrained_config({"data": {"augment": True}, "distill": {"train": {"epochs": 1}}})
    rec = edgekd.run(cfg, tmp_path / "run", stages=["distill"])["distill"]
    assert rec.teacher_cache.to_dict() == {"used": False, "hit": None, "path": None, "reason": "augmentation on", "views": None}
    cfg = pretrained_config({"distill": {"cache_teacher": False, "train": {"epochs": 1}}})
    rec = edgekd.run(cfg, tmp_path / "run2", stages=["distill"])["distill"]
    assert rec.teacher_cache.to_dict() == {"used": False, "hit": None, "path": None, "reason": "disabled", "views": None}


@pytest.mark.parametrize("edit, field", [
    (lambda rec: rec.update(scores=rec.pop("figures")), "figures"),  # a field renamed since
    (lambda rec: rec.pop("val_accuracy"), "val_accuracy"),  # a field that did not exist then
])
def test_old_form_stage_json_reruns_the_stage_and_says_why(base_run, tiny_config, tmp_path, edit, field):
    run_dir = tmp_path / "run"
    shutil.copytree(base_run.run_dir, run_dir)
    marker = run_dir / "distill" / "stage.json"
    saved = read_json(marker)
    edit(saved["record"])  # same key (same config, same edgekd), older record form
    marker.write_text(json.dumps(saved))
    log = io.StringIO()
    again = edgekd.run(tiny_config(), run_dir, stages=["distill"], console=Console(file=log, width=400))
    text = log.getvalue()
    assert again.stages["teacher"].cached and not again.stages["distill"].cached
    assert f"distill: re-running: {marker}" in text and "older form" in text
    assert field in text.split("older form", 1)[1], text  # says which field no longer matches
    assert "teacher: re-running" not in text
    # the re-run wrote a current record, which the next run loads
    assert StudentRecord.model_validate(stage_json(run_dir, "distill")["record"]) == again["distill"]
    assert again["distill"].model.sha256 == base_run["distill"].model.sha256
    assert edgekd.run(tiny_config(), run_dir, stages=["distill"], console=Console(file=io.StringIO())).stages["distill"].cached


def test_corrupt_stage_json_exits_2_naming_the_file(base_run, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(base_run.run_dir, run_dir)
    marker = run_dir / "distill" / "stage.json"
    corrupt = marker.read_text()[:40]  # cut short: not JSON
    marker.write_text(corrupt)
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    proc = subprocess.run(_cli("run", config_path, "--out", run_dir), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "1000"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = " ".join(proc.stderr.split())  # whatever the console wrapped
    assert str(marker) in err and "--force distill" in err, err
    assert "Traceback" not in proc.stderr
    assert marker.read_text() == corrupt and not (run_dir / "prune").exists()  # left for the user; nothing later ran


# ---------------------------------------------------------------- kill -9 and resume


def _cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", *map(str, args)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {"train": {"epochs": 12}}})
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    edgekd.run(cfg, killed_dir, stages=["teacher"])  # the CLI run then finds the teacher cached

    env = {**os.environ, "COLUMNS": "200"}
    checkpoint = killed_dir / "distill" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        _cli("distill", config_path, "--out", killed_dir), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.exists():
            assert proc.poll() is None, f"edgekd distill exited early ({proc.returncode}): {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no epoch checkpoint within 180 s"
            time.sleep(0.02)
        time.sleep(0.05)  # into the next epoch
        assert proc.poll() is None, "training finished before it could be killed; raise the epochs"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "distill" / "stage.json").exists()  # a killed stage never looks complete
    done_epochs = len(metrics(killed_dir))
    assert 1 <= done_epochs < 12

    resumed = subprocess.run(
        _cli("distill", config_path, "--out", killed_dir, "--resume"), env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = StudentRecord.model_validate(stage_json(killed_dir, "distill")["record"])  # as the next run would load it
    assert record.train.resumed_from_epoch > 0
    assert record.train.resumed_from_epoch >= done_epochs
    assert record.train.epochs_run == 12
    assert [r["epoch"] for r in metrics(killed_dir)] == list(range(12))  # no duplicated or missing epochs

    clean = edgekd.run(cfg, clean_dir, stages=["distill"])["distill"]
    assert clean.train.resumed_from_epoch == 0
    assert record.model.sha256 == clean.model.sha256
    assert record.figures.accuracy == clean.figures.accuracy
    clean_rows, killed_rows = metrics(clean_dir), metrics(killed_dir)
    assert [r["train_loss"] for r in clean_rows] == [r["train_loss"] for r in killed_rows]


def test_resume_ignores_checkpoint_of_other_config(pretrained_config, tmp_path):
    run_dir = tmp_path / "run"
    edgekd.run(pretrained_config({"distill": {"train": {"epochs": 1}}}), run_dir, stages=["distill"])
    # a checkpoint from a different distill config must not be resumed from
    rec = edgekd.run(pretrained_config({"distill": {"train": {"epochs": 2}}}), run_dir, stages=["distill"], resume=True)
    assert rec["distill"].train.resumed_from_epoch == 0 and rec["distill"].train.epochs_run == 2


# ---------------------------------------------------------------- npz data and an ONNX teacher


def export_onnx(weights: Path, path: Path) -> Path:
    from edgekd.models import load_model

    model = load_model("zoo:resnet", kwargs={"width": 0.25}, weights=weights, num_classes=10, in_channels=1).eval()
    torch.onnx.export(
        model, (torch.zeros(2, 1, 8, 8),), str(path), dynamo=False,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def test_npz_data_and_onnx_teacher(base_run, teacher_weights, tiny_config, tmp_path):
    from edgekd.data import load_source

    raw = load_source("builtin:digits")
    npz = tmp_path / "digits.npz"
    np.savez(npz, x=raw.x, y=raw.y, class_names=np.array(raw.class_names))
    onnx_path = export_onnx(teacher_weights, tmp_path / "teacher.onnx")

    cfg = tiny_config({"data": {"source": f"npz:{npz}"}})
    cfg["teacher"] = {"model": f"onnx:{onnx_path}"}
    result = edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    teacher, student = result["teacher"], result["distill"]
    assert teacher.trained == []
    assert teacher.members[0].model == f"onnx:{onnx_path}" and not teacher.members[0].weights_in_run
    assert abs(teacher.figures.accuracy - base_run["teacher"].figures.accuracy) <= 1e-9
    assert abs(teacher.val_accuracy - base_run["teacher"].val_accuracy) <= 1e-9
    assert teacher.figures.params > 0
    assert student.data["source"] == f"npz:{npz}"
    assert student.figures.accuracy > 0.5
    assert student.teacher_cache.used is True
    assert len(metrics(result.run_dir)) == 3


# ---------------------------------------------------------------- ensembles


def test_mean_ensemble_with_multi_teacher_loss(base_run, pretrained_config, teacher_weights, tmp_path):
    student_weights = base_run.run_dir / base_run["distill"].model.weights
    cfg = pretrained_config({
        "distill": {"losses": [
            {"name": "ce", "weight": 0.1},
            {"name": "kd", "weight": 0.45, "temperature": 4.0},
            {"name": "multi_teacher", "weight": 0.45, "temperature": 4.0},
        ]},
    })
    cfg["teacher"] = {
        "members": [
            {"model": "zoo:resnet", "kwargs": {"width": 0.25}, "weights": str(teacher_weights)},
            {"model": "zoo:tiny_cnn", "kwargs": {"width": 0.5}, "weights": str(student_weights)},
        ],
        "ensemble": "mean",
    }
    result = edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    teacher = result["teacher"]
    assert len(teacher.members) == 2
    assert teacher.ensemble_weights == [1.0, 1.0]
    assert teacher.members[0].sha256 != teacher.members[1].sha256
    assert teacher.figures.params == base_run["teacher"].figures.params + base_run["distill"].figures.params
    assert teacher.figures.accuracy > 0.5
    rows = metrics(result.run_dir)
    assert len(rows) == 3
    for row in rows:
        assert set(row["terms"]) == {"ce", "kd", "multi_teacher"}
        assert all(math.isfinite(v) for v in row["terms"].values())
        assert row["terms"]["multi_teacher"] > 0
        # pulling towards each teacher separately is not the same as towards their mean
        assert row["terms"]["multi_teacher"] != pytest.approx(row["terms"]["kd"], rel=1e-6)
    assert result["distill"].figures.accuracy > 0.5


def test_multi_teacher_weights_must_match_member_count(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {"losses": [{"name": "multi_teacher", "weights": [1.0, 2.0]}]}})
    with pytest.raises(ConfigError, match="2 weights given for 1 teachers"):
        edgekd.run(cfg, tmp_path / "run", stages=["distill"])


# ---------------------------------------------------------------- feature losses


def test_feature_losses_fitnet_and_at(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {
        "features": [{"student": "features.block2", "teacher": "layer2"}],
        "losses": [
            {"name": "ce", "weight": 0.1}, {"name": "kd", "weight": 0.9},
            {"name": "fitnet", "weight": 1.0}, {"name": "at", "weight": 100.0},
        ],
    }})
    result = edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    rec = result["distill"]
    rows = metrics(result.run_dir)
    assert len(rows) == 3
    for row in rows:
        assert set(row["terms"]) == {"ce", "kd", "fitnet", "at"}
        assert row["terms"]["fitnet"] > 0 and row["terms"]["at"] > 0
    assert rows[-1]["terms"]["fitnet"] < rows[0]["terms"]["fitnet"]  # the hint is being learned
    assert rec.figures.accuracy > 0.5
    assert rec.teacher_cache.used is True
    # the FitNets adapter is training machinery, not part of the saved student
    from safetensors.torch import load_file

    saved = load_file(str(result.run_dir / rec.model.weights))
    assert not any("adapter" in k for k in saved)


@pytest.mark.parametrize(
    "pair, bad",
    [({"student": "features.blok2", "teacher": "layer2"}, "features.blok2"),
     ({"student": "features.block2", "teacher": "layer9"}, "layer9")],
)
def test_unknown_feature_layer_is_config_error_before_any_stage(pretrained_config, tmp_path, pair, bad):
    cfg = pretrained_config({"distill": {"features": [pair], "losses": [{"name": "ce"}, {"name": "at", "weight": 10.0}]}})
    with pytest.raises(ConfigError) as info:  # found by edgekd.preflight on the untrained models
        edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    assert repr(bad) in str(info.value)
    assert "distill.features" in str(info.value)
    assert not list((tmp_path / "run").glob("*/stage.json"))  # not even the teacher stage ran


# ---------------------------------------------------------------- temperature calibration


def test_temperature_calibration(base_run, pretrained_config, tmp_path):
    cfg = pretrained_config({"teacher": {"calibrate_temperature": True}})
    teacher = edgekd.run(cfg, tmp_path / "run", stages=["teacher"])["teacher"]
    assert teacher.temperature != 1.0 and teacher.temperature > 0
    assert teacher.figures.ece <= teacher.ece_before_calibration + 1e-6
    # the uncalibrated figures are the base run's (same weights); scaling never changes the argmax
    assert teacher.ece_before_calibration == pytest.approx(base_run["teacher"].figures.ece, abs=1e-9)
    assert teacher.figures.accuracy == pytest.approx(base_run["teacher"].figures.accuracy, abs=1e-9)
