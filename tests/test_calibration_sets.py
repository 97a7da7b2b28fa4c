"""The shipped calibration sets are reproducible from their manifests and the code that builds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgekd import calibration
from edgekd.data import prepare_data

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_digits_set_rebuilds_identically():
    shipped = json.loads((ROOT / "calibration" / "digits-128" / "manifest.json").read_text())
    data = prepare_data("builtin:digits", seed=shipped["seed"])
    rebuilt = calibration.draw(data, size=shipped["size"], seed=shipped["seed"]).manifest()
    assert rebuilt == shipped


def test_shipped_sets_load_and_match_their_data():
    cal = calibration.load(ROOT / "calibration" / "digits-128")
    x, y = cal.tensors(prepare_data("builtin:digits", seed=cal.seed))
    assert x.shape == (128, 1, 8, 8)
    assert sorted(set(y.tolist())) == list(range(10))


def test_build_script_help():
    result = subprocess.run([sys.executable, str(ROOT / "calibration" / "build.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "stratified" in result.stdout


def test_malformed_manifest_is_a_data_error(tmp_path):
    import pytest

    from edgekd.errors import DataError

    (tmp_path / "manifest.json").write_text('{"indices": [1, 2], "size": 2}')
    with pytest.raises(DataError, match="malformed"):
        calibration.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="malformed"):
        calibration.load(tmp_path)
