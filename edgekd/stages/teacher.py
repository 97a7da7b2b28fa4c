"""Stage ``teacher``: load the teacher(s), or train them with the shared trainer when no weights are given.

Reports accuracy, per-class accuracy and expected calibration error on the test
split, and optionally fits a temperature on the validation split.

Under torchrun every process trains the teacher together (DDP, see
``edgekd.train.trainer``) and scores its share of each split; rank 0 alone
writes the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..data.augment import SHIFT, Augmentation
from ..distillation import ensemble_logits
from ..io import sha256_file, state_dict_hash
from ..losses import build_loss
from ..metrics import evaluate_logits, fit_temperature
from ..models import model_stats
from ..records import Figures, ModelRef, TeacherRecord, TrainSummary
from ..train import Trainer
from .base import STAGES, Stage, StageContext

TRAINABLE_SCHEMES = ("zoo:", "python:", "hf:")
HEAD = ("classifier", "pool")  # what `teacher.finetune: head` trains of an hf: teacher


@STAGES.register("teacher")
class TeacherStage(Stage):
    name = "teacher"
    record_type = TeacherRecord
    all_processes = True  # under torchrun every process runs it (DDP training); see edgekd.distributed
    summary = "load or train the teacher(s); accuracy, calibration"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        return {"seed": ctx.config.seed, "data": ctx.data.provenance(), "teacher": ctx.config.section("teacher"),
                "files": [ctx.spec_hashes(m) for m in ctx.config.teacher.members]}

    def validate(self, ctx: StageContext) -> None:
        cfg = ctx.config.teacher
        if any(self._trains(spec, cfg) for spec in cfg.members):
            distributed.check_batch_size("teacher.train.batch_size", cfg.train.batch_size)

    def run(self, ctx: StageContext, out_dir: Path) -> TeacherRecord:
        cfg, data = ctx.config.teacher, ctx.data
        members, refs, trained, written = [], [], [], []
        for i, spec in enumerate(cfg.members):
            key = f"teacher.members[{i}]"
            torch.manual_seed(ctx.config.seed + i)  # seeds the initial weights of a teacher trained here
            model = ctx.load_model(ModelRef(model=spec.model, kwargs=spec.kwargs, weights=spec.weights), key=key)
            if self._trains(spec, cfg):
                if spec.model.startswith("hf:") and cfg.finetune == "head":
                    for name, param in model.named_parameters():
                        param.requires_grad_(name.startswith(HEAD))
                shifts = cfg.augment if cfg.augment is not None else not data.is_text
                augment = Augmentation(shift=SHIFT) if shifts else None
                result = Trainer(
                    model, build_loss([{"name": "ce"}], key="teacher"), cfg.train, data, out_dir / f"member{i}",
                    augment=augment, seed=ctx.config.seed + i, description=f"teacher {i}",
                    run_key=ctx.train_key("teacher", f"member{i}"), batch_key="teacher.train.batch_size",
                ).fit(resume=ctx.resume)
                trained.append(TrainSummary(**result.to_dict(), member=i))
                ref = ctx.save_model(model, spec.model, spec.kwargs, out_dir / f"member{i}.safetensors")
                written.append(out_dir / f"member{i}.safetensors")
            else:
                digest = sha256_file(onnx_path(spec, ctx)) if getattr(model, "is_onnx", False) else state_dict_hash(model)
                ref = ModelRef(model=spec.model, kwargs=spec.kwargs, weights=spec.weights, sha256=digest)
            members.append(model)
            refs.append(ref)

        distributed.published(*written, what="saving the trained teacher")
        weights = list(cfg.ensemble_weights) if cfg.ensemble == "weighted" else [1.0] * len(members)
        val_logits = ensemble_logits(members, weights, data.x_val)
        test_logits = ensemble_logits(members, weights, data.x_test)
        ece_before = evaluate_logits(test_logits, data.y_test, data.num_classes).ece
        temperature = fit_temperature(val_logits, data.y_val) if cfg.calibrate_temperature else 1.0
        test = evaluate_logits(test_logits / temperature, data.y_test, data.num_classes)
        stats = [model_stats(m, data.example()) for m in members]
        figures = Figures(
            accuracy=test.accuracy, per_class_accuracy=test.per_class_accuracy, ece=test.ece,
            params=sum(s.params for s in stats), macs=sum(s.macs for s in stats), size_bytes=sum(s.size_bytes for s in stats),
            embedding_params=sum(s.embedding_params for s in stats) or None,
            macs_note="; ".join(sorted({s.note for s in stats if s.note})) or None,
        )
        return TeacherRecord(
            members=refs, ensemble_weights=weights, temperature=temperature, figures=figures,
            val_accuracy=evaluate_logits(val_logits, data.y_val, data.num_classes).accuracy,
            ece_before_calibration=ece_before, trained=trained,
        )

    @staticmethod
    def _trains(spec, cfg) -> bool:
        """Trained here: zoo/python teachers without weights, and hf: checkpoints unless finetune is none."""
        if spec.model.startswith("hf:"):
            return spec.weights is None and cfg.finetune != "none"
        return spec.weights is None and spec.model.startswith(TRAINABLE_SCHEMES)

    def describe(self, record: TeacherRecord) -> list[tuple[str, str]]:
        f = record.figures
        rows = [
            ("teacher accuracy", f"{f.accuracy:.2%}"),
            ("teacher params / MACs", f.size_line()),
            ("teacher ECE", f"{f.ece:.4f}"),
        ]
        if record.temperature != 1.0:
            rows.append(("teacher temperature", f"{record.temperature:.3f} (ECE before {record.ece_before_calibration:.4f})"))
        return rows


def onnx_path(spec, ctx: StageContext) -> Path:
    """The ONNX file named by an ``onnx:PATH`` spec, resolved like the loader does."""
    path = Path(spec.model.split(":", 1)[1])
    return path if path.is_absolute() else ctx.config.base_dir / path
