"""Every config problem, found before the first stage runs and reported at once.

The pydantic schema checks each value's type; this checks what needs the plug-ins
and the models: loss names and arguments, the models themselves (built untrained,
with random weights, from the data's class count and input shape), layer names for
``distill.features`` and ``prune.ignore``, target files with their backends,
precisions and power models, and the budgets file. Nothing is trained, so a typo
costs seconds, not a trained teacher.

``check(ctx)`` raises one ConfigError naming every problem (key path, value, what
would be accepted, did-you-mean); ``problems(ctx)`` returns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backends import BACKENDS
from .config import ModelSpec, PipelineConfig
from .errors import ConfigError, EdgekdError
from .gate import load_budgets
from .gate.inputs import unmatched_budgets
from .losses import LOSSES, FeaturePair, LossInputs, build_loss, check_specs, logit_only
from .losses.layer_map import layer_pairs
from .models import FeatureRecorder, load_model
from .models.hooks import layer_problem
from .power_models import POWER_MODELS
from .problems import Problem, raise_problems, unknown
from .targets import load_target, search_dirs

__all__ = ["check", "problems"]


def check(ctx) -> None:
    """Raise one ConfigError naming every problem of ``ctx.config``; ``ctx`` is a StageContext (config, data)."""
    raise_problems(problems(ctx), "the config cannot run (checked before any stage; nothing was trained)")


def problems(ctx) -> list[Problem]:
    cfg: PipelineConfig = ctx.config
    found = loss_problems(cfg)
    artifacts, target_found = target_problems(cfg)
    found += target_found
    found += budget_problems(cfg, artifacts if not target_found else None)
    found += model_problems(ctx, losses_ok=not found_in(found, "distill.losses"))
    return found


def found_in(found: list[Problem], prefix: str) -> bool:
    return any(p.key.startswith(prefix) for p in found)


# ---------------------------------------------------------------- losses


def loss_problems(cfg: PipelineConfig) -> list[Problem]:
    found = check_specs(cfg.distill.losses, key="distill.losses")
    if not cfg.distill.features and cfg.distill.layer_map is None:
        for i, spec in enumerate(cfg.distill.losses):
            if spec["name"] in LOSSES and LOSSES.get(spec["name"]).needs_features:
                found.append(Problem(
                    f"distill.losses[{i}].name", f"loss {spec['name']!r} works on feature pairs, and neither "
                    "distill.features nor distill.layer_map gives any",
                    "distill.features: [{student: LAYER, teacher: LAYER}], distill.layer_map: uniform (BERT-style "
                    "encoders), or a loss on logits",
                ))
    if cfg.quantize.mode != "qad":
        return found
    # QAD trains the captured INT8 graph, whose layers have no names to hook: logit losses only.
    if cfg.quantize.losses is None:
        if cfg.distill.losses and not logit_only(cfg.distill.losses):
            found.append(Problem(
                "quantize.losses", "not given, and the distill losses without feature terms leave none for QAD",
                "a list of losses on logits, e.g. [{name: kd, temperature: 4.0}]",
            ))
        return found
    found += check_specs(cfg.quantize.losses, key="quantize.losses")
    for i, spec in enumerate(cfg.quantize.losses):
        if spec["name"] in LOSSES and LOSSES.get(spec["name"]).needs_features:
            found.append(Problem(
                f"quantize.losses[{i}].name", f"loss {spec['name']!r} needs feature pairs, which QAD's captured graph cannot give",
                ", ".join(n for n in LOSSES.names() if not LOSSES.get(n).needs_features),
            ))
    return found


# ---------------------------------------------------------------- targets and budgets


def target_problems(cfg: PipelineConfig) -> tuple[list[tuple[str, str, str]], list[Problem]]:
    """The (target, backend, precision) of every artifact the config asks for, and the problems found."""
    artifacts, found = [], []
    names = sorted({p.stem for d in search_dirs(cfg.base_dir) for p in d.glob("*.yaml")})
    for i, name in enumerate(cfg.targets):
        key = f"targets[{i}]"
        if Path(name).suffix not in (".yaml", ".yml") and name not in names:
            found.append(unknown(key, "target", name, names))
            continue
        try:
            target = load_target(name, cfg.base_dir, key=key)
        except ConfigError as error:
            found.append(Problem.from_error(key, error))
            continue
        for j, spec in enumerate(target.artifacts):
            where = f"{target.source}: artifacts[{j}]"
            if spec.backend not in BACKENDS:
                found.append(unknown(f"{where}.backend", "backend", spec.backend, BACKENDS.names()))
                continue
            offered = BACKENDS.get(spec.backend).precisions
            for k, precision in enumerate(spec.precisions):
                if precision in offered:
                    artifacts.append((target.name, spec.backend, precision))
                else:
                    found.append(unknown(f"{where}.precisions[{k}]", f"precision of {spec.backend}", precision, offered))
        if target.power is not None:
            found += power_problems(target.power, f"{target.source}: power")
    return artifacts, found


def power_problems(power: dict[str, Any], key: str) -> list[Problem]:
    name = power["model"]
    if name not in POWER_MODELS:
        return [unknown(f"{key}.model", "power model", name, list(POWER_MODELS))]
    # The power model checks its own parameters when it runs; run it once on a neutral benchmark.
    try:
        POWER_MODELS.get(name)(dict(power), {"latency_ms": {"mean": 1.0}, "cpu_utilization": None})
    except (ConfigError, ValueError, TypeError) as error:
        return [Problem(key, f"power model {name!r}: {error}")]
    return []


def budget_problems(cfg: PipelineConfig, artifacts: list[tuple[str, str, str]] | None) -> list[Problem]:
    """The budgets file loads, and each entry applies to some artifact (``artifacts`` None: unknown yet)."""
    if not cfg.gate.budgets:
        return []
    path = Path(cfg.gate.budgets)
    path = path if path.is_absolute() else cfg.base_dir / path
    try:
        budgets = load_budgets(path)
    except ConfigError as error:
        return [Problem.from_error("gate.budgets", error)]
    return [] if artifacts is None else unmatched_budgets(budgets, artifacts, str(path), "this run")


# ---------------------------------------------------------------- models and layer names


def model_problems(ctx, *, losses_ok: bool) -> list[Problem]:
    """Build every model untrained and check the layer names and losses against them."""
    cfg: PipelineConfig = ctx.config
    try:
        data = ctx.data
    except EdgekdError as error:
        # the models need its class count and input shape; a message that names its own data.* key keeps it
        key = str(error).split(":", 1)[0] if str(error).startswith("data.") else "data.source"
        # a text: source is text even when it does not load: its other settings can still be checked
        return [Problem.from_error(key, error)] + (text_problems(cfg, True) if cfg.data.source.startswith("text:") else [])
    found: list[Problem] = []
    # Building models draws random weights: leave the global generator as the stages expect to find it.
    with torch.random.fork_rng(devices=[]):
        teachers = [_build(spec, f"teacher.members[{i}]", data, cfg, found) for i, spec in enumerate(cfg.teacher.members)]
        student = _build(cfg.student, "student", data, cfg, found)
    found += text_problems(cfg, data.is_text, data.input_shape[0] if data.is_text else None)
    found += init_problems(cfg, student, teachers)
    pairs = [FeaturePair(p.student, p.teacher) for p in cfg.distill.features]
    if cfg.distill.layer_map is not None and student is not None and teachers and teachers[0] is not None:
        try:
            pairs += layer_pairs(student, teachers[0], cfg.distill.layer_map, key="distill.layer_map")
        except ConfigError as error:
            found.append(Problem.from_error("distill.layer_map", error))
    for i, pair in enumerate(pairs):
        if student is not None:
            found += _layer(student, pair.student, f"distill.features[{i}].student", "the student")
        if teachers and teachers[0] is not None:
            found += _layer(teachers[0], pair.teacher, f"distill.features[{i}].teacher", "teacher.members[0]")
    if student is not None and cfg.prune.enabled:
        from .prune import dry_run_problems, ignore_problems  # Torch-Pruning is imported only when pruning is on

        found += ignore_problems(student, list(cfg.prune.ignore), key="prune.ignore")
        found += _prune_target_problems(student, cfg, data.example())
        found += dry_run_problems(student, cfg.prune, data.example())  # a ratio that prunes nothing
    if losses_ok and not found and student is not None and all(t is not None for t in teachers):
        found += _loss_run_problems(student, teachers, pairs, cfg, data)
    return found


def _build(spec: ModelSpec, key: str, data, cfg: PipelineConfig, found: list[Problem]) -> nn.Module | None:
    try:
        args = data.model_args()
        return load_model(spec.model, kwargs=spec.kwargs, weights=spec.weights, num_classes=args.pop("num_classes"),
                          in_channels=args.pop("in_channels", None), data_args=args, base_dir=cfg.base_dir, key=key).eval()
    except EdgekdError as error:
        found.append(Problem.from_error(key, error))
    except Exception as error:  # user code (python:) that raises: its message, not our stack
        if not spec.model.startswith("python:"):
            raise
        found.append(Problem(f"{key}.model", f"building {spec.model!r} raised {type(error).__name__}: {error}"))
    return None


def _layer(model: nn.Module, name: str, key: str, what: str) -> list[Problem]:
    problem = layer_problem(model, name, key, what=what)
    return [problem] if problem is not None else []


def _prune_target_problems(student: nn.Module, cfg: PipelineConfig, example: torch.Tensor) -> list[Problem]:
    """A MACs or parameter target must lie below the student's count, which training does not change."""
    from .prune import count

    targets = [(k, getattr(cfg.prune, k)) for k in ("target_macs", "target_params") if getattr(cfg.prune, k) is not None]
    if not targets:
        return []
    macs, params = count(student, example)
    key, target = targets[0]
    current = macs if key == "target_macs" else params
    if target < current:
        return []
    return [Problem(f"prune.{key}", f"{target:,} is not below the student's {current:,}", f"a value below {current:,}")]


