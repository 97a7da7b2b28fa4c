"""`edgekd profile --min-duration` asks for a defensible energy figure from the command line (issue 16)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import edgekd.pipeline as pipeline
from edgekd.cli import app
from edgekd.errors import StageError

MNIST = str(Path(__file__).resolve().parents[1] / "examples" / "mnist.yaml")


def test_min_duration_sets_the_energy_windows_total_and_refuses_a_negative_one(monkeypatch):
    seen = []

    def stop_before_running(cfg, out, **kwargs):
        seen.append(cfg)
        raise StageError("stopped before any stage ran")

    monkeypatch.setattr(pipeline, "run", stop_before_running)
    result = CliRunner().invoke(app, ["profile", MNIST, "--min-duration", "600"])
    assert result.exit_code == 2 and "stopped before any stage ran" in result.output
    (cfg,) = seen
    assert cfg.profile.energy.min_duration_s == 600.0
    assert cfg.profile.energy.windows == pipeline.as_config(MNIST).profile.energy.windows  # the rest as configured
    for bad_value in ("-3", "inf", "nan"):
        bad = CliRunner().invoke(app, ["profile", MNIST, "--min-duration", bad_value])
        assert bad.exit_code == 2 and "--min-duration" in bad.output, bad.output
    assert len(seen) == 1  # none of them reached the pipeline
