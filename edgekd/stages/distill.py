"""Stage ``distill``: train the student from the teacher with the configured losses.

Under torchrun every process trains the student together (DDP, see ``edgekd.train.trainer``) and
scores its share of the test and validation splits; rank 0 alone writes the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..losses import FeaturePair, build_loss
from ..io import state_dict_hash
from ..models import feature_shapes, model_stats
from ..records import Figures, ModelRef, StudentRecord, TeacherRecord
from ..train import CachedTeacher, LiveTeacher, Trainer
from ..train.evaluation import evaluate
from .base import STAGES, Stage, StageContext
from .refs import load_ref
from .teacher import load_teachers, save_ref_once


def teacher_source(
    ctx: StageContext, pairs: list[FeaturePair], *, use_cache: bool, augment: bool, extra: list[torch.nn.Module] = ()
):
    """The live teacher, or its outputs cached on disk when augmentation is off.

    ``extra`` members (e.g. the FP32 student during QAD) join the ensemble with weight 1.
    """
    members, weights, temperature = load_teachers(ctx.records["teacher"], ctx)
    members, weights = members + list(extra), weights + [sum(weights) / len(weights)] * len(extra)
    live = LiveTeacher(members, weights, [p.teacher for p in pairs], temperature)
    if not use_cache or augment:
        return live, members, {"used": False, "reason": "augmentation on" if augment else "disabled"}
    hashes = [m["sha256"] for m in TeacherRecord.from_dict(ctx.records["teacher"]).members]
    hashes += [state_dict_hash(m) for m in extra]
    key = {"teachers": hashes, "weights": weights, **ctx.data.provenance()}
    cached = CachedTeacher.load_or_build(live, ctx.data.x_train, key)
    return cached, members, {"used": True, "hit": cached.hit, "path": str(cached.path)}


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
) -> tuple[dict, dict]:
    """Distill the teacher into ``student`` with the ``distill`` section's losses.

    Shared by distillation, pruning recovery and QAD, so all three use the same losses.
    ``batch_key`` is the config key of ``train_config.batch_size`` (named in torchrun's batch error).
    Returns the TrainResult summary and the teacher-cache info.
    """
    cfg, data = ctx.config.distill, ctx.data
    pairs = [FeaturePair(p.student, p.teacher) for p in cfg.features] if use_features else []
    loss = build_loss(losses if losses is not None else cfg.losses)
    source, members, cache_info = teacher_source(
        ctx, pairs, use_cache=cfg.cache_teacher, augment=ctx.config.data.augment, extra=extra_teachers
    )
    if pairs:
        loss.setup(
            pairs,
            feature_shapes(student, [p.student for p in pairs], data.input_shape),
            feature_shapes(members[0], [p.teacher for p in pairs], data.input_shape),
        )
    result = Trainer(
        student, loss, train_config, data, out_dir, teacher=source, feature_pairs=pairs,
        augment=ctx.config.data.augment, seed=ctx.config.seed, description=description,
        run_key=run_key, step_hook=step_hook, batch_key=batch_key,
    ).fit(resume=ctx.resume)
    return result.to_dict(), cache_info


def student_record(
    ctx: StageContext, student: torch.nn.Module, ref: ModelRef, train: dict, cache: dict, compression: dict | None = None
) -> StudentRecord:
    data = ctx.data
    test = evaluate(student, data.x_test, data.y_test, data.num_classes)
    val = evaluate(student, data.x_val, data.y_val, data.num_classes)
    stats = model_stats(student, data.input_shape)
    figures = Figures(
        accuracy=test.accuracy, per_class_accuracy=test.per_class_accuracy, ece=test.ece,
        params=stats.params, macs=stats.macs, size_bytes=stats.size_bytes,
    )
    return StudentRecord(
        model=ref.to_dict(), figures=figures.to_dict(), val_accuracy=val.accuracy, train=train,
        class_names=data.class_names, input_shape=list(data.input_shape),
        normalization=data.normalization.to_dict(), data=data.provenance(), teacher_cache=cache,
        compression=compression or {},
    )


@STAGES.register("distill")
class DistillStage(Stage):
    name = "distill"
    all_processes = True  # under torchrun every process runs it (DDP training); see edgekd.distributed
    requires = ("teacher",)
    summary = "distill the teacher into the student"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.config
        return {
            "seed": cfg.seed, "data": ctx.data.provenance(), "augment": cfg.data.augment,
            "student": cfg.section("student"), "distill": cfg.section("distill"), "files": ctx.spec_hashes(cfg.student),
        }

    def validate(self, ctx: StageContext) -> None:
        distributed.check_batch_size("distill.train.batch_size", ctx.config.distill.train.batch_size)

    def run(self, ctx: StageContext, out_dir: Path) -> dict[str, Any]:
        spec = ctx.config.student
        torch.manual_seed(ctx.config.seed)  # the student's initial weights
        given = ModelRef(model=spec.model, kwargs=spec.kwargs, weights=spec.weights, weights_in_run=False, sha256="")
        student = load_ref(given, ctx, key="student")
        train, cache = distill_into(
            ctx, student, out_dir, train_config=ctx.config.distill.train, description="distill",
            run_key=ctx.train_key("distill"),
        )
        ref = save_ref_once(student, spec.model, spec.kwargs, out_dir / "student.safetensors", ctx)
        distributed.published(out_dir / "student.safetensors", what="saving the distilled student")
        return student_record(ctx, student, ref, train, cache).to_dict()

    def describe(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        f = record["figures"]
        return [
            ("student accuracy", f"{f['accuracy']:.2%}"),
            ("student params / MACs", f"{f['params']:,} / {f['macs']:,}"),
            ("teacher cache", "hit" if record["teacher_cache"].get("hit") else ("built" if record["teacher_cache"].get("used") else "off")),
        ]