def _loss_run_problems(student: nn.Module, teachers: list[nn.Module], pairs: list[FeaturePair], cfg: PipelineConfig,
                       data) -> list[Problem]:
    """Run the distill losses once on a batch of zeros through the untrained models: feature shapes that a
    loss cannot pair (e.g. ``at`` on 2-D features) or per-teacher weights that do not fit show up here."""
    x = data.example(2)
    try:
        with torch.no_grad():
            s_logits, s_features = _forward(student, [p.student for p in pairs], x)
            t_logits, t_features = _forward(teachers[0], [p.teacher for p in pairs], x)
            each = [t_logits, *(m(x) for m in teachers[1:])]
            loss = build_loss(cfg.distill.losses)
            if pairs:
                loss.setup(pairs, {k: v.shape for k, v in s_features.items()}, {k: v.shape for k, v in t_features.items()})
            loss(LossInputs(s_logits, torch.zeros(2, dtype=torch.long), torch.stack(each).mean(0), each, s_features, t_features))
    except (EdgekdError, ValueError, RuntimeError) as error:
        return [Problem.from_error("distill.features" if pairs else "distill.losses", error)]
    return []


def _forward(model: nn.Module, names: list[str], x: torch.Tensor):
    with FeatureRecorder(model, names) as recorder:
        logits = model(x)
    missing = [n for n in names if n not in recorder.features]
    if missing:
        raise ConfigError(f"distill.features: modules {missing} are not called by the model's forward")
    return logits, dict(recorder.features)


