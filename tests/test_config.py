"""Config errors name the key path, the bad value and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import edgekd
from edgekd.config import PipelineConfig, load_config, parse_config
from edgekd.errors import ConfigError


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


# ---------------------------------------------------------------- valid configs


def test_tiny_config_parses(tiny_config):
    cfg = parse_config(tiny_config())
    assert isinstance(cfg, PipelineConfig)
    assert cfg.teacher.members[0].model == "zoo:resnet" and cfg.teacher.members[0].kwargs == {"width": 0.25}
    assert cfg.distill.train.epochs == 3 and cfg.distill.train.batch_size == 64
    assert cfg.student.kwargs == {"width": 0.5}


def test_examples_mnist_yaml_loads():
    path = Path(__file__).resolve().parents[1] / "examples" / "mnist.yaml"
    cfg = load_config(path)
    assert cfg.name == "mnist" and cfg.data.source == "builtin:mnist5k"
    assert cfg.base_dir == path.parent


# ---------------------------------------------------------------- schema errors


def test_unknown_key_names_path(tiny_config):
    cfg = tiny_config()
    cfg["distill"]["trian"] = {"epochs": 3}
    message = config_error(cfg)
    assert "distill.trian" in message
    assert "unknown key" in message


def test_unknown_top_level_key():
    message = config_error({"studnet": {"model": "zoo:tiny_cnn"}})
    assert "studnet" in message and "unknown key" in message


def test_bad_value_names_path_and_got_value(tiny_config):
    cfg = tiny_config({"distill": {"train": {"epochs": 0}}})
    message = config_error(cfg)
    assert "distill.train.epochs" in message
    assert "got 0" in message
    assert "greater than or equal to 1" in message  # what was expected


def test_wrong_type_names_path_and_value(tiny_config):
    message = config_error(tiny_config({"distill": {"train": {"lr": "fast"}}}))
    assert "distill.train.lr" in message and "'fast'" in message and "number" in message

    message = config_error(tiny_config({"distill": {"train": {"batch_size": [64]}}}))
    assert "distill.train.batch_size" in message and "[64]" in message and "integer" in message


def test_every_error_is_reported(tiny_config):
    cfg = tiny_config({"distill": {"train": {"epochs": 0}}, "prune": {"ratio": 2.0}})
    message = config_error(cfg)
    assert "distill.train.epochs" in message and "prune.ratio" in message


def test_loss_lists_are_typed(tiny_config):
    message = config_error(tiny_config({"distill": {"losses": [{"weight": 0.5}, {"name": "kd", "weight": -1}]},
                                        "quantize": {"losses": [{"name": 3}]}}))
    lines = message.splitlines()[1:]  # one line per problem, whichever way the path is spelt
    assert re.search(r"distill\.losses(\.0|\[0\])\.name", lines[0])
    assert re.search(r"distill\.losses(\.1|\[1\])\.weight", lines[1]) and "-1" in lines[1]
    assert re.search(r"quantize\.losses(\.0|\[0\])\.name", lines[2]) and "3" in lines[2]
    cfg = parse_config(tiny_config({"distill": {"losses": [{"name": "kd", "temperature": 2.0}]}}))
    assert cfg.distill.losses == [{"name": "kd", "temperature": 2.0}]  # arguments kept as written, for the loss


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_weighted_ensemble_without_weights_names_teacher(tiny_config):
    cfg = tiny_config()
    cfg["teacher"]["ensemble"] = "weighted"
    message = config_error(cfg)
    assert message.splitlines()[1].strip().startswith("teacher:")
    assert "ensemble_weights" in message


def test_weighted_ensemble_with_wrong_count(tiny_config):
    cfg = tiny_config({"teacher": {"ensemble": "weighted", "ensemble_weights": [1.0, 2.0]}})
    message = config_error(cfg)
    assert "teacher" in message and "one weight per member (1)" in message


def test_empty_yaml_is_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == PipelineConfig(base_dir=tmp_path.resolve())


# ---------------------------------------------------------------- files


def test_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("distill:\n  train: {epochs: 3\n  losses: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "not valid YAML" in str(info.value)


def test_missing_file_names_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


def test_schema_error_from_file_names_file(tmp_path, tiny_config):
    path = write_yaml(tmp_path / "bad.yaml", tiny_config({"distill": {"train": {"epochs": 0}}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "distill.train.epochs" in str(info.value)


def test_yaml_python_tags_are_rejected_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "yaml.load ran code from the config"


# ---------------------------------------------------------------- errors raised by stages


def test_unknown_loss_name_names_list_index(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {"losses": [{"name": "ce", "weight": 0.1}, {"name": "kdd", "weight": 0.9}]}})
    with pytest.raises(ConfigError) as info:
        edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    message = str(info.value)
    assert "distill.losses[1].name" in message and "'kdd'" in message
    assert "did you mean 'kd'" in message and "kd" in message.split("accepted:")[1]  # lists the known losses
    assert not (tmp_path / "run" / "distill" / "stage.json").exists()


def test_unknown_loss_argument_names_index(pretrained_config, tmp_path):
    cfg = pretrained_config({"distill": {"losses": [{"name": "kd", "temprature": 2.0}]}})
    with pytest.raises(ConfigError) as info:
        edgekd.run(cfg, tmp_path / "run", stages=["distill"])
    assert "distill.losses[0]" in str(info.value) and "temprature" in str(info.value)


def test_unknown_stage_in_force(pretrained_config, tmp_path):
    with pytest.raises(ConfigError, match="--force 'distil'"):
        edgekd.run(pretrained_config(), tmp_path / "run", stages=["distill"], force="distil")


# ---------------------------------------------------------------- CLI


@pytest.fixture()
def cli(monkeypatch):
    from typer.testing import CliRunner

    from edgekd.cli import app

    monkeypatch.setenv("COLUMNS", "200")  # rich must not wrap the key path
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_bad_config_exits_2_and_names_key(cli, tmp_path, tiny_config):
    cfg = tiny_config()
    cfg["distill"]["trian"] = {}
    path = write_yaml(tmp_path / "bad.yaml", cfg)
    result = cli("run", path, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "distill.trian" in result.output and "unknown key" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_cli_missing_config_exits_2(cli, tmp_path):
    result = cli("distill", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "missing.yaml" in result.output and "does not exist" in result.output


def test_cli_python_tag_exits_2(cli, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    result = cli("run", path)
    assert result.exit_code == 2
    assert not marker.exists()


def test_taylor_importance_with_a_macs_target_is_refused():
    from edgekd.config import parse_config
    from edgekd.errors import ConfigError

    with pytest.raises(ConfigError, match="taylor"):
        parse_config({"prune": {"importance": "taylor", "target_macs": 1000}})
    parse_config({"prune": {"importance": "taylor", "ratio": 0.3}})  # with a ratio it is fine
