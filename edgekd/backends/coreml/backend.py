"""Builds Core ML programs with coremltools (see the package's docstring); they are verified here and run on macOS."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import ModelError, StageError
from ..base import BACKENDS, Backend, CompileSources, first_line, package_version
from .runtime import INPUT_NAME, OUTPUT_NAME, _ct, _program_summary

_META = "edgekd."  # prefix of the metadata keys this backend writes


def _capture(model: torch.nn.Module, example: tuple[torch.Tensor, ...]):
    """torch.export (ATen, decomposed) as coremltools 8+ prefers; TorchScript tracing where export fails."""
    try:
        return torch.export.export(model, example).run_decompositions({}), "torch.export"
    except Exception as export_error:
        try:
            with torch.no_grad():
                return torch.jit.trace(model, example), "torch.jit.trace"
        except Exception as trace_error:
            raise ModelError(
                f"coreml: cannot capture {type(model).__name__}: torch.export: {first_line(export_error)}; "
                f"torch.jit.trace: {first_line(trace_error)}"
            ) from trace_error


def _save_package(model, path: Path) -> None:
    """Write the .mlpackage directory beside ``path`` and move it into place (an old one is removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        model.save(str(staging / path.name))
        if path.exists():  # os.replace cannot overwrite a non-empty directory: move the old one aside first
            old = staging / "old"
            os.replace(path, old)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _feature(ct, feature) -> dict[str, Any]:
    array = feature.type.multiArrayType
    data_type = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": data_type}


@BACKENDS.register("coreml")
class CoreMlBackend(Backend):
    name = "coreml"
    precisions = ("fp16", "int8")
    suffix = ".mlpackage"

    def unavailable(self) -> str | None:
        try:
            _ct()
        except ImportError as error:
            return f"coremltools is not installed (pip install coremltools): {first_line(error)}"
        return None

    def toolchain_version(self) -> str:
        return package_version("coremltools")

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        if precision not in self.precisions:
            raise ValueError(f"coreml: unknown precision {precision!r}; expected one of {', '.join(self.precisions)}")
        ct = _ct()
        target_name = str(options.get("minimum_deployment_target", "iOS16"))
        if not hasattr(ct.target, target_name):
            raise ValueError(f"coreml option minimum_deployment_target={target_name!r} is not a coremltools target (e.g. iOS16, macOS13)")
        model = sources.fp32_model().eval()
        example = (sources.example(),)
        with torch.no_grad():
            output_shape = [int(d) for d in model(*example).shape]
        captured, capture = _capture(model, example)
        input_shape = [int(d) for d in example[0].shape]
        # Core ML has no int64 tensors: token ids go in as int32 (any vocabulary fits)
        input_dtype = np.float32 if example[0].is_floating_point() else np.int32
        try:
            mlmodel = ct.convert(
                captured,
                convert_to="mlprogram",
                inputs=[ct.TensorType(name=sources.input.name, shape=tuple(input_shape), dtype=input_dtype)],
                outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, target_name),
            )
        except Exception as error:
            raise ModelError(f"coreml: coremltools cannot convert the {capture} program: {first_line(error)}") from error
        weights = "fp16"
        if precision == "int8":
            from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

            # weight_threshold 0: every conv/linear weight, not only those over coremltools' default 2048 elements.
            threshold = int(options.get("weight_threshold", 0))
            config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=threshold)
            mlmodel = linear_quantize_weights(mlmodel, OptimizationConfig(global_config=config))
            weights = "int8 (weights only; activations fp16)"
        metadata = mlmodel.user_defined_metadata
        metadata[_META + "precision"] = precision
        metadata[_META + "weights"] = weights
        metadata[_META + "capture"] = capture
        metadata[_META + "input_shape"] = json.dumps(input_shape)
        metadata[_META + "input_name"] = sources.input.name
        metadata[_META + "output_shape"] = json.dumps(output_shape)
        self._check_io(ct, mlmodel.get_spec(), input_shape, output_shape, sources.input.name)
        path = Path(out_dir) / f"model_{precision}{self.suffix}"
        _save_package(mlmodel, path)
        return path

    @staticmethod
    def _check_io(ct, spec, input_shape: list[int], output_shape: list[int], input_name: str = INPUT_NAME) -> None:
        inputs = [_feature(ct, f) for f in spec.description.input]
        outputs = [_feature(ct, f) for f in spec.description.output]
        expected = ([{"name": input_name, "shape": input_shape}], [{"name": OUTPUT_NAME, "shape": output_shape}])
        actual = ([{k: f[k] for k in ("name", "shape")} for f in inputs], [{k: f[k] for k in ("name", "shape")} for f in outputs])
        if actual != expected:
            raise StageError(f"coreml: the program's IO {actual} does not match the student's {expected}")

    def inspect(self, path: Path) -> dict[str, Any]:
        """The program without running it; raises StageError when IO differs from the shapes recorded at build."""
        ct = _ct()
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        if not spec.HasField("mlProgram"):
            raise StageError(f"coreml: {Path(path).name} is not an ML Program")
        metadata = dict(spec.description.metadata.userDefined)
        inputs = [_feature(ct, f) for f in spec.description.input]
        outputs = [_feature(ct, f) for f in spec.description.output]
        if _META + "input_shape" in metadata:
            self._check_io(ct, spec, json.loads(metadata[_META + "input_shape"]), json.loads(metadata[_META + "output_shape"]),
                           metadata.get(_META + "input_name", INPUT_NAME))
        summary = _program_summary(ct, spec)
        compute = summary["compute_dtypes"]
        precision = "fp16" if compute and max(compute, key=compute.get) == "FLOAT16" else "fp32"
        files = [p for p in Path(path).rglob("*") if p.is_file()]
        return {
            "inputs": inputs,
            "outputs": outputs,
            **summary,
            "precision": precision,
            "weights": metadata.get(_META + "weights", "int8" if "INT8" in summary["weight_dtypes"] else precision),
            "spec_version": int(spec.specificationVersion),
            "capture": metadata.get(_META + "capture", ""),
            "package_bytes": sum(p.stat().st_size for p in files),
        }