def init_problems(cfg: PipelineConfig, student: nn.Module | None, teachers: list[nn.Module | None]) -> list[Problem]:
    """``student.init_from: teacher`` needs two BERT encoders, ``student.vocabulary: train`` a BERT student;
    ``teacher.finetune: none`` needs a checkpoint
    whose classification head fits the data (otherwise the teacher would teach with a random head)."""
    from .models.bert import BertClassifier

    found = []
    teacher = teachers[0] if teachers else None
    if cfg.student.init_from == "teacher" and student is not None and teacher is not None:
        if not (isinstance(student, BertClassifier) and isinstance(teacher, BertClassifier)):
            found.append(Problem("student.init_from", f"teacher, but the student ({type(student).__name__}) and "
                                 f"teacher ({type(teacher).__name__}) are not both BERT encoders (zoo:bert, hf:)",
                                 "leave it out, or use zoo:bert with an hf: teacher"))
    if cfg.student.vocabulary == "train" and student is not None and not isinstance(student, BertClassifier):
        found.append(Problem("student.vocabulary", f"train, but the student ({type(student).__name__}) has no token "
                             "table to trim (only the zoo's bert encoder does)", "all (leave it out)"))
    for i, spec in enumerate(cfg.teacher.members):
        if spec.vocabulary != "all":
            found.append(Problem(f"teacher.members[{i}].vocabulary", f"{spec.vocabulary}, but only the student's "
                                 "vocabulary can be trimmed (the teacher reads every token)", "leave it out"))
    for i, (spec, model) in enumerate(zip(cfg.teacher.members, teachers)):
        note = getattr(model, "source_note", None) or ""
        if spec.model.startswith("hf:") and cfg.teacher.finetune == "none" and spec.weights is None and "trained here" in note:
            found.append(Problem("teacher.finetune", f"none, but teacher.members[{i}] has no head that fits: {note}",
                                 "head (train the classification head) or all"))
    return found


