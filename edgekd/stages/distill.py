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
            "seed": cfg.seed, "data": ctx.data.provenance(), "augment": cfg.section("data")["augment"],
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
        kwargs, vocabulary = dict(spec.kwargs), None
        if spec.vocabulary == "train":
            vocabulary = trim_to_training_tokens(ctx, student)
            kwargs["kept_tokens"] = student.kept_tokens  # the trimmed table's shape, for every later stage's rebuild
        train, cache = distill_into(
            ctx, student, out_dir, train_config=ctx.config.distill.train, description="distill",
            run_key=ctx.train_key("distill"),
        )
        ref = ctx.save_model(student, spec.model, kwargs, out_dir / "student.safetensors")
        distributed.published(out_dir / "student.safetensors", what="saving the distilled student")
        return student_record(ctx, student, ref, train, cache).model_copy(
            update={"initialised": initialised, "vocabulary": vocabulary})

    def describe(self, record: StudentRecord) -> list[tuple[str, str]]:
        f, cache = record.figures, record.teacher_cache
        return [
            ("student accuracy", f"{f.accuracy:.2%}"),
            ("student params / MACs", f.size_line()),
            ("teacher cache", "hit" if cache.hit else ("built" if cache.used else "off")),
            *([("student initialised", record.initialised)] if record.initialised else []),
            *([("student vocabulary", record.vocabulary)] if record.vocabulary else []),
        ]


def trim_to_training_tokens(ctx: StageContext, student: torch.nn.Module) -> str:
    """``student.vocabulary: train``: keep the word-table rows of the tokens the training split uses; return
    what was kept and how many held-out tokens now read the unknown token's row, in words."""
    from ..data.tokenize import load_tokenizer
    from ..models.bert import trim_vocabulary

    data, pre = ctx.data, ctx.data.input.preprocess
    unknown_id = load_tokenizer(Path(pre.tokenizer), key="data.tokenizer").unk_token_id
    before = student.embeddings.word_embeddings.weight.numel()
    kept = trim_vocabulary(student, data.x_train, unknown_id)
    held_out = torch.cat([data.x_val.reshape(-1), data.x_test.reshape(-1)])
    real = held_out[held_out != pre.pad_id]
    unseen = (student.embeddings.token_rows[real] == 1) & (real != (-1 if unknown_id is None else unknown_id))
    after = student.embeddings.word_embeddings.weight.numel()
    return (f"trimmed to the training split's {kept:,} of {pre.vocab_size:,} tokens ({before:,} -> {after:,} table "
            f"parameters); {unseen.float().mean().item() if len(real) else 0.0:.2%} of validation and test tokens "
            "are unseen and read the unknown token's row")
