"""A run directory given relative to the working directory, with the config in another folder."""

from __future__ import annotations

import yaml

import edgekd


def test_relative_out_dir_with_config_elsewhere(tiny_config, tmp_path, monkeypatch):
    # A live teacher (augmentation on) is reloaded from the run's own weights file by the distill stage:
    # that path is relative to the run directory, never to the config's folder.
    cfg = tiny_config({"data": {"augment": True}, "teacher": {"train": {"epochs": 1}}, "distill": {"train": {"epochs": 1}}})
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "p.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    result = edgekd.run(config_dir / "p.yaml", "runs/rel", stages=["distill"])
    assert (tmp_path / "runs" / "rel" / "teacher" / "member0.safetensors").is_file()
    assert result["distill"].figures.accuracy > 0.3
