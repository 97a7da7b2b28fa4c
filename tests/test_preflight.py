"""Every config error is found before the first stage runs, all at once, each with key, value and a suggestion.

The checks build the models untrained (seconds, no training); the CLI test runs a
config with three mistakes through ``edgekd run`` and checks that nothing was trained.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from edgekd import preflight
from edgekd.config import parse_config
from edgekd.errors import ConfigError
from edgekd.losses import LOSSES, check_specs, logit_only
from edgekd.stages import StageContext
from edgekd.targets import list_targets


def ctx_for(config: dict, tmp_path: Path) -> StageContext:
    return StageContext(config=parse_config(config, base_dir=tmp_path), run_dir=tmp_path / "run")


def found(config: dict, tmp_path: Path) -> list[str]:
    return [str(p) for p in preflight.problems(ctx_for(config, tmp_path))]


def only(problems: list[str], key: str) -> str:
    hits = [p for p in problems if p.startswith(key)]
    assert len(hits) == 1, problems
    return hits[0]


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------- a valid config


def test_tiny_config_has_no_problems_and_leaves_the_random_generator_alone(tiny_config, tmp_path):
    state = torch.get_rng_state()
    assert found(tiny_config(), tmp_path) == []
    assert torch.equal(state, torch.get_rng_state()), "building the models moved the stages' random stream"


# ---------------------------------------------------------------- losses


def test_loss_argument_typo_suggests_the_argument(tiny_config, tmp_path):
    problems = found(tiny_config({"distill": {"losses": [{"name": "kd", "temprature": 2.0}]}}), tmp_path)
    line = only(problems, "distill.losses[0].temprature")
    assert "did you mean 'temperature'?" in line and "accepted: weight, temperature" in line


def test_unknown_loss_suggests_the_near_name_and_lists_all(tiny_config, tmp_path):
    line = only(found(tiny_config({"distill": {"losses": [{"name": "kdd"}]}}), tmp_path), "distill.losses[0].name")
    assert "'kdd'" in line and "did you mean 'kd'" in line
    assert all(name in line.split("accepted:")[1] for name in LOSSES.names())


def test_every_loss_problem_at_once_with_a_bad_value():
    problems = [str(p) for p in check_specs(
        [{"name": "kd", "temperature": 0}, {"name": "ce", "weight": -1, "smoothing": 0.1}, {"weight": 1}], key="q")]
    assert len(problems) == 4, problems
    assert problems[0].startswith("q[0]: loss 'kd': temperature must be > 0")
    assert problems[1].startswith("q[1].weight") and problems[2].startswith("q[1].smoothing")
    assert "did you mean 'label_smoothing'" in problems[2]
    assert problems[3].startswith("q[2]: expected a mapping with a 'name'")


def test_feature_loss_without_features(tiny_config, tmp_path):
    line = only(found(tiny_config({"distill": {"losses": [{"name": "ce"}, {"name": "fitnet"}]}}), tmp_path),
                "distill.losses[1].name")
    assert "'fitnet'" in line and "distill.features" in line


def test_qad_losses_are_logit_losses(tiny_config, tmp_path):
    features = [{"student": "features.block2", "teacher": "layer2"}]
    problems = found(tiny_config({"distill": {"losses": [{"name": "at"}], "features": features}}), tmp_path)
    assert "quantize.losses" in only(problems, "quantize.losses")  # nothing left for QAD by default
    problems = found(tiny_config({"distill": {"features": features}, "quantize": {"losses": [{"name": "sp"}]}}), tmp_path)
    assert "'sp'" in only(problems, "quantize.losses[0].name")
    assert found(tiny_config({"quantize": {"mode": "ptq", "losses": [{"name": "sp"}]}}), tmp_path) == []


def test_logit_only_follows_needs_features():
    specs = [{"name": n} for n in LOSSES.names()] + [{"name": "unknown"}]
    kept = [s["name"] for s in logit_only(specs)]
    assert kept == [n for n in LOSSES.names() if not LOSSES.get(n).needs_features] + ["unknown"]


def test_losses_run_on_the_untrained_models(tiny_config, tmp_path):
    """'at' needs 4-D features: pairing it with the classifier's logits is caught without training."""
    config = tiny_config({"distill": {"losses": [{"name": "ce"}, {"name": "at"}],
                                      "features": [{"student": "classifier", "teacher": "layer2"}]}})
    assert "needs 4-D" in only(found(config, tmp_path), "distill.features")
    two = tiny_config({"distill": {"losses": [{"name": "multi_teacher", "weights": [1, 2, 3]}]}})
    two["teacher"]["members"] = [{"model": two["teacher"].pop("model"), "kwargs": two["teacher"].pop("kwargs")}] * 2
    assert "3 weights given for 2 teachers" in only(found(two, tmp_path), "distill.losses")


