"""edgekd search: trials are pipeline runs sharing their stages, every artifact is a candidate gated against the
budgets, the chosen config rebuilds the same artifact, an impossible budget names what binds, bad input stops
before training, and a killed or shared study finishes without running a trial twice."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgekd.search.candidates import check_distance, trial_value

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"warmup_s": 0.1, "warmup_runs": 5, "runs": 100, "min_seconds": 0.1, "repeats": 1, "native_tool": False,
         "energy": {"meter": "none"}}
ORT = {"name": "ort-only", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32", "int8"],
                                          "options": {"threads": 1}}]}
SPACE = {"space": {"student.kwargs.width": [0.25, 0.5],
                   "prune": {"off": {"prune.enabled": False}, "0.3": {"prune.ratio": 0.3}}}}


def budgets(tmp_path: Path, **limits) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"budgets": [{"target": "*", "allow_unstable_latency": True, **limits}]}))
    return path


@pytest.fixture
def search_setup(pretrained_config, tmp_path):
    """A config file (teacher loaded, ONNX Runtime only, a short profile), its target file and a search file."""
    (tmp_path / "ort.yaml").write_text(yaml.safe_dump(ORT))
    cfg = pretrained_config({"targets": ["ort.yaml"], "profile": QUICK, "quantize": {"mode": "ptq", "calibration_size": 64},
                             "prune": {"steps": 1, "recovery": {"epochs": 1}}})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return tmp_path


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekd", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


# ------------------------------------------------------------------------------------------ distances


def check(budget, limit, measured, passed=False):
    return {"budget": budget, "limit": limit, "measured": measured, "passed": passed, "skipped": False}


def test_a_failed_check_is_as_far_as_it_is_past_its_limit_relative_to_the_limit():
    assert check_distance(check("max_latency_ms.p95", 2.0, 3.0)) == pytest.approx(0.5)
    assert check_distance(check("min_accuracy", 0.98, 0.97)) == pytest.approx(0.01 / 0.98)
    assert check_distance(check("max_size_mb", 1.0, 1.25)) == pytest.approx(0.25)
    assert check_distance(check("max_percentile_spread.p95", 0.2, 0.31)) == pytest.approx(0.55)  # an upper limit too
    assert check_distance(check("min_sqnr_db", 30.0, 24.0)) == pytest.approx(0.2)
    assert check_distance(check("rate_hz", 30.0, 1.2)) == pytest.approx(0.2)  # 120% of the time busy
    assert check_distance(check("min_accuracy", 0.98, None)) == 1.0  # not measured
    assert check_distance(check("min_accuracy", 0.98, 0.99, passed=True)) == 0.0
    # failed although under its bound (an unstable latency): still a failure, never distance 0
    assert check_distance(check("max_latency_ms.p95", 2.0, 1.0)) > 0


def test_the_sampler_prefers_passing_runtimes_then_accuracy_and_otherwise_the_closest():
    def cand(backend, passed, accuracy, distance):
        return {"target": "t", "backend": backend, "precision": "int8", "passed": passed, "accuracy": accuracy,
                "distance": distance, "p95_ms": 1.0, "size_bytes": 1, "trial": 0}
    both = trial_value([cand("ort", True, 0.9, 0.0), cand("ov", True, 0.8, 0.0)])
    one = trial_value([cand("ort", True, 0.9, 0.0), cand("ov", False, 0.95, 0.2)])
    assert both == pytest.approx(1.85) and one == pytest.approx((1.9 - 0.2) / 2) and both > one
    assert trial_value([cand("ort", False, 0.9, 0.1)]) > trial_value([cand("ort", False, 0.9, 0.5)])
    assert math.isfinite(trial_value([]))


# ------------------------------------------------------------------------------------------ end to end


def _not_json(constant: str):
    raise AssertionError(f"search.json holds {constant}, which is not JSON")


@pytest.mark.slow  # whole searches (1-2.5 min here): make test stays within its 20 minutes
def test_search_finds_the_passing_artifact_shares_stages_and_best_yaml_rebuilds_it(search_setup):
    import edgekd
    from edgekd.search import search

    tmp = search_setup
    limit = budgets(tmp, min_accuracy=0.5, max_latency_ms={"p95": 50.0})
    result = search(tmp / "cfg.yaml", limit, trials=3, out=tmp / "out", space=tmp / "space.yaml", seed=1)
    complete = [t for t in result.trials if t["state"] == "COMPLETE"]
    ran = [t for t in complete if t["duplicate_of"] is None]
    # --trials counts distinct choices: a proposal repeating a finished one reuses its result and does not count
    assert len(ran) == 3 and len({json.dumps(t["settings"], sort_keys=True) for t in ran}) == 3 and result.passed
    for t in complete:
        if t["duplicate_of"] is not None:
            assert next(r for r in ran if r["number"] == t["duplicate_of"])["settings"] == t["settings"]
    # every trial that ran is a run folder whose report holds its candidates, each gated
    for t in ran:
        report = json.loads((tmp / "out" / t["folder"] / "report.json").read_text())
        ids = {a["id"] for a in report["artifacts"]}
        mine = [c for c in result.candidates if c["trial"] == t["number"]]
        assert {c["id"] for c in mine} == ids and all(c["passed"] == (c["distance"] == 0) for c in mine)
    # one teacher stage for every trial, one distilled student per width tried
    store = tmp / "out" / "stages"
    assert len(list((store / "teacher").iterdir())) == 1
    widths = {t["settings"]["student.kwargs.width"] for t in ran}
    assert len(list((store / "distill").iterdir())) == len(widths)
    chosen = result.chosen["ort-only"]
    assert chosen["passed"] and chosen == min((c for c in result.candidates if c["passed"]),
                                              key=lambda c: (-c["accuracy"], c["p95_ms"], c["size_bytes"], c["trial"]))
    # best.yaml is a plain config that runs from anywhere and rebuilds the chosen artifact's accuracy exactly
    saved = json.loads((tmp / "out" / "search.json").read_text(), parse_constant=_not_json)
    assert saved["passed"] and saved["chosen"]["ort-only"]["trial"] == chosen["trial"]
    assert "<svg" in (tmp / "out" / "search.html").read_text()
    rerun = edgekd.run(tmp / "out" / "best.yaml", tmp / "rerun")
    again = next(a for a in rerun.report["artifacts"] if a["id"] == chosen["id"])
    assert again["accuracy"] == chosen["accuracy"]


@pytest.mark.slow  # whole searches (1-2.5 min here): make test stays within its 20 minutes
def test_an_impossible_budget_exits_1_naming_the_binding_budget_and_the_distance(search_setup):
    tmp = search_setup
    limit = budgets(tmp, min_accuracy=0.999, max_size_mb=10.0)
    done = cli("search", "cfg.yaml", "-b", str(limit), "-n", "1", "--space", "space.yaml", "-o", "out", cwd=tmp)
    assert done.returncode == 1, done.stderr[-3000:]
    text = " ".join(done.stderr.split())
    assert "no candidate meets the budgets. Binding budget: min_accuracy (limit 0.999)" in text
    closest = json.loads((tmp / "out" / "search.json").read_text())["chosen"]["ort-only"]
    assert f"misses it by {closest['binding']['distance']:.1%} of the limit" in text
    assert closest["binding"]["distance"] == pytest.approx((0.999 - closest["accuracy"]) / 0.999)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("space, named", [
    ({"space": {"prune.ratoi": [0.2]}}, "search space prune.ratoi: 0.2: prune.ratoi: unknown key 'ratoi'; did you mean 'ratio'?"),
    ({"space": {"student.kwargs.widht": [0.5]}}, "search space student.kwargs.widht: 0.5: student: model 'tiny_cnn' has no argument 'widht'"),
    ({"space": {"quantize.mode": []}}, "space.quantize.mode"),
    ({"spaec": {}}, "spaec"),
])
def test_a_bad_search_space_stops_before_any_trial_naming_the_choice(search_setup, space, named):
    tmp = search_setup
    (tmp / "bad.yaml").write_text(yaml.safe_dump(space))
    limit = budgets(tmp, min_accuracy=0.5)
    done = cli("search", "cfg.yaml", "-b", str(limit), "-n", "2", "--space", "bad.yaml", "-o", "out", cwd=tmp)
    assert done.returncode == 2, done.stderr[-3000:]
    assert named in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert not (tmp / "out").exists()  # nothing made, nothing trained


def test_choices_that_clash_in_combination_stop_before_any_trial(search_setup):
    tmp = search_setup
    space = {"space": {"size": {"macs": {"prune.target_macs": 20000}}, "ratio": {"0.3": {"prune.ratio": 0.3}}}}
    (tmp / "clash.yaml").write_text(yaml.safe_dump(space))
    done = cli("search", "cfg.yaml", "-b", str(budgets(tmp, min_accuracy=0.5)), "-n", "2", "--space", "clash.yaml",
               "-o", "out", cwd=tmp)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "search space ratio: 0.3, size: macs: prune: give one of ratio, target_macs" in " ".join(done.stderr.split())
    assert not (tmp / "out").exists()


@pytest.mark.slow  # whole searches (1-2.5 min here): make test stays within its 20 minutes
def test_a_study_is_continued_only_with_the_same_config_budgets_and_space(search_setup):
    tmp = search_setup
    first = cli("search", "cfg.yaml", "-b", str(budgets(tmp, min_accuracy=0.1)), "-n", "1", "--space", "space.yaml",
                "-o", "out", cwd=tmp)
    assert first.returncode == 0, first.stderr[-3000:]
    again = cli("search", "cfg.yaml", "-b", str(budgets(tmp, min_accuracy=0.2)), "-n", "1", "--space", "space.yaml",
                "-o", "out", cwd=tmp)  # the budgets changed: the old verdicts would answer the wrong question
    assert again.returncode == 2 and "holds a search of another config, budgets file, space or objectives" in again.stderr
    assert "Traceback" not in again.stderr


def test_best_yaml_paths_point_at_the_same_files_and_names_stay_names(tmp_path):
    from edgekd.search.relocate import relocate

    config_dir, dest = tmp_path / "project", tmp_path / "runs" / "search"
    (config_dir / "tiny_cnn").mkdir(parents=True)  # a folder named like a zoo model must not turn zoo:tiny_cnn into a path
    dest.mkdir(parents=True)
    (config_dir / "net.py").write_text("")
    (config_dir / "w.safetensors").write_text("")
    (config_dir / "data.npz").write_text("")
    cfg = {"data": {"source": "npz:data.npz"}, "student": {"model": "zoo:tiny_cnn"},
           "teacher": {"members": [{"model": "python:net:Net", "weights": "w.safetensors"},
                                   {"model": "python:./net.py:Net"}, {"model": "python:pkg.nets:Net"}]},
           "quantize": {"calibration": str(tmp_path / "abs")}, "targets": ["host-cpu"]}
    moved = relocate(cfg, config_dir, dest)
    assert moved["data"]["source"] == "npz:../../project/data.npz"
    assert moved["student"]["model"] == "zoo:tiny_cnn"
    assert moved["teacher"]["members"][0] == {"model": "python:../../project/net.py:Net",
                                             "weights": "../../project/w.safetensors"}
    assert moved["teacher"]["members"][1]["model"] == "python:../../project/net.py:Net"
    assert moved["teacher"]["members"][2]["model"] == "python:pkg.nets:Net"  # dotted: imported with the folder on sys.path
    assert moved["quantize"]["calibration"] == str(tmp_path / "abs")  # absolute stays absolute
    assert moved["targets"] == ["host-cpu"]  # a built-in target stays a name


def test_a_missing_budgets_file_is_named(search_setup):
    done = cli("search", "cfg.yaml", "-b", "nope.yaml", "-n", "1", "-o", "out", cwd=search_setup)
    assert done.returncode == 2 and "nope.yaml" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------ killed and shared


def _study(out: Path):
    import optuna

    return optuna.load_study(study_name="edgekd-search", storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_a_search_killed_mid_trial_is_retried_in_its_folder_and_finishes(search_setup):
    tmp = search_setup
    cfg = yaml.safe_load((tmp / "cfg.yaml").read_text())
    cfg["distill"]["train"]["epochs"] = 30  # long enough to be killed while training
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    limit = budgets(tmp, min_accuracy=0.1)
    args = [sys.executable, "-m", "edgekd", "search", "cfg.yaml", "-b", str(limit), "-n", "2", "--space", "space.yaml",
            "-o", "out", "--heartbeat-s", "1"]
    first = subprocess.Popen(args, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = tmp / "out" / "trial-0" / "distill" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, "the search ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(4)  # past the grace period (3 heartbeats)
    done = cli(*args[3:], cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _study(tmp / "out").trials
    assert trials[0].state.name == "FAIL"  # the killed one, failed by its stale heartbeat
    retry = trials[1]
    assert retry.params == trials[0].params and retry.user_attrs["folder"] == "trial-0"
    assert len({json.dumps(t.user_attrs["settings"], sort_keys=True) for t in trials if t.state.name == "COMPLETE"}) == 2
    distilled = json.loads((tmp / "out" / "trial-0" / "distill" / "stage.json").read_text())["record"]["train"]
    assert distilled["resumed_from_epoch"] > 0  # the retried training continued from its checkpoint


@pytest.mark.slow
def test_two_searches_on_one_study_never_run_the_same_choices_twice(search_setup):
    tmp = search_setup
    limit = budgets(tmp, min_accuracy=0.1)
    args = [sys.executable, "-m", "edgekd", "search", "cfg.yaml", "-b", str(limit), "-n", "4", "--space", "space.yaml",
            "-o", "out"]
    (tmp / "out").mkdir()
    procs = [subprocess.Popen(args, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    trials = [t for t in _study(tmp / "out").trials if t.state.name == "COMPLETE"]
    ran = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(ran) == 4  # every choice of the 2 x 2 space, once
    settings = [json.dumps(t.user_attrs["settings"], sort_keys=True) for t in ran]
    assert len(settings) == len(set(settings))  # each choice ran once; repeats reused its result


def test_a_twin_finishing_between_the_looks_is_reused_or_waited_for_never_run_again(tmp_path, monkeypatch):
    # The interleaving two searches on one study hit: trial 0 (another process) holds the claim on the choices and
    # is running at this trial's first look, then finishes before its second; this trial must not run them again.
    import optuna

    from edgekd.search import compress

    monkeypatch.setattr(compress, "WAIT_POLL_S", 0)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    settings = {"student.kwargs.width": "0.5"}
    twin = study.ask()
    twin.set_user_attr("settings", settings)
    twin.set_user_attr("candidates", [])
    assert compress._reuse(study, twin, settings, tmp_path / "claims") is None  # the twin claims the choices
    real_get_trials, looks = study.get_trials, []

    def get_trials(*args, **kwargs):  # the twin finishes right after this trial's first look at the study
        trials = real_get_trials(*args, **kwargs)
        looks.append(1)
        if len(looks) == 1:
            study.tell(twin, 0.5)
        return trials

    monkeypatch.setattr(study, "get_trials", get_trials)
    trial = study.ask()
    try:
        value = compress._reuse(study, trial, settings, tmp_path / "claims")
    except optuna.TrialPruned:  # waited for: the sampler proposes again and then finds the finished twin
        value = "pruned"
    assert value in (0.5, "pruned")
    if value == 0.5:
        assert trial.user_attrs["duplicate_of"] == twin.number


@pytest.mark.parametrize("budgets, config, expected", [
    ([{"target": "*", "max_accuracy_drop": 0.02}, {"target": "host-cpu", "backend": "openvino", "max_accuracy_drop": 0.005}],
     {}, {"compile.int8_max_accuracy_drop": 0.005}),  # the tightest over the INT8 artifacts host-cpu builds
    ([{"target": "*", "max_accuracy_drop": 0.005}, {"target": "*", "precision": "int8", "max_accuracy_drop": 0.03}],
     {}, {"compile.int8_max_accuracy_drop": 0.03}),  # as the gate reads them: the later entry wins
    ([{"target": "*", "against": "teacher"}, {"target": "*", "max_accuracy_drop": 0.01}], {}, {}),  # the teacher's
    ([{"target": "*", "precision": "fp32", "max_accuracy_drop": 0.01}], {}, {}),  # not INT8
    ([{"target": "*", "min_accuracy": 0.9}], {}, {}),
    ([{"target": "pi-*", "max_accuracy_drop": 0.01}], {}, {}),  # another target
    ([{"target": "*", "max_accuracy_drop": 0.01}], {"compile": {"int8_max_accuracy_drop": 0.03}}, {}),  # the config's
    ([{"target": "*", "max_accuracy_drop": 0.01}], {"compile": {"int8_max_accuracy_drop": None}}, {}),  # off, said so
])
def test_an_int8_accuracy_drop_budget_becomes_every_trials_mixed_precision_budget(tmp_path, budgets, config, expected):
    from edgekd.search.compress import float_layers_from_budgets

    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"budgets": budgets}))
    assert float_layers_from_budgets({"targets": ["host-cpu"], **config}, path, tmp_path) == expected


def test_two_objectives_are_the_mean_accuracy_and_figure_of_each_runtimes_best_and_the_budgets_a_constraint():
    from edgekd.search.candidates import trial_constraint, trial_values

    def cand(backend, accuracy, p95, passed, distance):
        return {"trial": 0, "id": f"t/{backend}/int8", "target": "t", "backend": backend, "precision": "int8",
                "accuracy": accuracy, "p95_ms": p95, "size_bytes": 1, "mj_per_inference": None, "passed": passed,
                "distance": distance}

    found = [cand("onnxruntime", 0.9, 0.2, True, 0.0), cand("onnxruntime", 0.95, 0.5, False, 0.3),
             cand("openvino", 0.8, 0.4, False, 0.5), cand("openvino", 0.7, 0.1, False, None)]
    # per runtime its best: ORT's passing 0.9 @ 0.2 ms; OpenVINO's closest 0.8 @ 0.4 ms
    assert trial_values(found, "accuracy-latency") == pytest.approx((0.85, 0.3))
    assert trial_constraint(found) == pytest.approx(0.25)  # (0 + 0.5) / 2: infeasible until both pass
    with pytest.raises(ValueError, match="energy per inference"):
        trial_values(found, "accuracy-energy")  # no energy measured: nothing to place


def test_an_unknown_objective_is_refused_naming_the_choices(search_setup):
    done = cli("search", "cfg.yaml", "-b", str(budgets(search_setup, min_accuracy=0.5)), "-n", "1", "--objectives",
               "speed", "-o", "out", cwd=search_setup)
    assert done.returncode == 2 and "--objectives 'speed': expected one of budgets, accuracy-latency, accuracy-energy" \
        in " ".join(done.stderr.split())
    assert not (search_setup / "out").exists()


@pytest.mark.slow  # a two-trial search end to end (about a minute here)
def test_accuracy_against_latency_is_searched_with_the_budgets_as_constraint(search_setup):
    tmp = search_setup
    limit = budgets(tmp, min_accuracy=0.5, max_latency_ms={"p95": 50.0})
    done = cli("search", "cfg.yaml", "-b", str(limit), "-n", "2", "--space", "space.yaml", "--objectives",
               "accuracy-latency", "-o", "out", cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    study = _study(tmp / "out")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    ran = [t for t in study.trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    assert len(ran) == 2
    for t in ran:
        tops = {}
        for c in t.user_attrs["candidates"]:
            tops.setdefault(c["backend"], []).append(c)
        from edgekd.search.candidates import best

        top = best(tops["onnxruntime"])
        assert t.values == pytest.approx([top["accuracy"], top["p95_ms"]])
        assert t.constraints == {"budgets": pytest.approx(0.0 if top["passed"] else top["distance"])}
    rows = json.loads((tmp / "out" / "search.json").read_text())["trials"]
    assert all(isinstance(r["value"], list) and len(r["value"]) == 2 for r in rows if r["state"] == "COMPLETE")
    again = cli("search", "cfg.yaml", "-b", str(limit), "-n", "2", "--space", "space.yaml", "-o", "out", cwd=tmp)
    assert again.returncode == 2 and "space or objectives" in again.stderr  # one objective now: another question