def text_problems(cfg: PipelineConfig, is_text: bool, width: int | None = None) -> list[Problem]:
    """Settings that mean something for images only, or lengths that do not fit, on text data (and back).

    ``width``: the longest text's token count in the data (as stored)."""
    found = augment_problems(cfg, is_text)
    if is_text:
        if cfg.teacher.augment:
            found.append(Problem("teacher.augment", "true, but text data has no augmentation", "false, or leave it out"))
        if cfg.data.image_size is not None:
            found.append(Problem("data.image_size", f"{list(cfg.data.image_size)}, but {cfg.data.source} holds texts",
                                 "leave it out; data.max_length sets the text length"))
        length = cfg.profile.sequence_length
        if length is not None and length > cfg.data.max_length:
            found.append(Problem("profile.sequence_length", f"{length} is longer than data.max_length ({cfg.data.max_length}), "
                                 "the longest input the student's positions cover", f"at most {cfg.data.max_length}"))
        elif length is not None and width is not None and length < width:
            found.append(Problem("profile.sequence_length", f"{length} would cut the longest texts ({width} tokens), so "
                                 "artifacts would be scored on other texts than the student",
                                 f"at least {width}, or data.max_length: {length} to train on texts cut the same way"))
    elif cfg.profile.sequence_length is not None:
        found.append(Problem("profile.sequence_length", f"{cfg.profile.sequence_length}, but {cfg.data.source} holds images",
                             "leave it out (it sets the token count of text inputs)"))
    return found


def augment_problems(cfg: PipelineConfig, is_text: bool) -> list[Problem]:
    """``data.augment`` settings for the other modality, and ``distill.teacher_views`` that cannot hold the views."""
    found = []
    augment, views = cfg.data.augment, cfg.distill.teacher_views
    if is_text and augment is True:
        found.append(Problem("data.augment", "true, but for text that means nothing (random shifts are for images)",
                             "{token_dropout: 0.1}, or false"))
    elif not isinstance(augment, bool):
        image_only = [k for k in ("shift", "mixup", "cutmix") if getattr(augment, k)]
        if is_text and image_only:
            found.append(Problem(f"data.augment.{image_only[0]}", f"{getattr(augment, image_only[0])}, but "
                                 f"{cfg.data.source} holds texts ({', '.join(image_only)} are for images)",
                                 "token_dropout for text"))
        if not is_text and augment.token_dropout:
            found.append(Problem("data.augment.token_dropout", f"{augment.token_dropout}, but {cfg.data.source} holds "
                                 "images", "shift, mixup or cutmix for images"))
    augmentation = cfg.data.augmentation
    if views and augmentation is None:
        found.append(Problem("distill.teacher_views", f"{views}, but data.augment is off, so every view would be the "
                             "sample itself", "0, or turn data.augment on"))
    elif views and augmentation.cutmix:
        found.append(Problem("distill.teacher_views", f"{views}, but cutmix pastes a random box of a random partner "
                             "into each batch, which the fixed views do not hold", "0 (the teacher runs live on each "
                             "cut-mixed batch), or cutmix: 0 (mixup and shifts can be cached as fixed views)"))
    elif views and not cfg.distill.cache_teacher:
        found.append(Problem("distill.teacher_views", f"{views}, but distill.cache_teacher is false, so nothing is "
                             "cached", "0, or cache_teacher: true"))
    return found
