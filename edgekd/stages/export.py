"""Stage ``export``: FP32 and INT8 (QDQ) ONNX, simplified, with metadata, verified against PyTorch every time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .. import onnx_export as ox
from ..io import sha256_file
from ..metrics import evaluate_logits, predict
from ..parity import compare, require
from .base import STAGES, Stage, StageContext
from .quantize import load_quantized
from .refs import load_ref


def output_scale(onnx_path: Path) -> float:
    """The scale of the last DequantizeLinear feeding the output: one INT8 step of the logits."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    scales = [values.get(n.input[1]) for n in model.graph.node if n.op_type == "DequantizeLinear"]
    scales = [float(np.asarray(s).ravel()[0]) for s in scales if s is not None and np.asarray(s).size == 1]
    return scales[-1] if scales else 0.0


@STAGES.register("export")
class ExportStage(Stage):
    name = "export"
    requires = ("teacher", "prune", "quantize")
    summary = "ONNX FP32 + INT8 QDQ, checked with ONNX Runtime"

    def cache_inputs(self, ctx: StageContext) -> dict[str, Any]:
        return {"export": ctx.config.section("export")}

    def run(self, ctx: StageContext, out_dir: Path) -> dict[str, Any]:
        cfg, data = ctx.config.export, ctx.data
        student_rec, quant_rec = ctx.records["prune"], ctx.records["quantize"]
        x_check = data.x_test[: cfg.parity_samples]
        meta = {
            "edgekd_version": __version__,
            "class_names": data.class_names,
            "preprocessing": {"layout": "NCHW", "input_shape": list(data.input_shape), "source": data.source,
                              "normalize": data.normalization.to_dict(), "note": "x = (pixels / 255 - mean) / std for 8-bit images"},
            "provenance": {"data_hash": data.data_hash, "split": data.split.digest(),
                           "teachers": [m["sha256"] for m in ctx.records["teacher"]["members"]],
                           "student": student_rec["model"]["sha256"]},
        }
        artifacts = {}
        student = load_ref(student_rec["model"], ctx, key="export").eval()
        artifacts["fp32"] = self._export_one(
            ctx, student, out_dir / "student_fp32.onnx", x_check, meta, atol=cfg.fp32_atol, reference=predict(student, x_check)
        )
        if quant_rec["mode"] != "none":
            prepared = load_quantized(quant_rec, ctx)
            reference = predict(prepared, x_check)
            converted = prepared.converted(fold_quantize=True)
            path = out_dir / "student_int8_qdq.onnx"
            artifacts["int8"] = self._export_one(
                ctx, converted, path, x_check, {**meta, "quantization": quant_rec["mode"]},
                atol=None, reference=reference,
            )
        return {"opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch, "artifacts": artifacts}

    def _export_one(self, ctx, model, path: Path, x_check, meta: dict, *, atol: float | None, reference) -> dict:
        cfg, data = ctx.config.export, ctx.data
        ox.export(model, data.input_shape, path, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
        if cfg.simplify:
            ox.simplify(path)
        ox.set_metadata(path, meta)
        sess = ox.session(path)
        if atol is None:  # INT8: tolerance in steps of the output quantizer, since logits are quantized
            step = output_scale(path)
            atol = cfg.int8_atol_steps * step
        parity = compare(reference.numpy(), ox.run_session(sess, x_check), atol=atol, min_top1_agreement=cfg.min_top1_agreement)
        try:
            require(parity, f"export of {path.name}")
        except Exception:
            path.rename(path.with_suffix(".onnx.failed"))  # never leave a file that looks verified
            raise
        test = evaluate_logits(ox.run_session(sess, data.x_test), data.y_test, data.num_classes)
        return {
            "path": ctx.relative(path), "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "parity": parity.to_dict(), "accuracy": test.accuracy, "per_class_accuracy": test.per_class_accuracy,
        }

    def describe(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for name, art in record["artifacts"].items():
            p = art["parity"]
            rows.append((f"ONNX {name}", f"accuracy {art['accuracy']:.2%} in ONNX Runtime; max|diff| {p['max_abs_diff']:.2g}, "
                                          f"top-1 agreement {p['top1_agreement']:.2%}; {art['size_bytes'] / 1024:.0f} KiB"))
        return rows
