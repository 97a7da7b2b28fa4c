"""Builds LiteRT artifacts with litert-torch (see the package's docstring for what each precision is)."""

from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import ModelError
from ...io import atomic_path
from ..base import BACKENDS, Backend, CompileSources, first_line, package_version
from .runtime import dtype_name as _dtype_name
from .runtime import io_entry as _io_entry
from .runtime import litert_interpreter as _interpreter


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a progress line per conversion step unless LITERT_TORCH_SHOW_PROGRESS=n,
    and ai-edge-quantizer (the FP16 recipe) prints a size report."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    previous = os.environ.get(key)
    if previous is None:
        os.environ[key] = "n"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if previous is None:
            os.environ.pop(key, None)


def quantized_tensors(path: Path) -> list[dict[str, Any]]:
    """Every per-channel quantized tensor (the weights): name, shape, dtype, scales, quantized dimension."""
    interpreter = _interpreter(path, delegates=False)
    result = []
    for detail in interpreter.get_tensor_details():
        params = detail["quantization_parameters"]
        if len(params["scales"]) > 1:
            result.append(
                {
                    "name": detail["name"],
                    "shape": [int(d) for d in detail["shape"]],
                    "dtype": _dtype_name(detail["dtype"]),
                    "scales": np.asarray(params["scales"], dtype=np.float32),
                    "zero_points": np.asarray(params["zero_points"], dtype=np.int64),
                    "quantized_dimension": int(params["quantized_dimension"]),
                }
            )
    return result


@BACKENDS.register("litert")
class LiteRtBackend(Backend):
    name = "litert"
    precisions = ("fp32", "fp16", "int8")
    suffix = ".tflite"
    int8_from_pt2e = True

    def unavailable(self) -> str | None:
        for module, package in (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")):
            try:
                __import__(module)
            except ImportError as error:
                return f"{package} is not installed or does not import (pip install {package}): {first_line(error)}"
        return None

    def toolchain_version(self) -> str:
        return ", ".join(v for v in (package_version("litert-torch"), package_version("ai-edge-litert")) if v)

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        import litert_torch

        if precision not in self.precisions:
            raise ValueError(f"litert: unknown precision {precision!r}; expected one of {', '.join(self.precisions)}")
        example = (sources.example(),)
        quant_config = None
        if precision == "int8":
            if sources.int8_graph is None:
                raise ValueError("no INT8 model: the quantize stage ran with mode none")
            if sources.int8_scheme == "transformer":
                # float-output INT8 linears are lowered by the converter as float FULLY_CONNECTED behind Q/DQ
                # (no integer compute at all); LiteRT's own dynamic-range INT8 runs int8 weights for real
                model, quant_config = sources.int8_learned_float(), _dynamic_range_config()
            else:
                model, quant_config = sources.int8_graph(), _static_qdq_config()
        else:
            model = sources.fp32_model().eval()
            if precision == "fp16":
                quant_config = _fp16_weights_config()
        path = Path(out_dir) / f"model_{precision}{self.suffix}"
        try:
            with _quiet_converter():
                edge_model = litert_torch.convert(model, example, quant_config=quant_config)
        except Exception as error:
            what = "conversion with FP16 weights failed" if precision == "fp16" else "conversion failed"
            raise ModelError(f"litert {precision}: {what}: {first_line(error)}") from error
        with atomic_path(path) as tmp, _quiet_converter():
            edge_model.export(str(tmp))
            # a mix may keep no integer op at all (one layer alone INT8, its output gone float): judged by accuracy
            if not (precision == "int8" and sources.int8_float_layers):
                self._check(tmp, precision)
        return path

    @staticmethod
    def _check(path: Path, precision: str) -> None:
        """Refuse an artifact that is not what was asked for (e.g. a recipe that silently did nothing)."""
        dtypes = {_dtype_name(d["dtype"]) for d in _interpreter(path, delegates=False).get_tensor_details()}
        if precision == "fp16" and "float16" not in dtypes:
            raise ModelError("litert fp16: the converter wrote no float16 tensors; FP16 weights are not supported by the installed litert-torch")
        if precision == "int8" and "int8" not in dtypes:
            raise ModelError("litert int8: the converter wrote no int8 tensors; the graph's Q/DQ ops were not lowered")

    def inspect(self, path: Path) -> dict[str, Any]:
        """IO dtypes and quantization, op counts and tensor dtypes, read without delegates or allocation."""
        interpreter = _interpreter(path, delegates=False)
        tensors = interpreter.get_tensor_details()
        dtypes = Counter(_dtype_name(d["dtype"]) for d in tensors)
        per_channel = [d for d in tensors if len(d["quantization_parameters"]["scales"]) > 1]
        ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
        float_tensors = sum(n for name, n in dtypes.items() if name.startswith("float"))
        weighted = _weighted_op_kinds(interpreter, tensors)
        if "float16" in dtypes:
            precision = "fp16 weights (float32 compute)"
        elif float_tensors == 0 and "int8" in dtypes:
            precision = "int8 (full integer)"
        elif weighted.get("float x int8"):
            precision = "int8 dynamic range (int8 weights, activations quantized at run time)"
        elif weighted.get("int8 x int8"):
            precision = "int8 (integer kernels, float tensors between them)"
        elif "int8" in dtypes:
            precision = "fp32 compute (int8 only at quantize/dequantize ops)"
        else:
            precision = "fp32"
        return {
            "inputs": [_io_entry(d) for d in interpreter.get_input_details()],
            "outputs": [_io_entry(d) for d in interpreter.get_output_details()],
            "ops": dict(ops),
            "tensor_dtypes": dict(dtypes),
            "full_integer": float_tensors == 0,
            "per_channel_quantized_tensors": len(per_channel),
            "weighted_ops": weighted,
            "precision": precision,
            "file_bytes": Path(path).stat().st_size,
        }


WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL")


def _weighted_op_kinds(interpreter, tensors) -> dict[str, int]:
    """Matmul-like ops by (input dtype x weight dtype): what really computes in INT8."""
    # float16/float32 are one family here: what matters is whether the kernel takes integers
    dtype = {d["index"]: "float" if _dtype_name(d["dtype"]).startswith("float") else _dtype_name(d["dtype"]) for d in tensors}
    kinds: Counter = Counter()
    for op in interpreter._get_ops_details():
        inputs = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] in WEIGHTED_OPS and len(inputs) >= 2:
            kinds[f"{dtype.get(inputs[0], '?')} x {dtype.get(inputs[1], '?')}"] += 1
    return dict(kinds)


def _dynamic_range_config():
    """INT8 weights per channel, activations quantized per batch by the kernels (LiteRT's dynamic range)."""
    from litert_torch.generative.quantize import quant_recipes

    return quant_recipes.full_dynamic_recipe()


def _static_qdq_config():
    """STATIC qdq_conversion_mode: lower the graph's own Q/DQ ops. The quantizer is never run."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    return QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))


def _fp16_weights_config():
    try:
        from litert_torch.generative.quantize import quant_recipes

        return quant_recipes.full_fp16_recipe()
    except Exception as error:  # the recipe lives in the generative API and needs ai-edge-quantizer
        raise ModelError(f"litert fp16: FP16 weights are not supported by the installed litert-torch: {first_line(error)}") from error
