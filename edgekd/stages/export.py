"""Stage ``export``: FP32 and INT8 (QDQ) ONNX, simplified, with metadata, verified against PyTorch every time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..io import sha256_file
from ..metrics import evaluate_logits, predict
from ..parity import compare, require
from ..records import ExportRecord, OnnxArtifact, QuantizedRecord, StudentRecord, TeacherRecord
from .base import STAGES, Stage, StageContext

TEACHER, STUDENT, QUANTIZED = "teacher", "prune", "quantize"


@STAGES.register("export")
class ExportStage(Stage):
    name = "export"
    record_type = ExportRecord
    requires = (TEACHER, STUDENT, QUANTIZED)
    summary = "ONNX FP32 + INT8 QDQ, checked with ONNX Runtime"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        # int8_accuracy: the file's accuracy is read from the unfused graph since 2026-12-02 (not ORT's fused kernels)
        return {"export": ctx.config.section("export"), "int8_accuracy": "graph"}

    def run(self, ctx: StageContext, out_dir: Path) -> ExportRecord:
        cfg, data = ctx.config.export, ctx.data
        student_rec, quant_rec = ctx.record(STUDENT, StudentRecord), ctx.record(QUANTIZED, QuantizedRecord)
        x_check = data.x_test[: cfg.parity_samples]
        meta = {
            "edgekd_version": __version__,
            "class_names": data.class_names,
            "preprocessing": preprocessing(data),
            "provenance": {"data_hash": data.data_hash, "split": data.split.digest(),
                           "teachers": [m.sha256 for m in ctx.record(TEACHER, TeacherRecord).members],
                           "student": student_rec.model.sha256},
        }
        artifacts = {}
        student = ctx.load_model(student_rec.model, key="export").eval()
        artifacts["fp32"] = self._export_one(
            ctx, student, out_dir / "student_fp32.onnx", x_check, meta, atol=cfg.fp32_atol, reference=predict(student, x_check)
        )
        if quant_rec.mode != "none":
            from ..quantize import load_quantized  # torchao: imported when exporting, not to plan a run

            prepared = load_quantized(quant_rec, ctx)
            reference = predict(prepared, x_check)
            converted = prepared.converted(fold_quantize=True)
            artifacts["int8"] = self._export_one(
                ctx, converted, out_dir / "student_int8_qdq.onnx", x_check, {**meta, "quantization": quant_rec.mode},
                atol=None, reference=reference, float_logits=quant_rec.scheme == "transformer",
            )
        return ExportRecord(opset=cfg.opset, dynamic_batch=cfg.dynamic_batch, artifacts=artifacts)

    def _export_one(self, ctx, model, path: Path, x_check, meta: dict, *, atol: float | None, reference,
                    float_logits: bool = False) -> OnnxArtifact:
        """Export, simplify and verify under a temporary name; only a verified file gets the final name."""
        from .. import onnx_export as ox  # onnx and onnxruntime: imported when exporting, not to plan a run

        cfg, data = ctx.config.export, ctx.data
        work = path.with_name(f".{path.name}.unverified")
        try:
            ox.export(model, data.input, work, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
            if cfg.simplify:
                ox.simplify(work)
            ox.set_metadata(work, meta)
            sess = ox.session(work)
            # INT8: logits are quantized, so the tolerance counts whole steps of the output quantizer. The file is
            # checked with ONNX Runtime's graph optimizations off: that verifies it computes the quantized graph
            # itself; ORT's fused integer kernels may round differently (by tens of steps on a BERT encoder), which
            # the compile stage measures per artifact against this file.
            # The transformer scheme's logits are float (no output quantizer): judged by SQNR instead of steps.
            int8 = atol is None
            if not int8:
                tolerance = dict(atol=atol)
            elif float_logits:
                tolerance = dict(min_sqnr_db=cfg.int8_min_sqnr_db)
            else:
                tolerance = dict(step=ox.output_scale(work), limit_steps=cfg.int8_atol_steps)
            checked = ox.session(work, optimization="disable") if int8 else sess
            parity = require(
                compare(reference.numpy(), ox.run_session(checked, x_check), min_top1_agreement=cfg.min_top1_agreement, **tolerance),
                f"export of {path.name}",
            )
            shapes = shape_grid(model, checked, data, x_check, tolerance=tolerance, dynamic_batch=cfg.dynamic_batch)
            # the file's own accuracy, from the graph it computes: ORT's fused INT8 kernels differ by CPU (without
            # VNNI they saturate: 95.8% where the graph scores 97.9%), and compile measures each runtime's artifact
            test = evaluate_logits(ox.run_session(checked, data.x_test), data.y_test, data.num_classes)
        except Exception:
            if work.exists():
                os.replace(work, path.with_suffix(".onnx.failed"))  # kept for inspection, never looks verified
            raise
        os.replace(work, path)
        return OnnxArtifact(
            path=ctx.relative(path), sha256=sha256_file(path), size_bytes=path.stat().st_size, parity=parity,
            accuracy=test.accuracy, per_class_accuracy=test.per_class_accuracy,
            output_scale=ox.output_scale(path) if "quantization" in meta and not float_logits else None,
            shapes_checked=shapes,
        )

    def describe(self, record: ExportRecord) -> list[tuple[str, str]]:
        return [(f"ONNX {name}", f"accuracy {art.accuracy:.2%} in ONNX Runtime{' (the graph, unfused)' if name == 'int8' else ''}; max|diff| {art.parity.max_abs_diff:.2g}, "
                                 f"top-1 agreement {art.parity.top1_agreement:.2%}; {art.size_bytes / 1024:.0f} KiB")
                for name, art in record.artifacts.items()]


def preprocessing(data) -> dict[str, Any]:
    """What a deployment must do to a raw example before the model, written into the ONNX metadata."""
    pre = data.input.preprocess
    if data.is_text:
        return {"input": data.input.name, "dtype": "int64", "source": data.source, "tokenizer_sha256": pre.sha256,
                "max_length": pre.max_length, "pad_id": pre.pad_id,
                "note": "ids from the tokenizer (special tokens added), cut to max_length, right-padded with pad_id; "
                        "the model masks padding itself"}
    return {"layout": "NCHW", "input_shape": list(data.input_shape), "source": data.source,
            "normalize": data.normalization.to_dict(), "note": "x = (pixels / 255 - mean) / std for 8-bit images"}


def shape_grid(model, sess, data, x_check, *, tolerance: dict, dynamic_batch: bool) -> list[list[int]]:
    """Parity at each shape of the dynamic axes' grid (batch 1 and 4; for text 16, 64 and the maximum
    length), against the same model in PyTorch; the shapes checked are returned for the record."""
    import torch

    from .. import onnx_export as ox
    from ..errors import StageError
    from ..inputs import fit_length, parity_shapes

    cfg = data.input
    checked = []
    for sizes in parity_shapes(cfg, dynamic_batch=dynamic_batch):
        x = x_check[: sizes["batch"]]
        if len(x) < sizes["batch"]:
            continue
        if cfg.is_text:
            x = fit_length(x, cfg, sizes["sequence"])
        with torch.no_grad():
            reference = model(x).float().numpy()
        got = ox.run_session(sess, x.numpy(), batch_size=sizes["batch"])
        parity = compare(reference, got, min_top1_agreement=0.0, **tolerance)  # top-1 is judged on the full set
        if not parity.ok:
            raise StageError(f"export: at input shape {list(x.shape)} ONNX Runtime differs from PyTorch: {parity.describe()}")
        checked.append(list(x.shape))
    return checked
