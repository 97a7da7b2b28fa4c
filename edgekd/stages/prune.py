"""Stage ``prune``: structured channel pruning in steps, each recovered by distillation from the teacher.

A transformer student loses whole attention heads and FFN channels (``edgekd.prune``). Its recovery then
drops TinyBERT's attention-score term (``attention: 0``), which compares scores head by head and cannot
pair a student with fewer heads than the teacher; the other terms train as configured.

Under torchrun every process prunes the same (synchronised) student the same way, checked after each
step, and the recoveries train with DDP; rank 0 alone writes the pruned student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .. import distributed
from ..distillation import distill_into, student_record
from ..errors import ConfigError
from ..io import state_dict_hash
from ..models import model_stats
from ..prune import (NEEDS_GRADIENTS, attention_heads, count, make_pruner, noop_problem, ratio_for_target,
                     require_pruned, save_pruned)
from ..records import Compression, ModelSize, PruneStep, StudentRecord, TeacherCache
from .base import STAGES, Stage, StageContext

STUDENT = "distill"  # the stage whose record holds the student to prune


@STAGES.register("prune")
class PruneStage(Stage):
    name = "prune"
    record_type = StudentRecord
    all_processes = True  # under torchrun every process runs it (DDP training); see edgekd.distributed
    requires = ("teacher", STUDENT)
    summary = "prune channels, recover by distillation"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.config
        return {"seed": cfg.seed, "augment": cfg.section("data")["augment"], "prune": cfg.section("prune"), "distill": cfg.section("distill")}

    def validate(self, ctx: StageContext) -> None:
        if ctx.config.prune.enabled:
            distributed.check_batch_size("prune.recovery.batch_size", ctx.config.prune.recovery.batch_size)

    def run(self, ctx: StageContext, out_dir: Path) -> StudentRecord:
        cfg, data = ctx.config.prune, ctx.data
        upstream = ctx.record(STUDENT, StudentRecord)
        if not cfg.enabled:
            return upstream.model_copy(update={"compression": Compression(pruned=False)})
        student = ctx.load_model(upstream.model, key="prune")
        example = data.example()
        macs_before, params_before = count(student, example)
        size_before = model_stats(student, example).size_bytes
        options = dict(importance=cfg.importance, global_pruning=cfg.global_pruning, round_to=cfg.round_to, ignore=cfg.ignore)
        ratio = cfg.effective_ratio
        if ratio is None:
            ratio = ratio_for_target(student, example, target_macs=cfg.target_macs, target_params=cfg.target_params, **options)
        # A ratio that prunes nothing fails here, before any recovery trains a model that would be recorded as pruned.
        noop = noop_problem(student, example, ratio=ratio, key="prune.target_macs" if cfg.target_macs else
                            "prune.target_params" if cfg.target_params else "prune.ratio", **options)
        if noop is not None:
            raise ConfigError(str(noop))
        pruner = make_pruner(student, example, ratio=ratio, steps=cfg.steps, **options)
        heads_before = attention_heads(student)
        steps, train = [], None
        for step in range(cfg.steps):
            if cfg.importance in NEEDS_GRADIENTS:
                self._accumulate_gradients(student, ctx)
            pruner.step()
            student.zero_grad(set_to_none=True)
            macs, params = count(student, example)
            if step == cfg.steps - 1:  # global or gradient-ranked pruning can differ from the dry run: check the outcome
                require_pruned(macs_before, macs, ratio=ratio)
            # DDP needs the same shapes everywhere; a tie broken differently on another machine must not go unseen
            distributed.check_same([tuple(p.shape) for p in student.parameters()], f"the channels kept by pruning step {step + 1}")
            train, _ = distill_into(
                ctx, student, out_dir / f"step{step + 1}", train_config=cfg.recovery,
                description=f"recover {step + 1}/{cfg.steps}", run_key=ctx.train_key("prune", f"step{step}"),
                batch_key="prune.recovery.batch_size",
                losses=recovery_losses(ctx.config.distill.losses, heads_before, attention_heads(student)),
            )
            steps.append(PruneStep(step=step + 1, macs=macs, params=params, val_accuracy=train.best_val_accuracy))
        path = out_dir / "student_pruned.safetensors"
        if distributed.is_writer():
            save_pruned(student, path)
        distributed.published(path, what="saving the pruned student")
        ref = upstream.model.model_copy(update={"weights": ctx.relative(path), "weights_in_run": True,
                                                "sha256": state_dict_hash(student), "format": "pruned"})
        macs_after, params_after = count(student, example)
        compression = Compression(
            pruned=True, ratio=ratio, importance=cfg.importance, steps=steps,
            before=ModelSize(macs=macs_before, params=params_before, size_bytes=size_before, accuracy=upstream.figures.accuracy),
            after=ModelSize(macs=macs_after, params=params_after),
            macs_reduction=1 - macs_after / macs_before,
        )
        return student_record(ctx, student, ref, train, TeacherCache(), compression).model_copy(
            update={"initialised": upstream.initialised, "vocabulary": upstream.vocabulary})

    @staticmethod
    def _accumulate_gradients(student: torch.nn.Module, ctx: StageContext, batches: int = 4) -> None:
        """Taylor importance needs gradients of the task loss on real data."""
        data = ctx.data
        student.train()
        student.zero_grad(set_to_none=True)
        for i in range(batches):
            x, y = data.x_train[i * 64 : (i + 1) * 64], data.y_train[i * 64 : (i + 1) * 64]
            torch.nn.functional.cross_entropy(student(x), y).backward()

    def describe(self, record: StudentRecord) -> list[tuple[str, str]]:
        c = record.compression
        if not c.pruned:
            return [("pruning", "off")]
        return [
            ("pruned MACs", f"{c.before.macs:,} -> {c.after.macs:,} (-{c.macs_reduction:.0%})"),
            ("pruned params", f"{c.before.params:,} -> {c.after.params:,}"),
            ("accuracy after recovery", f"{record.figures.accuracy:.2%} (before {c.before.accuracy:.2%})"),
        ]


def recovery_losses(losses: list[dict], heads_before: dict[str, int], heads_now: dict[str, int]) -> list[dict] | None:
    """The distill losses for a recovery: as configured (None), or, once heads were pruned, with every
    ``tinybert`` term's ``attention`` part set to 0 (it compares attention scores head by head); a term
    left with no part at all is dropped."""
    if heads_now == heads_before or not any(l["name"] == "tinybert" and l.get("attention", 1.0) for l in losses):
        return None
    kept = []
    for term in losses:
        if term["name"] == "tinybert":
            term = {**term, "attention": 0.0}
            if not (term.get("embedding", 1.0) or term.get("hidden", 1.0)):
                continue
        kept.append(dict(term))
    if not kept:
        return None  # nothing else to train with: the tinybert loss itself says why it cannot pair the heads
    Console(stderr=True).print("  heads were pruned: recovery trains without TinyBERT's attention-score term "
                               "(it needs the teacher's head count)")
    return kept