# ---------------------------------------------------------------- models and layer names


def test_unknown_zoo_student(tiny_config, tmp_path):
    line = only(found(tiny_config({"student": {"model": "zoo:tiny_cn"}}), tmp_path), "student")
    assert "'tiny_cn'" in line and "tiny_cnn" in line


def test_missing_python_module_and_class(tiny_config, tmp_path):
    line = only(found(tiny_config({"student": {"model": "python:no_such_module:Net"}}), tmp_path), "student")
    assert "no_such_module" in line
    (tmp_path / "mymodel.py").write_text(
        "import torch\n\nclass Net(torch.nn.Sequential):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))\n"
    )
    line = only(found(tiny_config({"student": {"model": "python:mymodel:Nett"}}), tmp_path), "student")
    assert "'Nett'" in line and "Net" in line


def test_python_model_that_raises_is_named_with_its_message(tiny_config, tmp_path):
    (tmp_path / "broken.py").write_text("import torch\n\ndef Net(**kwargs):\n    raise RuntimeError('width must be even')\n")
    line = only(found(tiny_config({"student": {"model": "python:broken:Net"}}), tmp_path), "student.model")
    assert "RuntimeError: width must be even" in line


def test_missing_model_and_weights_files(tiny_config, tmp_path):
    config = tiny_config({"teacher": {"model": "onnx:missing.onnx"}, "student": {"weights": "nope.safetensors"}})
    config["teacher"].pop("kwargs")
    problems = found(config, tmp_path)
    teacher = only(problems, "teacher.members[0]")
    assert "missing.onnx" in teacher and "not found" in teacher
    assert "nope.safetensors" in only(problems, "student")


def test_feature_layer_typos_name_the_side_and_suggest(tiny_config, tmp_path):
    config = tiny_config({"distill": {"losses": [{"name": "at"}], "features": [{"student": "featurs.block2", "teacher": "layr2"}]},
                          "quantize": {"mode": "ptq"}})
    problems = found(config, tmp_path)
    student = only(problems, "distill.features[0].student")
    assert "the student has no module 'featurs.block2'" in student and "did you mean 'features.block2'" in student
    assert "accepted:" in student and "classifier" in student.split("accepted:")[1]  # the names there are
    assert "did you mean 'layer2'" in only(problems, "distill.features[0].teacher")


def test_prune_ignore_typo_suggests_the_layer(tiny_config, tmp_path):
    line = only(found(tiny_config({"prune": {"ignore": ["classifier", "classifer"]}}), tmp_path), "prune.ignore[1]")
    assert "'classifer'" in line and "did you mean 'classifier'" in line
    assert found(tiny_config({"prune": {"enabled": False, "ignore": ["classifer"]}}), tmp_path) == []


def test_prune_target_above_the_student(tiny_config, tmp_path):
    line = only(found(tiny_config({"prune": {"target_macs": 10**12}}), tmp_path), "prune.target_macs")
    assert "1,000,000,000,000 is not below the student's" in line


# ---------------------------------------------------------------- targets and budgets


TARGET = {"name": "bad-board", "artifacts": [{"backend": "onnxruntim", "precisions": ["fp32"]},
                                             {"backend": "onnxruntime", "precisions": ["fp32", "int4"]}],
          "power": {"model": "tdp-fractoin", "tdp_w": 5}}


