"""Structured channel pruning with Torch-Pruning, and a safe file format for pruned models.

Torch-Pruning's dependency graph keeps residual additions, depthwise
convolutions and concatenations consistent; this module only chooses the
importance, resolves layer names and finds the ratio that meets a MACs or
parameter target. Pruned models are saved as safetensors plus the changed
layer attributes as JSON metadata, so loading never unpickles anything.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch_pruning as tp
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import ModelError
from .io import atomic_path
from .models.hooks import missing_layer
from .problems import Problem, raise_problems
from .registry import Registry

IMPORTANCES: Registry = Registry("pruning importance")
IMPORTANCES.register("l1")(lambda: tp.importance.GroupMagnitudeImportance(p=1))
IMPORTANCES.register("l2")(lambda: tp.importance.GroupMagnitudeImportance(p=2))
IMPORTANCES.register("bn_scale")(lambda: tp.importance.BNScaleImportance())
IMPORTANCES.register("taylor")(lambda: tp.importance.GroupTaylorImportance())

NEEDS_GRADIENTS = {"taylor"}
# Attributes that pruning changes and that a freshly built model must take on before loading.
STRUCTURE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


def ignore_problems(model: torch.nn.Module, names: list[str], *, key: str) -> list[Problem]:
    """Every entry of ``prune.ignore`` that names no layer of ``model``, with close matches."""
    problems = []
    for i, name in enumerate(names):
        try:
            model.get_submodule(name)
        except AttributeError:
            problems.append(missing_layer(model, name, f"{key}[{i}]", what="the student"))
    return problems


def resolve_layers(model: torch.nn.Module, names: list[str], *, key: str) -> list[torch.nn.Module]:
    raise_problems(ignore_problems(model, names, key=key), f"{key} names layers the model does not have", ModelError)
    return [model.get_submodule(name) for name in names]


def make_pruner(
    model: torch.nn.Module,
    example: torch.Tensor,
    *,
    importance: str,
    ratio: float,
    steps: int = 1,
    global_pruning: bool = False,
    round_to: int | None = None,
    ignore: list[str] = ("classifier",),
    key: str = "prune",
) -> tp.pruner.MetaPruner:
    ignored = resolve_layers(model, list(ignore), key=f"{key}.ignore")
    return tp.pruner.MetaPruner(
        model,
        example,
        importance=IMPORTANCES.get(importance, key=f"{key}.importance")(),
        pruning_ratio=ratio,
        iterative_steps=steps,
        global_pruning=global_pruning,
        round_to=round_to,
        ignored_layers=ignored,
    )


def count(model: torch.nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters), counted by Torch-Pruning on the real graph."""
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def ratio_for_target(
    model: torch.nn.Module,
    example: torch.Tensor,
    *,
    target_macs: int | None = None,
    target_params: int | None = None,
    key: str = "prune",
    **pruner_kwargs,
) -> float:
    """The smallest ratio whose one-shot pruning meets the target (bisection on copies)."""
    index = 0 if target_macs is not None else 1
    target = target_macs if target_macs is not None else target_params
    current = count(model, example)[index]
    if target >= current:
        raise ModelError(f"{key}: the target ({target:,}) is not below the model's current value ({current:,})")
    pruner_kwargs = {k: v for k, v in pruner_kwargs.items() if k != "steps"}

    def achieved(ratio: float) -> int:
        trial = copy.deepcopy(model)
        make_pruner(trial, example, ratio=ratio, key=key, **pruner_kwargs).step()
        return count(trial, example)[index]

    low, high = 0.0, 0.95
    if achieved(high) > target:
        raise ModelError(f"{key}: even a ratio of {high} leaves {achieved(high):,}, above the target {target:,}")
    for _ in range(12):
        middle = (low + high) / 2
        low, high = (low, middle) if achieved(middle) <= target else (middle, high)
    return high


def save_pruned(model: torch.nn.Module, path: Path) -> None:
    structure = {
        name: {attr: getattr(module, attr) for attr in STRUCTURE_ATTRS if hasattr(module, attr)}
        for name, module in model.named_modules()
        if any(hasattr(module, attr) for attr in STRUCTURE_ATTRS)
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"edgekd.structure": json.dumps(structure)})


def load_pruned(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Reshape a freshly built ``model`` to the pruned structure saved in ``path`` and load its weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"pruned weights {path} do not exist")
    with safe_open(str(path), framework="pt") as handle:
        structure = json.loads((handle.metadata() or {}).get("edgekd.structure", "{}"))
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    modules = dict(model.named_modules())
    for name, attrs in structure.items():
        if name not in modules:
            raise ModelError(f"{path}: layer {name!r} is not in the rebuilt model; was it built with other kwargs?")
        for attr, value in attrs.items():
            setattr(modules[name], attr, value)
    for full_name, tensor in tensors.items():
        module_name, _, leaf = full_name.rpartition(".")
        module = modules[module_name]
        if leaf in module._parameters and module._parameters[leaf] is not None:
            module._parameters[leaf] = torch.nn.Parameter(torch.empty_like(tensor), requires_grad=True)
        elif leaf in module._buffers and module._buffers[leaf] is not None:
            module._buffers[leaf] = torch.empty_like(tensor)
    model.load_state_dict(tensors, strict=True)
    return model
