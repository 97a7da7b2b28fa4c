"""Turn a ModelRef from a record back into a model, and a model into a ModelRef."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import state_dict_hash
from ..models import load_model, save_weights
from ..records import ModelRef
from .base import StageContext


def weights_path(ref: ModelRef, ctx: StageContext) -> Path | None:
    if ref.weights is None:
        return None
    return ctx.absolute(ref.weights) if ref.weights_in_run else Path(ref.weights)


def load_ref(ref: ModelRef | dict, ctx: StageContext, *, key: str) -> torch.nn.Module:
    ref = ModelRef.from_dict(ref) if isinstance(ref, dict) else ref
    data = ctx.data
    path = weights_path(ref, ctx)
    if ref.format == "pruned":
        from ..prune import load_pruned  # only pruned students need Torch-Pruning's loader

        model = load_model(ref.model, kwargs=ref.kwargs, weights=None, num_classes=data.num_classes,
                           in_channels=data.input_shape[0], base_dir=ctx.config.base_dir, key=key)
        return load_pruned(model, path)
    return load_model(
        ref.model,
        kwargs=ref.kwargs,
        weights=str(path) if path else None,
        num_classes=data.num_classes,
        in_channels=data.input_shape[0],
        base_dir=ctx.config.base_dir,
        key=key,
    )


def save_ref(model: torch.nn.Module, spec: str, kwargs: dict, path: Path, ctx: StageContext) -> ModelRef:
    save_weights(model, path)
    return ModelRef(
        model=spec, kwargs=dict(kwargs), weights=ctx.relative(path), weights_in_run=True, sha256=state_dict_hash(model)
    )
