"""A Core ML program through coremltools, on macOS only (elsewhere loading says why it cannot run)."""

from __future__ import annotations

import platform
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...ondevice.runtimes import RUNTIMES, Model, Unavailable, first_line, package_version

INPUT_NAME, OUTPUT_NAME = "input", "logits"
WEIGHT_INPUTS = {"conv": "weight", "conv_transpose": "weight", "linear": "weight", "matmul": "y"}


def _ct():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # version-compatibility chatter (torch, scikit-learn) on import
        import coremltools

    return coremltools


def _dtype_name(ct, value: int) -> str:
    return ct.proto.MIL_pb2.DataType.Name(value)


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


@RUNTIMES.register("coreml")
class CoreMlModel(Model):
    batch = 1  # the program is built for batch 1

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        if platform.system() != "Darwin":
            raise Unavailable(f"Core ML runs only on macOS (this is {platform.system()}); the spec was verified here")
        ct = _ct()
        units = getattr(ct.ComputeUnit, str(options.get("compute_units", "ALL")).upper())
        self.model = ct.models.MLModel(str(path), compute_units=units)
        self.input_name = self.model.get_spec().description.input[0].name  # "input", or "input_ids" for text
        self.compute_units = self.model.compute_unit
        self.runtime = package_version("coremltools")

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.int32) if np.issubdtype(x.dtype, np.integer) else x  # Core ML takes ids as int32
        return np.asarray(self.model.predict({self.input_name: x})[OUTPUT_NAME], dtype=np.float32)

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
            report["compute_plan_error"] = first_line(error)
        return report
