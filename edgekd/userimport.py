"""Import user code named in a config (``python:module:attr`` for data sources and models)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .errors import EdgekdError


def import_user_module(module_name: str, base_dir: Path, *, where: str, error: type[EdgekdError], prefix: str) -> ModuleType:
    """A file path, or a bare name with a ``.py`` file beside the config, loads from that file under a
    unique module name (two configs' ``model.py`` never collide); dotted names import normally with
    ``base_dir`` on ``sys.path``. Failures raise ``error`` naming ``where``."""
    rel = module_name if module_name.endswith(".py") else module_name + ".py"
    file = Path(rel) if Path(rel).is_absolute() else Path(base_dir) / rel
    if file.is_file() and (module_name.endswith(".py") or "." not in module_name):
        digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:8]
        name = f"{prefix}_{file.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickle, TorchScript and dataclasses look classes up here
        sys.path.insert(0, str(file.parent))  # let the file import its siblings
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.path.remove(str(file.parent))
        return module
    if module_name.endswith(".py"):
        raise error(f"{where}: python file {file} not found")
    sys.path.insert(0, str(base_dir))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise error(f"{where}: cannot import module {module_name!r} (and no file {file}): {exc}") from exc
    finally:
        sys.path.remove(str(base_dir))
