"""Stage ``distill``: train the student from the teacher with the configured losses.

Under torchrun every process trains the student together (DDP, see ``edgekd.train.trainer``) and
scores its share of the test and validation splits; rank 0 alone writes the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..distillation import distill_into, load_teachers, student_record
from ..records import ModelRef, StudentRecord
from .base import STAGES, Stage, StageContext


@STAGES.register("distill")
class DistillStage(Stage):
    name = "distill"
    record_type = StudentRecord
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

    def run(self, ctx: StageContext, out_dir: Path) -> StudentRecord:
        spec = ctx.config.student
        torch.manual_seed(ctx.config.seed)  # the student's initial weights
        student = ctx.load_model(ModelRef(model=spec.model, kwargs=spec.kwargs, weights=spec.weights), key="student")
        initialised = None
        if spec.init_from == "teacher":
            from ..models.bert import init_from_teacher

            initialised = init_from_teacher(student, load_teachers(ctx)[0][0])
        train, cache = distill_into(
            ctx, student, out_dir, train_config=ctx.config.distill.train, description="distill",
            run_key=ctx.train_key("distill"),
        )
        ref = ctx.save_model(student, spec.model, spec.kwargs, out_dir / "student.safetensors")
        distributed.published(out_dir / "student.safetensors", what="saving the distilled student")
        return student_record(ctx, student, ref, train, cache).model_copy(update={"initialised": initialised})

    def describe(self, record: StudentRecord) -> list[tuple[str, str]]:
        f, cache = record.figures, record.teacher_cache
        return [
            ("student accuracy", f"{f.accuracy:.2%}"),
            ("student params / MACs", f.size_line()),
            ("teacher cache", "hit" if cache.hit else ("built" if cache.used else "off")),
            *([("student initialised", record.initialised)] if record.initialised else []),
        ]
