"""Structured channel pruning with Torch-Pruning, and a safe file format for pruned models.

Torch-Pruning's dependency graph keeps residual additions, depthwise
convolutions and concatenations consistent; this module only chooses the
importance, resolves layer names and finds the ratio that meets a MACs or
parameter target. The output layers (whose channels are the classes) are found
on the model's own graph and never pruned, whatever they are called; a ratio
that would prune nothing is an error before any training, not a record saying
``pruned``. Pruned models are saved as safetensors plus the changed layer
attributes as JSON metadata, so loading never unpickles anything.

Transformer encoders (any model with an attention module: ``query``, ``key`` and ``value`` ``nn.Linear``
children and a ``num_heads`` attribute, as the zoo's ``bert``) are pruned by whole attention heads and by
the channels of the other Linears inside their blocks (the FFN's ``intermediate``); the hidden size (the
residual stream: embeddings, LayerNorms, what ``attention.output`` and the FFN ``output`` add back) and the
layers outside the blocks (pooler, classifier) are kept. ``ratio`` is the fraction of heads and of FFN
channels removed from each layer; ``round_to`` applies to FFN channels (heads are removed whole). The
attention module's head count must follow from ``query.out_features`` (the zoo's ``bert`` derives it).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch_pruning as tp
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError, ModelError
from .io import atomic_path
from .problems import Problem, close_matches, raise_problems
from .registry import Registry

IMPORTANCES: Registry = Registry("pruning importance")
IMPORTANCES.register("l1")(lambda: tp.importance.GroupMagnitudeImportance(p=1))
IMPORTANCES.register("l2")(lambda: tp.importance.GroupMagnitudeImportance(p=2))
IMPORTANCES.register("bn_scale")(lambda: tp.importance.BNScaleImportance())
IMPORTANCES.register("taylor")(lambda: tp.importance.GroupTaylorImportance())

NEEDS_GRADIENTS = {"taylor"}
# Attributes that pruning changes and that a freshly built model must take on before loading.
STRUCTURE_ATTRS = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


# Layers whose output channels Torch-Pruning removes (the roots of its pruning groups).
PRUNABLE = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)
# Ratios tried, largest first, to say what would prune when the configured one prunes nothing.
FALLBACK_RATIOS = (0.9, 0.75, 0.5, 0.3, 0.1)


def attention_heads(model: torch.nn.Module) -> dict[str, int]:
    """``{name: heads}`` of every attention module: ``query``, ``key`` and ``value`` nn.Linear children and an
    integer ``num_heads``. Empty for models without attention (images)."""
    found = {}
    for name, module in model.named_modules():
        if all(isinstance(getattr(module, p, None), torch.nn.Linear) for p in ("query", "key", "value")):
            heads = getattr(module, "num_heads", None)
            if isinstance(heads, int) and heads > 0:
                found[name] = heads
    return found


def _blocks(model: torch.nn.Module, attention: list[str]) -> list[str]:
    """The transformer blocks: for each attention module, its ancestor that is an item of a ModuleList or
    Sequential (``encoder.layers.0``; HF's ``encoder.layer.0``; ViT's ``blocks.0``), else the whole model."""
    blocks = []
    for name in attention:
        parts = name.split(".")
        block = ""
        for i in range(len(parts) - 1, 0, -1):
            if isinstance(model.get_submodule(".".join(parts[:i])), (torch.nn.ModuleList, torch.nn.Sequential)):
                block = ".".join(parts[: i + 1])
                break
        blocks.append(block)
    return blocks


def transformer_plan(model: torch.nn.Module) -> tuple[dict[torch.nn.Module, int], list[torch.nn.Module]]:
    """(Torch-Pruning's ``num_heads`` for every q/k/v Linear, the modules kept whole) for a transformer;
    ({}, []) for a model without attention. Kept: LayerNorms and Embeddings (their channels are the hidden
    size, so the residual stream's group is skipped whole) and every prunable layer outside the blocks."""
    heads = attention_heads(model)
    if not heads:
        return {}, []
    num_heads = {getattr(model.get_submodule(name), p): h
                 for name, h in heads.items() for p in ("query", "key", "value")}
    blocks = _blocks(model, list(heads))
    inside = lambda name: any(not b or name == b or name.startswith(b + ".") for b in blocks)  # noqa: E731
    kept = [m for n, m in model.named_modules() if n and (isinstance(m, (torch.nn.LayerNorm, torch.nn.Embedding))
                                                        or (isinstance(m, PRUNABLE) and not inside(n)))]
    return num_heads, kept


def prunable_layers(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if name and isinstance(module, PRUNABLE)]


def output_layers(model: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the layers whose output channels reach the model's output: the classes.

    Torch-Pruning's dependency graph couples every layer whose out-channels are pruned together; a group
    that reaches a node with no successor (the output itself, or the layer that returns the logits) would
    change the class count, so its layers are the output layers: a Linear head by any name, a 1x1 conv
    head and its BatchNorm before pooling, both heads of a concatenation. Traced on an eval-mode copy, so
    the model's BatchNorm statistics stay as they are.
    """
    trial = copy.deepcopy(model).eval()
    graph = tp.DependencyGraph().build_dependency(trial, example_inputs=example)
    names = {module: name for name, module in trial.named_modules()}
    last = {node for node in graph.module2node.values() if not node.outputs}
    found: dict[str, None] = {}
    for group in graph.get_all_groups(root_module_types=PRUNABLE):
        deps = [dep for dep, _ in group]
        if any(d.target in last and (d.target.type == tp.ops.OPTYPE.OUTPUT or graph.is_out_channel_pruning_fn(d.handler))
               for d in deps):
            found.update((names[d.target.module], None) for d in deps
                         if graph.is_out_channel_pruning_fn(d.handler) and names.get(d.target.module))
    return list(found)


def ignore_problems(model: torch.nn.Module, names: list[str], *, key: str) -> list[Problem]:
    """Every entry of ``prune.ignore`` that names no layer of ``model``, with close matches and the layers
    that would fit (those with channels to prune)."""
    modules = [n for n, _ in model.named_modules() if n]
    fit = prunable_layers(model)
    listing = ", ".join(fit[:20]) + (f" (and {len(fit) - 20} more)" if len(fit) > 20 else "") if fit else "(none)"
    problems = []
    for i, name in enumerate(names):
        try:
            model.get_submodule(name)
        except AttributeError:
            problems.append(Problem(
                f"{key}[{i}]", f"the student has no module {name!r}",
                f"a layer with channels to prune: {listing} (the output layers are kept in any case)",
                close_matches(name, modules, n=3, cutoff=0.5),
            ))
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
    ignore: list[str] = (),
    key: str = "prune",
) -> tp.pruner.MetaPruner:
    """A pruner that leaves the output layers and the ``ignore`` layers alone; a transformer loses whole
    heads and FFN channels only (see the module's docstring)."""
    ignored = resolve_layers(model, list(ignore), key=f"{key}.ignore")
    ignored += [model.get_submodule(name) for name in output_layers(model, example) if name not in ignore]
    num_heads, kept = transformer_plan(model)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=IMPORTANCES.get(importance, key=f"{key}.importance")(),
        pruning_ratio=ratio,
        iterative_steps=steps,
        global_pruning=global_pruning,
        round_to=round_to,
        ignored_layers=ignored + kept,
        num_heads=num_heads,
        prune_num_heads=bool(num_heads),
        prune_head_dims=False,
        head_pruning_ratio=ratio if num_heads else 0.0,
    )
    if num_heads and not global_pruning:
        _fix_local_head_schedule(pruner, num_heads, ratio, steps)
    return pruner


def _fix_local_head_schedule(pruner: tp.pruner.MetaPruner, num_heads: dict, ratio: float, steps: int) -> None:
    """Local head pruning removes ceil(r_k * heads left) at step k, r_k being the cumulative ratio, so over
    several steps it overshoots (ratio 0.5 in 2 steps: 1 of 4 heads, then 2 of 3). Per layer, give each step
    the fraction of the heads left that brings the removed count to what one step at r_k would remove:
    ``heads - int(heads * (1 - r_k))``, as Torch-Pruning counts channels."""
    for layer, heads in num_heads.items():
        removed, schedule = 0, [0.0]
        for k in range(1, steps + 1):
            # at least one head stays: a layer with no heads would have nothing to attend with
            target = min(heads - 1, heads - int(heads * (1 - ratio * k / steps)))
            # a hair under the exact fraction, so ceil() cannot round a float error up to one more head
            schedule.append(max(0.0, (target - removed - 1e-6) / (heads - removed)) if target > removed else 0.0)
            removed = max(removed, target)
        pruner.head_pruning_ratio_dict[layer] = schedule


def pruned_macs(model: torch.nn.Module, example: torch.Tensor, *, ratio: float, importance: str, **options) -> int:
    """MACs after one-shot pruning of a copy at ``ratio`` (``model`` stays as it is). Gradient-based
    importance ranks channels without changing how many each layer loses, so a copy is ranked by l2."""
    trial = copy.deepcopy(model)
    make_pruner(trial, example, ratio=ratio, importance="l2" if importance in NEEDS_GRADIENTS else importance,
                **{k: v for k, v in options.items() if k != "steps"}).step()
    return count(trial, example)[0]


def noop_problem(model: torch.nn.Module, example: torch.Tensor, *, ratio: float, key: str = "prune.ratio",
                 **options) -> Problem | None:
    """A Problem when pruning a copy at ``ratio`` does not lower the MACs, naming ratios that do.

    Torch-Pruning skips a layer whose pruned channel count would reach zero (or whose ``round_to``
    multiple would), so a ratio near 1, or a small model under ``round_to``, can prune nothing at all.
    """
    before = count(model, example)[0]
    after = pruned_macs(model, example, ratio=ratio, **options)
    if after < before:
        return None
    working = next(((r, m) for r in FALLBACK_RATIOS if r < ratio
                    for m in [pruned_macs(model, example, ratio=r, **options)] if m < before), None)
    hints = [f"ratio {working[0]} prunes MACs {before:,} -> {working[1]:,}" if working else "no smaller ratio prunes either"]
    if options.get("round_to"):
        hints.append(f"a smaller prune.round_to than {options['round_to']}")
    if options.get("ignore"):
        hints.append("fewer layers in prune.ignore")
    hints.append("prune.enabled: false to keep the model as it is")
    return Problem(key, f"pruning at ratio {ratio:.3g} removes nothing: MACs {before:,} -> {after:,}", "; ".join(hints))


def dry_run_problems(model: torch.nn.Module, cfg, example: torch.Tensor, *, key: str = "prune") -> list[Problem]:
    """Prune a copy of the (untrained) student once as configured, before any training: a ratio that
    removes nothing is found in seconds. Global pruning ranks channels across layers by their trained
    weights, so only the prune stage can tell for it (it checks again after each step)."""
    if not cfg.enabled or cfg.effective_ratio is None or cfg.global_pruning or ignore_problems(model, list(cfg.ignore), key=key):
        return []
    problem = noop_problem(model, example, ratio=cfg.effective_ratio, key=f"{key}.ratio",
                           importance=cfg.importance, round_to=cfg.round_to, ignore=list(cfg.ignore))
    return [problem] if problem is not None else []


def require_pruned(before: int, after: int, *, ratio: float, key: str = "prune.ratio") -> None:
    """Refuse pruning that removed nothing, before the last recovery trains a model recorded as pruned."""
    if after >= before:
        raise ConfigError(
            f"{key}: pruning at ratio {ratio:.3g} removed nothing (MACs {before:,} -> {after:,}); "
            "expected a smaller ratio or target, fewer prune.ignore layers or a smaller prune.round_to"
        )


def count(model: torch.nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) for ``example``, counted on the real graph: by Torch-Pruning for images; for token
    ids (an integer example) by torch's flop counter (MACs = flops / 2), since Torch-Pruning's module hooks
    miss the attention matmuls (no module of their own), as ``edgekd.models.stats.model_stats`` does."""
    if not isinstance(example, torch.Tensor) or example.is_floating_point():
        macs, params = tp.utils.count_ops_and_params(model, example)
        return int(macs), int(params)
    was_training = model.training
    model.eval()  # dropout off; no statistics to protect in a text encoder, but stay as we found it
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2), sum(p.numel() for p in model.parameters())


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
