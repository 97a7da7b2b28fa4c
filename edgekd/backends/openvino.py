"""OpenVINO: IR (.xml/.bin) from the ONNX models. FP32, FP16 (compressed weights), INT8 (from QDQ).

On CPUs with AVX-512 BF16/AMX, OpenVINO runs FP32 models in bf16 unless told
otherwise; the inference precision is set explicitly (``inference_precision``,
default f32 for fp32 artifacts) and the precision each layer actually ran in is
read back from the compiled model and reported.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from ..ondevice import runtimes
from .base import BACKENDS, Backend, CompileSources, Runner, package_version


class OpenVinoRunner(Runner):
    def __init__(self, path: Path, options: dict[str, Any], precision: str) -> None:
        self.model = runtimes.load("openvino", path, options)
        self.compiled = self.model.compiled

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def operator_report(self) -> dict[str, Any]:
        import openvino.properties.hint as hints

        precisions: Counter = Counter()
        layers: Counter = Counter()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            if layer in ("Input", "Output", "Parameter", "Result", "Constant"):
                continue
            layers[layer] += 1
            precisions[info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"] += 1
        return {
            "inference_precision": self.compiled.get_property(hints.inference_precision).get_type_name(),
            "layers": dict(layers),
            "runtime_precision_per_layer": dict(precisions),
            "fallback_ops": [],
        }


@BACKENDS.register("openvino")
class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "fp16", "int8")
    suffix = ".xml"

    def __init__(self) -> None:
        self._precision_of: dict[Path, str] = {}

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

    def load(self, path: Path, options: dict[str, Any]) -> Runner:
        precision = Path(path).stem.split("_")[-1]
        return OpenVinoRunner(path, options, precision)

    def inspect(self, path: Path) -> dict[str, Any]:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        ops = Counter(op.get_type_name() for op in model.get_ops())
        return {"ops": dict(ops), "weights_bytes": Path(path).with_suffix(".bin").stat().st_size}