def test_target_backend_precision_and_power_model(tiny_config, tmp_path):
    path = write_yaml(tmp_path / "bad-board.yaml", TARGET)
    problems = found(tiny_config({"targets": ["host-cpu", "bad-board.yaml", "host-cpux"]}), tmp_path)
    assert "did you mean 'onnxruntime'" in only(problems, f"{path}: artifacts[0].backend")
    assert "'int4'" in only(problems, f"{path}: artifacts[1].precisions[1]")
    assert "did you mean 'tdp-fraction'" in only(problems, f"{path}: power.model")
    assert "did you mean 'host-cpu'" in only(problems, "targets[2]")


def test_power_model_parameters(tiny_config, tmp_path):
    write_yaml(tmp_path / "hot.yaml", {"name": "hot", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32"]}],
                                       "power": {"model": "tdp-fraction", "tdp": 5}})
    line = only(found(tiny_config({"targets": ["hot.yaml"]}), tmp_path), f"{tmp_path / 'hot.yaml'}: power")
    assert "tdp_w" in line


def test_broken_target_file_is_an_error_not_skipped(tmp_path):
    (tmp_path / "targets").mkdir()
    write_yaml(tmp_path / "targets" / "good.yaml", {"name": "good", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32"]}]})
    (tmp_path / "targets" / "broken.yaml").write_text("name: broken\nartifacts: [\n")
    with pytest.raises(ConfigError) as info:
        list_targets(tmp_path)
    assert "broken.yaml" in str(info.value) and "good.yaml" not in str(info.value)


def test_budgets_file_and_entries_that_match_nothing(tiny_config, tmp_path):
    problems = found(tiny_config({"gate": {"budgets": "missing.yaml"}}), tmp_path)
    assert "missing.yaml" in only(problems, "gate.budgets")
    path = write_yaml(tmp_path / "b.yaml", {"budgets": [{"target": "*", "min_accuracy": 0.5}, {"target": "host_cpu", "min_accuracy": 0.9}]})
    line = only(found(tiny_config({"gate": {"budgets": "b.yaml"}}), tmp_path), f"{path}: budgets[1]")
    assert "'host_cpu'" in line and "host-cpu/onnxruntime/fp32" in line


# ---------------------------------------------------------------- all at once, through the CLI


THREE_MISTAKES = {
    "distill": {"losses": [{"name": "ce", "weight": 0.1}, {"name": "kdd", "weight": 0.9}, {"name": "at", "weight": 1.0}],
                "features": [{"student": "features.blok2", "teacher": "layer2"}]},
    "prune": {"ignore": ["clasifier"]},
    "quantize": {"mode": "ptq"},
}


def test_check_raises_one_error_naming_every_problem(tiny_config, tmp_path):
    with pytest.raises(ConfigError) as info:
        preflight.check(ctx_for(tiny_config(THREE_MISTAKES), tmp_path))
    lines = str(info.value).splitlines()
    assert "3 problems" in lines[0] and len(lines) == 4
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "distill.losses[1].name", "distill.features[0].student", "prune.ignore[0]"]


def test_cli_refuses_three_mistakes_before_the_teacher_trains(tiny_config, tmp_path):
    """Needs the pipeline to call ``preflight.check`` before the first stage."""
    config = write_yaml(tmp_path / "three.yaml", tiny_config(THREE_MISTAKES))
    run = tmp_path / "run"
    edgekd = Path(sys.executable).parent / "edgekd"
    started = time.perf_counter()
    result = subprocess.run([str(edgekd), "run", str(config), "--out", str(run)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "250"}, timeout=600)
    seconds = time.perf_counter() - started
    print(f"edgekd run refused the config in {seconds:.1f} s")  # measured, never asserted
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for named in ("'kdd'", "'features.blok2'", "'clasifier'"):
        assert named in output, output
    assert not [p for p in run.rglob("*") if p.suffix in (".safetensors", ".pt", ".pth")], "a model was trained"
    assert not (run / "teacher" / "stage.json").exists()
