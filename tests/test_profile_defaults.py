"""The profile protocol's defaults are declared once (edgekd.ondevice.settings) and read everywhere else."""

from __future__ import annotations

import pytest

from edgekd.backends import DEVICE_TOOLS
from edgekd.backends.litert.tool import benchmark_model_args
from edgekd.config import ProfileConfig
from edgekd.ondevice.bench import parser
from edgekd.ondevice.settings import ENERGY, LATENCY, EnergySettings, LatencySettings
from edgekd.runners.base import bench_args


def test_the_profile_section_the_benchmark_flags_and_the_settings_agree():
    section = ProfileConfig()
    assert LatencySettings.from_profile(section.model_dump()) == LATENCY
    assert EnergySettings.from_profile(section.model_dump()) == ENERGY
    flags = parser().parse_args(["--artifact", "m.onnx", "--backend", "onnxruntime", "--data", "d.npz"])
    assert (flags.warmup_s, flags.warmup_runs, flags.runs, flags.min_seconds, flags.max_seconds, flags.stability_threshold,
            flags.repeats) == (LATENCY.warmup_s, LATENCY.warmup_runs, LATENCY.runs, LATENCY.min_seconds,
                               LATENCY.max_seconds, LATENCY.stability_threshold, LATENCY.max_repeats)
    assert (flags.meter, flags.energy_windows, flags.energy_window_s) == (ENERGY.meter, ENERGY.windows, ENERGY.window_s)
    # what the host passes is what the benchmark would have taken by itself
    passed = parser().parse_args(["--artifact", "m.onnx", "--backend", "onnxruntime", "--data", "d.npz", *bench_args(section)])
    assert vars(passed) == vars(flags)


def test_a_device_tool_without_settings_runs_the_default_protocol():
    args = benchmark_model_args("benchmark_model", "m.tflite", {}, {}, [])
    assert args[2:7] == [f"--warmup_runs={LATENCY.warmup_runs}", f"--warmup_min_secs={LATENCY.warmup_s:g}",
                         f"--num_runs={LATENCY.runs}", f"--min_secs={LATENCY.min_seconds:g}", f"--max_secs={LATENCY.max_seconds:g}"]
    partial = LatencySettings.from_profile({"runs": 50, "repeats": 7, "energy": {"windows": 0}})
    assert (partial.runs, partial.max_repeats, partial.warmup_s) == (50, 7, LATENCY.warmup_s)
    assert EnergySettings.from_profile({"energy": {"windows": 0}}) == EnergySettings(windows=0)


@pytest.mark.parametrize("name", DEVICE_TOOLS.names())
def test_every_device_tool_without_settings_runs_the_profile_sections_protocol(name):
    """A tool given no settings (or None for one) times as the profile section's defaults say, not by its own numbers."""
    tool = DEVICE_TOOLS.get(name)()
    section = ProfileConfig().model_dump()
    expected = tool.command("tool", "model", {}, section, [])
    assert tool.command("tool", "model", {}, {}, []) == expected
    assert tool.command("tool", "model", {}, {key: None for key in section}, []) == expected


def test_settings_and_the_writer_need_only_the_standard_library():
    """Both are copied to devices with the ondevice package, where only Python and numpy exist."""
    import ast
    import sys
    from pathlib import Path

    package = Path(__file__).parents[1] / "edgekd" / "ondevice"
    for path in (package / "settings.py", package / "atomic.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert all(n.split(".")[0] in sys.stdlib_module_names for n in names if n != "__future__"), (path.name, names)


def test_the_renamed_cov_threshold_key_is_an_error_naming_its_replacement(tmp_path):
    """profile.cov_threshold judged per-sample std/mean; its successor judges the median's spread. An old config is
    refused when it is read (before any stage runs), naming the key and what to write instead."""
    from edgekd.config import load_config
    from edgekd.errors import ConfigError

    path = tmp_path / "old.yaml"
    path.write_text("profile:\n  runs: 100\n  cov_threshold: 0.1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "profile.cov_threshold: 'cov_threshold' was renamed: use 'profile.stability_threshold' instead" in message
    assert "p50_spread" in message and "1 problem" in message
    path.write_text("profile:\n  runs: 100\n  stability_threshold: 0.1\n")
    assert load_config(path).profile.stability_threshold == 0.1
