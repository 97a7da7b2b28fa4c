"""python:MODULE:ATTR: parsed once, imported from beside the config or from sys.path, its source hashed wherever it is."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from edgekd.errors import ConfigError, ModelError
from edgekd.userimport import import_user_module, parse_python_spec, source_file, source_hash


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text, expected", [
    ("python:mynet:Net", ("mynet", "Net")), ("mynet.py:Net", ("mynet.py", "Net")),
    ("python:pkg.models:build", ("pkg.models", "build")), ("python:C:/models/net.py:Net", ("C:/models/net.py", "Net")),
])
def test_specs_parse_to_module_and_attribute(text, expected):
    assert parse_python_spec(text, where="student.model") == expected


@pytest.mark.parametrize("text", ["python:mynet", "python::Net", "python:mynet:"])
def test_a_malformed_spec_names_the_key_and_the_form(text):
    with pytest.raises(ConfigError, match=r"student\.model: expected python:MODULE:CLASS, got 'python:"):
        parse_python_spec(text, where="student.model", attr="CLASS")


def test_a_module_beside_the_config_is_hashed_as_its_file(tmp_path):
    file = write(tmp_path / "mynet.py", "class Net: pass\n")
    expected = hashlib.sha256(file.read_bytes()).hexdigest()
    assert source_hash("python:mynet:Net", tmp_path) == source_hash("python:mynet.py:Net", tmp_path) == expected


def test_a_module_found_through_pythonpath_is_hashed_and_edits_change_the_hash(tmp_path, monkeypatch):
    config_dir, elsewhere = tmp_path / "config", tmp_path / "site"
    config_dir.mkdir()
    write(elsewhere / "userpkg_b7" / "__init__.py", "")
    module = write(elsewhere / "userpkg_b7" / "nets.py", "class Net: pass\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    assert source_file("userpkg_b7.nets", config_dir) == module
    before = source_hash("python:userpkg_b7.nets:Net", config_dir)
    assert before == hashlib.sha256(module.read_bytes()).hexdigest()
    module.write_text("class Net:\n    width = 2\n")
    assert source_hash("python:userpkg_b7.nets:Net", config_dir) not in (None, before)


def test_an_installed_module_is_hashed_where_it_is_installed(tmp_path):
    import edgekd.models.tiny_cnn as installed

    assert source_hash("python:edgekd.models.tiny_cnn:TinyCNN", tmp_path) == hashlib.sha256(
        open(installed.__file__, "rb").read()).hexdigest()


def test_a_module_that_is_nowhere_has_no_hash(tmp_path):
    assert source_hash("python:no_such_module_b7:Net", tmp_path) is None
    assert source_hash("python:gone.py:Net", tmp_path) is None


def test_a_user_module_that_raises_names_the_key_and_its_message(tmp_path):
    write(tmp_path / "broken.py", "raise RuntimeError('CUDA_HOME is not set')\n")
    with pytest.raises(ModelError, match=r"student\.model: importing .*broken\.py raised RuntimeError: CUDA_HOME is not set"):
        import_user_module("broken", tmp_path, where="student.model", error=ModelError, prefix="t")
    write(tmp_path / "needs.py", "import no_such_dependency_b7\n")
    with pytest.raises(ModelError, match="raised ModuleNotFoundError: No module named 'no_such_dependency_b7'"):
        import_user_module("needs", tmp_path, where="student.model", error=ModelError, prefix="t")
