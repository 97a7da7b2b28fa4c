"""Builds OpenVINO IR from the verified ONNX files (FP16: weights compressed to float16)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from ...io import atomic_path
from ..base import BACKENDS, Backend, CompileSources, package_version


@BACKENDS.register("openvino")
class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "fp16", "int8")
    suffix = ".xml"
    int8_from_onnx = True

    def unavailable(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "openvino is not installed (pip install openvino)"
        return None

    def toolchain_version(self) -> str:
        return package_version("openvino")

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        import openvino as ov

        source = sources.int8_onnx if precision == "int8" else sources.fp32_onnx
        if source is None:
            raise ValueError("no INT8 model: the quantize stage ran with mode none")
        model = ov.convert_model(str(source))
        xml = out_dir / f"model_{precision}.xml"
        # IR is two files; write both under temporary names, then move .bin before .xml so a
        # reader never sees an .xml without its weights.
        staging = out_dir / f".staging_{precision}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        ov.save_model(model, str(staging / xml.name), compress_to_fp16=precision == "fp16")
        with atomic_path(xml.with_suffix(".bin")) as tmp:
            shutil.move(staging / xml.with_suffix(".bin").name, tmp)
        with atomic_path(xml) as tmp:
            shutil.move(staging / xml.name, tmp)
        shutil.rmtree(staging, ignore_errors=True)
        return xml

    def inspect(self, path: Path) -> dict[str, Any]:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        ops = Counter(op.get_type_name() for op in model.get_ops())
        return {"ops": dict(ops), "weights_bytes": Path(path).with_suffix(".bin").stat().st_size}
