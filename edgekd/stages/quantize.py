"""Stage ``quantize``: quantization-aware distillation (``qad``) or calibration (``ptq``) in INT8.

The learned weights and quantization parameters are saved once; the export
and compile stages rebuild the prepared graph from them
(``edgekd.quantize.load_quantized``), so every INT8 artifact uses the same
scales and nothing downstream re-calibrates.

Under torchrun every process calibrates on the same set and QAD trains with
DDP (observer ranges and batch-norm statistics are rank 0's, broadcast); rank 0
alone writes the calibration manifest and the learned state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import calibration, distributed
from ..distillation import distill_into
from ..losses import logit_only
from ..records import Figures, QuantizedRecord, StudentRecord
from ..train.evaluation import evaluate
from .base import STAGES, Stage, StageContext

STUDENT = "prune"  # the stage whose record holds the FP32 student to quantize


@STAGES.register("quantize")
class QuantizeStage(Stage):
    name = "quantize"
    record_type = QuantizedRecord
    all_processes = True  # under torchrun every process runs it (DDP training); see edgekd.distributed
    requires = ("teacher", STUDENT)
    summary = "INT8 quantization-aware distillation (or calibration)"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.config
        return {"seed": cfg.seed, "augment": cfg.section("data")["augment"], "quantize": cfg.section("quantize"), "distill": cfg.section("distill"),
                "calibration": ctx.file_hash(cfg.quantize.calibration)}

    def validate(self, ctx: StageContext) -> None:
        if ctx.config.quantize.mode == "qad":
            distributed.check_batch_size("quantize.train.batch_size", ctx.config.quantize.train.batch_size)

    def run(self, ctx: StageContext, out_dir: Path) -> QuantizedRecord:
        from ..quantize import prepare, save_state  # torchao: imported when quantizing, not to plan a run

        cfg, data = ctx.config.quantize, ctx.data
        upstream = ctx.record(STUDENT, StudentRecord)
        if cfg.mode == "none":
            return QuantizedRecord(mode="none", student=upstream.model, fp32_accuracy=upstream.figures.accuracy)
        student = ctx.load_model(upstream.model, key="quantize").eval()
        cal = calibration.load(ctx.config.base_dir / cfg.calibration) if cfg.calibration else calibration.draw(
            data, size=cfg.calibration_size, seed=ctx.config.seed
        )
        cal_path = out_dir / "calibration.json"
        if distributed.is_writer():
            calibration.save(cal, cal_path)
        x_cal, _ = cal.tensors(data)

        observer = "moving_average" if cfg.mode == "qad" else "minmax"
        torch.manual_seed(ctx.config.seed)
        prepared = prepare(student, data.input, observer=observer, scheme=cfg.scheme)
        prepared.calibrate(x_cal)  # QAD starts from calibrated ranges, not from the first batch
        train = None
        if cfg.mode == "qad":
            def freeze(step: int) -> None:
                if step == cfg.freeze_observers_after:
                    prepared.freeze_observers()
                if step == cfg.freeze_batch_norm_after:
                    prepared.freeze_batch_norm()

            if cfg.freeze_observers_after == 0:
                prepared.freeze_observers()
            if cfg.freeze_batch_norm_after == 0:
                prepared.freeze_batch_norm()
            losses = cfg.losses
            if losses is None:  # feature terms need named layers, which the captured graph no longer has
                losses = logit_only(ctx.config.distill.losses)
            train, _ = distill_into(
                ctx, prepared, out_dir, train_config=cfg.train, description="qad",
                run_key=ctx.train_key("quantize"), batch_key="quantize.train.batch_size", step_hook=freeze, losses=losses,
                use_features=False, extra_teachers=[student] if cfg.fp32_student_as_teacher else [],
            )
        prepared.freeze_observers()
        prepared.eval()
        state_path = out_dir / "qat_state.safetensors"
        if distributed.is_writer():
            save_state(prepared, state_path)
        distributed.published(cal_path, state_path, what="saving the quantization state")
        test = evaluate(prepared, data.x_test, data.y_test, data.num_classes)
        figures = Figures(accuracy=test.accuracy, per_class_accuracy=test.per_class_accuracy, ece=test.ece,
                          params=upstream.figures.params, macs=upstream.figures.macs)
        return QuantizedRecord(
            mode=cfg.mode, student=upstream.model, observer=observer, scheme=prepared.scheme, state=ctx.relative(state_path),
            calibration=ctx.relative(cal_path), figures=figures, train=train, fp32_accuracy=upstream.figures.accuracy,
        )

    def describe(self, record: QuantizedRecord) -> list[tuple[str, str]]:
        if record.mode == "none":
            return [("quantization", "off")]
        return [("INT8 (fake-quant) accuracy", f"{record.figures.accuracy:.2%} (FP32 {record.fp32_accuracy:.2%}, {record.mode}, "
                 f"{record.scheme} scheme)")]
