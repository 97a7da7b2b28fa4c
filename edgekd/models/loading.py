"""Loading models from the zoo, user code, Hugging Face folders, TorchScript, torch.export or ONNX, plus weights.

Weights are only ever read as tensors (safetensors, or ``torch.load`` with
``weights_only=True``): a checkpoint cannot run code on the machine that loads it.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError, ModelError
from ..io import atomic_path
from .ensemble import Ensemble
from .onnx_module import OnnxModule
from .zoo import create_model, data_arguments
from ..userimport import import_user_module, parse_python_spec

__all__ = ["load_model", "load_tensors", "load_weights", "read_state_dict", "save_weights", "OnnxModule", "Ensemble"]

SCHEMES = ("zoo", "python", "hf", "torchscript", "export", "onnx")
_SHOW = 10  # how many missing/unexpected/mismatched keys an error lists


def load_model(
    spec: str,
    *,
    kwargs: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    num_classes: int,
    in_channels: int | None = None,
    base_dir: Path = Path("."),
    key: str = "model",
    data_args: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build or load the model named by ``spec`` (``SCHEME:TARGET``), then load ``weights`` strictly.

    Schemes: ``zoo:NAME``, ``python:MODULE:CLASS`` (MODULE is an importable
    module or a ``.py`` file relative to ``base_dir``; CLASS may be any
    callable returning an nn.Module), ``hf:DIR`` (a local Hugging Face BERT
    checkpoint, or a packaged name; see ``edgekd.models.hf``), ``torchscript:PATH``,
    ``export:PATH`` (torch.export) and ``onnx:PATH`` (inference only). Paths are
    relative to ``base_dir``. zoo and python models receive ``num_classes``,
    ``in_channels`` and the entries of ``data_args`` (text: ``vocab_size``,
    ``pad_id``, ``max_length``) that their signature accepts; ``kwargs`` win.
    """
    scheme, sep, target = spec.partition(":")
    if not sep or scheme not in SCHEMES or not target:
        raise ConfigError(f"{key}: model spec {spec!r} must be SCHEME:TARGET with SCHEME one of {', '.join(SCHEMES)}")
    kwargs = dict(kwargs or {})
    if kwargs and scheme not in ("zoo", "python", "hf"):
        raise ConfigError(f"{key}: kwargs only apply to zoo:, python: and hf: models, not {scheme}:")
    base_dir = Path(base_dir)
    if scheme == "zoo":
        model = create_model(target, num_classes=num_classes, in_channels=in_channels, key=key,
                             data_args=data_args, **kwargs)
    elif scheme == "python":
        model = _load_python(target, kwargs, num_classes, in_channels, data_args, base_dir, key)
    elif scheme == "hf":
        from .hf import load_hf, resolve_hf_dir

        folder = resolve_hf_dir(target, base_dir, key)
        model = load_hf(folder, num_classes=num_classes, kwargs=kwargs, data_args=data_args, key=key)
    elif scheme == "onnx":
        if weights is not None:
            raise ConfigError(f"{key}: an ONNX model carries its own weights; remove 'weights'")
        try:
            return OnnxModule(_existing(target, base_dir, key, "ONNX model"))
        except ModelError as exc:  # onnxruntime's message names the file; the config key that named it goes first
            message = str(exc)
            raise ModelError(message if message.startswith(f"{key}: ") else f"{key}: {message}") from None
    else:
        path = _existing(target, base_dir, key, f"{scheme} model")
        try:
            model = _load_torchscript(path) if scheme == "torchscript" else _load_export(path)
        except Exception as exc:  # corrupt or wrong-format files raise assorted RuntimeErrors
            raise ModelError(f"{key}: cannot load {scheme} model {path}: {exc}") from exc
    if weights is not None:
        load_weights(model, _existing(str(weights), base_dir, key, "weights file"), key=key)
    return model


def _load_export(path: Path) -> nn.Module:
    return torch.export.load(str(path)).module()


def _load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():  # the user chose TorchScript; its deprecation notice is noise here
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")


def _existing(target: str, base_dir: Path, key: str, what: str) -> Path:
    path = Path(target).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise ModelError(f"{key}: {what} {path} not found")
    return path


def _load_python(
    target: str, kwargs: dict[str, Any], num_classes: int, in_channels: int | None,
    data_args: Mapping[str, Any] | None, base_dir: Path, key: str,
) -> nn.Module:
    module_name, attr = parse_python_spec(target, where=key, attr="CLASS")
    module = import_user_module(module_name, base_dir, where=key, error=ModelError, prefix="edgekd_user")
    factory = getattr(module, attr, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module))
        raise ModelError(f"{key}: {module_name} has no class {attr!r}; nn.Module classes there: {found}")
    # pass what the data decides (classes, channels, vocabulary) to models that want it
    kwargs.update(data_arguments(factory, num_classes=num_classes, in_channels=in_channels, data_args=data_args,
                                 kwargs=kwargs))
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{key}: cannot build {module_name}:{attr} with kwargs {kwargs}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{key}: {module_name}:{attr} returned {type(model).__name__}, not an nn.Module")
    return model


def read_state_dict(path: Path, *, key: str = "model") -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``.pt``/``.pth`` state dict (optionally under
    ``state_dict`` or ``model``), never unpickling anything but tensors."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{key}: weights file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            state: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:  # a foreign or cut-short file
            raise ModelError(f"{key}: {path} is not a readable weights file ({exc}); expected a .safetensors "
                             "file as safetensors.torch.save_file writes it") from None
    elif suffix in (".pt", ".pth"):
        state = load_tensors(path, f"{key}: {path}",
                             "save model.state_dict() with torch.save, or use .safetensors")
    else:
        raise ConfigError(f"{key}: weights {path} must be .safetensors, .pt or .pth")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise ModelError(f"{key}: {path} holds a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{key}: {path} has non-tensor entries {bad[:_SHOW]}; expected a state dict")
    return state


def load_tensors(path: Path, what: str, advice: str, kind: str = "weights file") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, never other objects.

    A file that is not torch's format, or was cut short, is "not readable"; one that holds other objects
    (classes, functions: what a pickle runs code with) is refused as untrusted. torch's own message is not
    shown: it advises ``weights_only=False``, which would run whatever the file holds.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ModelError(f"{what} is refused as untrusted: it holds Python objects other than tensors ({found[1]}), "
                             f"which are never unpickled; {advice}") from None
        raise ModelError(f"{what} is not a readable {kind} (not torch.save's format); {advice}") from None
    except (RuntimeError, OSError, ValueError, EOFError) as exc:  # truncated or foreign files
        reason = str(exc).split(". ")[0].splitlines()[0][:200] if str(exc) else type(exc).__name__  # torch's first sentence
        raise ModelError(f"{what} is not a readable {kind} ({reason}); {advice}") from None


def load_weights(model: nn.Module, path: Path, *, key: str = "model") -> None:
    """Strictly load ``path`` into ``model``; any mismatch raises ModelError listing it."""
    state = read_state_dict(path, key=key)
    expected = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from DataParallel/DDP
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label} {len(items)}: {', '.join(items[:_SHOW])}{' ...' if len(items) > _SHOW else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes))
        if items
    ]
    if problems:
        raise ModelError(f"{key}: weights {path} do not fit the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write ``model``'s state dict as safetensors, atomically (tmp file then rename)."""
    # clone: safetensors refuses tensors that share storage (tied or viewed weights)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
