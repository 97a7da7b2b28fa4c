"""One error format for the config, target and budgets files: `key.path: message (got value)`, did-you-mean for keys."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from edgekd.config import load_config
from edgekd.errors import ConfigError
from edgekd.gate.budgets import load_budgets
from edgekd.targets import load_target


def error_of(load, path, data) -> list[str]:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value).splitlines()


LOADERS = {
    "config": (load_config, {"distill": {"trian": {"epochs": 2}}, "prune": {"ratio": 2}}),
    "target file": (lambda p: load_target(str(p)), {"name": "t", "artifacts": [{"backend": "onnxruntime", "precisions": ["fp32"],
                                                                                 "optoins": {}}], "device": {"connect_timeout_s": 0}}),
    "budgets file": (load_budgets, {"budgets": [{"target": "*", "max_latncy_ms": {"p95": 1}, "min_accuracy": 2}]}),
}


@pytest.mark.parametrize("what", LOADERS)
def test_every_loader_reports_every_problem_in_one_format(tmp_path, what):
    load, data = LOADERS[what]
    path = tmp_path / "file.yaml"
    header, *problems = error_of(load, path, data)
    assert header == f"invalid {what} {path} (2 problems):"
    assert len(problems) == 2 and all(line.startswith("  ") for line in problems)
    unknown = next(line for line in problems if "unknown key" in line)
    value = next(line for line in problems if "unknown key" not in line)
    assert "did you mean" in unknown and "; accepted: " in unknown
    assert value.rstrip().endswith(("(got 2)", "(got 0)"))


def test_unknown_keys_suggest_the_nearest_field_of_the_model_that_holds_them(tmp_path):
    lines = error_of(load_config, tmp_path / "c.yaml", {
        "studnet": {"model": "zoo:tiny_cnn"},
        "teacher": {"members": [{"model": "zoo:resnet", "wieghts": "t.safetensors"}]},
        "profile": {"energy": {"windws": 3}, "zzzz": 1},
    })
    text = "\n".join(lines)
    assert "studnet: unknown key 'studnet'; did you mean 'student'?" in text
    assert "teacher.members[0].wieghts: unknown key 'wieghts'; did you mean 'weights'?; accepted: model, kwargs, weights" in text
    assert "profile.energy.windws: unknown key 'windws'; did you mean 'windows'?" in text
    assert "profile.zzzz: unknown key 'zzzz'; accepted: warmup_s," in text  # nothing close: no guess, the keys that fit
    assert "base_dir" not in text  # set by edgekd, never by the file


@pytest.mark.parametrize("load, what", [(load_config, "config file"), (lambda p: load_target(str(p)), "target file"),
                                        (load_budgets, "budgets file")])
def test_the_top_level_must_be_a_mapping_and_yaml_errors_name_the_file(tmp_path, load, what):
    path = tmp_path / "list.yaml"
    assert "the top level must be a mapping of keys, got list" in error_of(load, path, "- a\n- b\n")[0]
    broken = error_of(load, path, "a: [1, 2\n")[0]
    assert broken.startswith(f"{what} {path} is not valid YAML")


def test_a_budget_percentile_that_does_not_exist_is_named_as_a_key(tmp_path):
    lines = error_of(load_budgets, tmp_path / "b.yaml", {"budgets": [{"target": "*", "max_latency_ms": {"p42": 1}}]})
    assert lines[1].startswith("  budgets[0].max_latency_ms.p42: key: Input should be 'p50'") and "(got 'p42')" in lines[1]


def test_loading_budgets_does_not_import_torch(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("budgets: [{target: '*', min_accuracy: 0.5}]\n")
    code = f"import sys; from edgekd.gate.budgets import load_budgets; load_budgets({str(path)!r}); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
