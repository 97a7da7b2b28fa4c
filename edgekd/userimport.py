"""User code named in a config: ``python:MODULE:ATTR`` for models and data sources.

One place parses the spec, imports the module and hashes its source, so the
model loader, the data loader and the stage cache keys all agree on which file
a spec means. MODULE is a ``.py`` path or a bare name with a file beside the
config (loaded from that file), or a dotted name imported normally with the
config's folder first on ``sys.path`` (so also a module found through
``PYTHONPATH`` or installed).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator, NamedTuple

from .errors import ConfigError, EdgekdError

SCHEME = "python:"


class PythonSpec(NamedTuple):
    module: str
    attr: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.module}:{self.attr}"


def parse_python_spec(text: str, *, where: str, attr: str = "ATTR") -> PythonSpec:
    """``python:MODULE:ATTR`` (the scheme is optional) -> (MODULE, ATTR); ``attr`` names ATTR in the error."""
    rest = text[len(SCHEME):] if text.startswith(SCHEME) else text
    module, sep, name = rest.rpartition(":")  # rpartition: a Windows path may hold a drive colon
    if not sep or not module or not name:
        raise ConfigError(f"{where}: expected {SCHEME}MODULE:{attr}, got {SCHEME + rest!r}")
    return PythonSpec(module, name)


def _local_file(module_name: str, base_dir: Path) -> Path | None:
    """The file a ``.py`` path or a bare name means when it lies beside the config, else None."""
    rel = module_name if module_name.endswith(".py") else module_name + ".py"
    file = Path(rel) if Path(rel).is_absolute() else Path(base_dir) / rel
    if file.is_file() and (module_name.endswith(".py") or "." not in module_name):
        return file
    return None


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def import_user_module(module_name: str, base_dir: Path, *, where: str, error: type[EdgekdError], prefix: str) -> ModuleType:
    """A file path, or a bare name with a ``.py`` file beside the config, loads from that file under a
    unique module name (two configs' ``model.py`` never collide); dotted names import normally with
    ``base_dir`` on ``sys.path``. Failures, the user code's own exceptions included, raise ``error``
    naming ``where`` and the user's message, not a traceback through edgekd."""
    file = _local_file(module_name, base_dir)
    if file is not None:
        digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:8]
        name = f"{prefix}_{file.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickle, TorchScript and dataclasses look classes up here
        try:
            with _on_path(file.parent):  # let the file import its siblings
                spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise error(f"{where}: importing {file} raised {type(exc).__name__}: {exc}") from exc
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    if module_name.endswith(".py"):
        missing = Path(module_name) if Path(module_name).is_absolute() else Path(base_dir) / module_name
        raise error(f"{where}: python file {missing} not found")
    try:
        with _on_path(Path(base_dir)):
            return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):  # the module itself, not its imports
            raise error(f"{where}: cannot import module {module_name!r} (and no file {Path(base_dir) / (module_name + '.py')}): "
                        f"{exc}") from exc
        raise error(f"{where}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise error(f"{where}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc


def source_file(module_name: str, base_dir: Path) -> Path | None:
    """The file ``import_user_module`` loads ``module_name`` from, wherever that is; None if it finds none.

    A dotted name is looked up as Python would import it (``sys.modules`` first, then the config's
    folder, then ``sys.path``), which for a package means importing its parent packages.
    """
    file = _local_file(module_name, base_dir)
    if file is not None or module_name.endswith(".py"):
        return file
    try:
        with _on_path(Path(base_dir)):
            spec = importlib.util.find_spec(module_name)
    except Exception:  # a broken parent package: the import itself will report it, with the config key
        return None
    if spec is None or not spec.has_location or not spec.origin:
        return None
    origin = Path(spec.origin)
    return origin if origin.is_file() else None


def source_hash(spec: str, base_dir: Path) -> str | None:
    """sha256 of the source behind ``python:MODULE:ATTR`` (or a bare MODULE), wherever it is imported from:
    beside the config, through PYTHONPATH or installed. Editing it changes the hash, so cached stages
    built from it re-run. None when no file is found (loading the spec reports why)."""
    rest = spec[len(SCHEME):] if spec.startswith(SCHEME) else spec
    module_name = rest.rpartition(":")[0] or rest
    file = source_file(module_name, base_dir)
    if file is None:
        return None
    return hashlib.sha256(file.read_bytes()).hexdigest()
