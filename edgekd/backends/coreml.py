"""Core ML (.mlpackage, ML Program) with coremltools: FP16, and INT8 weights on top of FP16.

* fp16: the FP32 PyTorch student captured with ``torch.export`` (decomposed to ATen, the path
  coremltools 8+ converts; TorchScript tracing is the fallback), converted with
  ``compute_precision=FLOAT16``. Input and output stay float32 (a cast at each end).
* int8: the fp16 program with ``linear_quantize_weights`` (int8, symmetric, per output channel):
  **weights only**. Weights are stored as int8 and dequantized to fp16 when the model loads
  (``constexpr_affine_dequantize``); activations and compute stay fp16. This is not the
  learned PT2E activation quantization the other INT8 artifacts use.

Core ML runs only on macOS: elsewhere ``load`` raises ``NotRunnable`` and ``inspect`` verifies the
program without running it (IO names and shapes, MIL op types, precision, weight dtypes).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, StageError
from ..ondevice import runtimes
from .base import BACKENDS, Backend, CompileSources, NotRunnable, Runner, package_version

INPUT_NAME, OUTPUT_NAME = "input", "logits"
WEIGHT_INPUTS = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "matmul": "y"}
_META = "edgekd."  # prefix of the metadata keys this backend writes


def _ct():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # version-compatibility chatter (torch, scikit-learn) on import
        import coremltools

    return coremltools


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)


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
                f"coreml: cannot capture {type(model).__name__}: torch.export: {_first_line(export_error)}; "
                f"torch.jit.trace: {_first_line(trace_error)}"
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


def _dtype_name(ct, value: int) -> str:
    return ct.proto.MIL_pb2.DataType.Name(value)


def _feature(ct, feature) -> dict[str, Any]:
    array = feature.type.multiArrayType
    data_type = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": data_type}


def _main_block(spec):
    function = spec.mlProgram.functions["main"]
    return function.block_specializations[function.opset]


def _program_summary(ct, spec) -> dict[str, Any]:
    operations = list(_main_block(spec).operations)
    producers = {out.name: op for op in operations for out in op.outputs}
    constants = {"const", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense"}
    compute = [op for op in operations if op.type not in constants]
    ops = Counter(op.type for op in compute)
    # Precision of the compute ops (the casts at the IO boundary excluded).
    precision = Counter(_dtype_name(ct, op.outputs[0].type.tensorType.dataType) for op in compute if op.type != "cast" and op.outputs)
    weights: Counter = Counter()
    for op in compute:
        name = WEIGHT_INPUTS.get(op.type)
        argument = op.inputs.get(name) if name else None
        if argument is None or not argument.arguments or not argument.arguments[0].name:
            continue
        producer = producers.get(argument.arguments[0].name)
        if producer is None:
            continue
        if producer.type == "const":
            weights[_dtype_name(ct, producer.attributes["val"].type.tensorType.dataType)] += 1
        elif any(key in producer.attributes for key in ("quantized_data", "data")):  # constexpr_* (compressed weights)
            key = "quantized_data" if "quantized_data" in producer.attributes else "data"
            weights[_dtype_name(ct, producer.attributes[key].type.tensorType.dataType)] += 1
        else:
            weights[producer.type] += 1
    return {"ops": dict(ops), "const_ops": len(operations) - len(compute), "compute_dtypes": dict(precision), "weight_dtypes": dict(weights)}


class CoreMlRunner(Runner):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.path = Path(path)
        self._runtime_model = runtimes.load("coreml", path, options)
        self.model = self._runtime_model.model
        self.compute_units = self.model.compute_unit

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._runtime_model.predict(x)

    def operator_report(self) -> dict[str, Any]:
        """Where each MIL op is planned to run (CPU/GPU/Neural Engine), from Core ML's compute plan (macOS 14.4+)."""
        ct = _ct()
        report: dict[str, Any] = {"ops": _program_summary(ct, self.model.get_spec())["ops"], "fallback_ops": []}
        try:
            from coremltools.models.compute_plan import MLComputePlan

            plan = MLComputePlan.load_from_path(path=self.model.get_compiled_model_path(), compute_units=self.compute_units)
            devices: dict[str, Counter] = {}
            for operation in plan.model_structure.program.functions["main"].block.operations:
                if operation.operator_name.startswith("const"):
                    continue
                usage = plan.get_compute_device_usage_for_mlprogram_operation(operation)
                device = type(usage.preferred_compute_device).__name__ if usage is not None else "unknown"
                devices.setdefault(device, Counter())[operation.operator_name] += 1
            report["ops_by_device"] = {d: dict(c) for d, c in devices.items()}
            report["fallback_ops"] = sorted({op for d, c in devices.items() if "NeuralEngine" not in d for op in c})
        except Exception as error:  # older macOS or coremltools: the op list alone
            report["compute_plan_error"] = _first_line(error)
        return report


@BACKENDS.register("coreml")
class CoreMlBackend(Backend):
    name = "coreml"
    precisions = ("fp16", "int8")
    suffix = ".mlpackage"

    def unavailable(self) -> str | None:
        try:
            _ct()
        except ImportError as error:
            return f"coremltools is not installed (pip install coremltools): {_first_line(error)}"
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
        example = (torch.zeros(1, *sources.input_shape),)
        with torch.no_grad():
            output_shape = [int(d) for d in model(*example).shape]
        captured, capture = _capture(model, example)
        input_shape = [1, *sources.input_shape]
        try:
            mlmodel = ct.convert(
                captured,
                convert_to="mlprogram",
                inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(input_shape), dtype=np.float32)],
                outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=getattr(ct.target, target_name),
            )
        except Exception as error:
            raise ModelError(f"coreml: coremltools cannot convert the {capture} program: {_first_line(error)}") from error
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
        metadata[_META + "output_shape"] = json.dumps(output_shape)
        self._check_io(ct, mlmodel.get_spec(), input_shape, output_shape)
        path = Path(out_dir) / f"model_{precision}{self.suffix}"
        _save_package(mlmodel, path)
        return path

    @staticmethod
    def _check_io(ct, spec, input_shape: list[int], output_shape: list[int]) -> None:
        inputs = [_feature(ct, f) for f in spec.description.input]
        outputs = [_feature(ct, f) for f in spec.description.output]
        expected = ([{"name": INPUT_NAME, "shape": input_shape}], [{"name": OUTPUT_NAME, "shape": output_shape}])
        actual = ([{k: f[k] for k in ("name", "shape")} for f in inputs], [{k: f[k] for k in ("name", "shape")} for f in outputs])
        if actual != expected:
            raise StageError(f"coreml: the program's IO {actual} does not match the student's {expected}")

    def load(self, path: Path, options: dict[str, Any]) -> Runner:
        if platform.system() != "Darwin":
            raise NotRunnable(f"Core ML runs only on macOS (this is {platform.system()}); the spec was verified here")
        return CoreMlRunner(path, options)

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
            self._check_io(ct, spec, json.loads(metadata[_META + "input_shape"]), json.loads(metadata[_META + "output_shape"]))
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
