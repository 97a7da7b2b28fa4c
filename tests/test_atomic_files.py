"""The one atomic writer: whole files or none, readable by others as any new file is (umask, not 0600)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from edgekd.io import write_json
from edgekd.ondevice.atomic import atomic_path, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after (tests here run in one thread)."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_new_files_get(tmp_path, umask, mask, mode):
    umask(mask)
    record = tmp_path / "teacher" / "stage.json"
    write_json(record, {"stage": "teacher", "ok": True})
    with atomic_path(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"\x08\x07")  # what torch.save, onnx.save and the converters do with the path
    for path in (record, tmp_path / "model.onnx"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_writer_and_io_do_not_import_torch():
    code = "import sys, edgekd.io, edgekd.ondevice.atomic; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_weights_get_the_mode_new_files_get_though_safetensors_writes_0600(tmp_path, umask, mask, mode):
    """safetensors' save_file replaces the temporary file with its own, created 0600; the writer restores the mode."""
    torch = pytest.importorskip("torch")
    from edgekd.models import save_weights

    umask(mask)
    path = tmp_path / "distill" / "student.safetensors"
    save_weights(torch.nn.Linear(2, 3), path)
    assert stat.S_IMODE(path.stat().st_mode) == mode
