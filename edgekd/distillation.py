"""Distillation training shared by the stages that train a student: distill, prune recovery and QAD.

All three use the ``distill`` section's losses and the same teacher (live on each
augmented batch, or its outputs cached on disk: on the plain training split, or on
fixed augmented views of it), so a loss added to the registry serves every stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .context import StageContext
from .io import state_dict_hash
from .losses import FeaturePair, build_loss
from .losses.layer_map import layer_pairs
from .models import feature_shapes, model_stats
from .data.augment import ViewPlan
from .records import Compression, Figures, ModelRef, StudentRecord, TeacherCache, TeacherRecord, TrainSummary
from .train import CachedTeacher, LiveTeacher, Trainer
from .train.evaluation import evaluate, predict

TEACHER = "teacher"  # the stage whose record holds the teacher


def load_teachers(ctx: StageContext) -> tuple[list[torch.nn.Module], list[float], float]:
    """The teacher members, their ensemble weights and the calibrated temperature."""
    rec = ctx.record(TEACHER, TeacherRecord)
    members = [ctx.load_model(ref, key=f"teacher.members[{i}]").eval() for i, ref in enumerate(rec.members)]
    return members, rec.ensemble_weights, rec.temperature


def ensemble_logits(members: list[torch.nn.Module], weights: list[float], x: torch.Tensor) -> torch.Tensor:
    total = float(sum(weights))
    return sum((w / total) * predict(m, x) for w, m in zip(weights, members))


def teacher_source(
    ctx: StageContext, pairs: list[FeaturePair], *, use_cache: bool, extra: list[torch.nn.Module] = ()
) -> tuple[object, list[torch.nn.Module], TeacherCache]:
    """The live teacher, or its outputs cached on disk: on the training split as it is when augmentation is
    off, on ``distill.teacher_views`` fixed augmented views of it when that is set.

    ``extra`` members (e.g. the FP32 student during QAD) join the ensemble with weight 1.
    """
    members, weights, temperature = load_teachers(ctx)
    members, weights = members + list(extra), weights + [sum(weights) / len(weights)] * len(extra)
    live = LiveTeacher(members, weights, [p.teacher for p in pairs], temperature)
    data, augmentation, views = ctx.data, ctx.config.data.augmentation, ctx.config.distill.teacher_views
    if not use_cache or (augmentation is not None and not views):
        return live, members, TeacherCache(used=False, reason="augmentation on" if augmentation else "disabled")
    hashes = [m.sha256 for m in ctx.record(TEACHER, TeacherRecord).members] + [state_dict_hash(m) for m in extra]
    key = {"teachers": hashes, "weights": weights, **data.provenance()}
    plan = None
    if augmentation is not None:
        width = data.x_train.shape[1] if data.is_text else 0
        plan = ViewPlan.draw(augmentation, views, len(data.x_train), width, ctx.config.seed)
        key.update(views=views, augment=ctx.config.section("data")["augment"], seed=ctx.config.seed)
    cached = CachedTeacher.load_or_build(live, data.x_train, key, plan=plan, pad_id=data.pad_id)
    return cached, members, TeacherCache(used=True, hit=cached.hit, path=str(cached.path), views=views if plan else None)


def distill_into(
    ctx: StageContext,
    student: torch.nn.Module,
    out_dir: Path,
    *,
    train_config,
    description: str,
    run_key: str,
    batch_key: str = "distill.train.batch_size",
    step_hook=None,
    losses: list[dict] | None = None,
    use_features: bool = True,
    extra_teachers: list[torch.nn.Module] = (),
) -> tuple[TrainSummary, TeacherCache]:
    """Distill the teacher into ``student`` with the ``distill`` section's losses.

    ``batch_key`` is the config key of ``train_config.batch_size`` (named in torchrun's batch error).
    """
    cfg, data = ctx.config.distill, ctx.data
    pairs = [FeaturePair(p.student, p.teacher) for p in cfg.features] if use_features else []
    if use_features and cfg.layer_map is not None:
        pairs += layer_pairs(student, load_teachers(ctx)[0][0], cfg.layer_map, key="distill.layer_map")
    loss = build_loss(losses if losses is not None else cfg.losses)
    # text features are kept live: cached per sample they would take gigabytes, and each batch is cut to its
    # longest text, which cached full-width features would not match
    text_features = bool(pairs and data.is_text)
    # an extra member (QAD's FP32 student) gets a cache of its own; views of it cost more teacher passes than a
    # live teacher would make in fewer epochs than views, and the live teacher sees the student's batch all the same
    short_views = bool(extra_teachers and ctx.config.data.augmentation is not None
                       and cfg.teacher_views > train_config.epochs)
    use_cache = cfg.cache_teacher and loss.needs_teacher and not text_features and not short_views
    source, members, cache = teacher_source(ctx, pairs, use_cache=use_cache, extra=extra_teachers)
    if cfg.cache_teacher and not use_cache:
        why = ("no loss reads the teacher" if not loss.needs_teacher else
               "text feature losses use the live teacher" if text_features else
               f"{train_config.epochs} epochs with the live teacher take fewer passes than caching {cfg.teacher_views} views")
        cache = cache.model_copy(update={"reason": why})
    if pairs:
        loss.setup(
            pairs,
            feature_shapes(student, [p.student for p in pairs], data.example(2)),
            feature_shapes(members[0], [p.teacher for p in pairs], data.example(2)),
        )
    result = Trainer(
        student, loss, train_config, data, out_dir, teacher=source, feature_pairs=pairs,
        augment=ctx.config.data.augmentation, seed=ctx.config.seed, description=description,
        run_key=run_key, step_hook=step_hook, batch_key=batch_key,
    ).fit(resume=ctx.resume)
    return TrainSummary(**result.to_dict()), cache


def figures_of(model: torch.nn.Module, ctx: StageContext) -> Figures:
    """Accuracy, per-class accuracy and calibration on the test split, with parameters, MACs and size."""
    data = ctx.data
    test = evaluate(model, data.x_test, data.y_test, data.num_classes)
    stats = model_stats(model, data.example())
    return Figures(accuracy=test.accuracy, per_class_accuracy=test.per_class_accuracy, ece=test.ece,
                   params=stats.params, macs=stats.macs, size_bytes=stats.size_bytes,
                   embedding_params=stats.embedding_params or None, macs_note=stats.note or None)


def student_record(
    ctx: StageContext, student: torch.nn.Module, ref: ModelRef, train: TrainSummary | None, cache: TeacherCache,
    compression: Compression | None = None,
) -> StudentRecord:
    data = ctx.data
    return StudentRecord(
        model=ref, figures=figures_of(student, ctx),
        val_accuracy=evaluate(student, data.x_val, data.y_val, data.num_classes).accuracy, train=train,
        class_names=data.class_names, inputs=[data.input], data=data.provenance(), teacher_cache=cache,
        compression=compression or Compression(),
    )
