"""A TensorRT engine on a CUDA device. torch holds the CUDA buffers (on a Jetson, NVIDIA's torch wheel), so torch
and tensorrt are imported when an engine loads; a device without torch can time engines with ``trtexec`` instead."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...ondevice.runtimes import RUNTIMES, Model, Unavailable


def _torch_dtype(torch, trt, dtype):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32, trt.bool: torch.bool}
    for name, torch_dtype in (("int64", torch.int64), ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_dtype
    if dtype not in table:
        raise RuntimeError(f"tensorrt: engine IO dtype {dtype} has no torch equivalent")
    return table[dtype]


def _layer_precision(layer: dict[str, Any]) -> str:
    """The output precision of one layer from the inspector's JSON ("Row major linear FP16 format", "Int8 ...")."""
    formats = " ".join(str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", []) if isinstance(o, dict))
    for token, name in (("Int8", "int8"), ("FP8", "fp8"), ("FP16", "fp16"), ("Half", "fp16"), ("BF16", "bf16"), ("FP32", "fp32"), ("Float", "fp32"), ("Int32", "int32")):
        if token in formats:
            return name
    return "unknown"


@RUNTIMES.register("tensorrt")
class TensorRtModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        try:
            import tensorrt as trt
            import torch
        except ImportError as error:
            raise Unavailable(f"tensorrt: {error}") from None
        if not torch.cuda.is_available():
            raise Unavailable("tensorrt: no CUDA device")
        self.torch, self.trt = torch, trt
        self.device = torch.device("cuda", int(options.get("device", 0)))
        torch.cuda.set_device(self.device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.trt_runtime = trt.Runtime(self.logger)  # kept alive as long as the engine
        self.engine = self.trt_runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"tensorrt: cannot deserialize {Path(path).name} (built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or not self.outputs:
            raise RuntimeError(f"tensorrt: expected one input and at least one output, got inputs {self.inputs}, outputs {self.outputs}")
        fixed = self.engine.get_tensor_shape(self.inputs[0])[0]
        self.batch = int(fixed) if fixed > 0 else None  # a static batch (1 for deployed artifacts), else any
        self.stream = torch.cuda.Stream(device=self.device)
        self.runtime = f"tensorrt {trt.__version__}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch, trt, engine, context = self.torch, self.trt, self.engine, self.context
        name = self.inputs[0]
        with torch.cuda.stream(self.stream):  # copies, allocation and the engine all on one stream
            device_input = torch.from_numpy(x).to(self.device, non_blocking=False).to(_torch_dtype(torch, trt, engine.get_tensor_dtype(name))).contiguous()
            context.set_input_shape(name, tuple(device_input.shape))
            context.set_tensor_address(name, device_input.data_ptr())
            results = {}
            for output in self.outputs:
                shape = tuple(context.get_tensor_shape(output))
                results[output] = torch.empty(shape, dtype=_torch_dtype(torch, trt, engine.get_tensor_dtype(output)), device=self.device)
                context.set_tensor_address(output, results[output].data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")
            logits = results[self.outputs[0]].float().cpu()
        self.stream.synchronize()
        return logits.numpy()

    def operator_report(self) -> dict[str, Any]:
        """Layers, their types and output precisions from the engine inspector (needs a DETAILED build)."""
        trt = self.trt
        inspector = self.engine.create_engine_inspector()
        for attribute in ("execution_context", "context"):  # renamed across TensorRT 10 releases
            if hasattr(inspector, attribute):
                try:
                    setattr(inspector, attribute, self.context)
                    break
                except Exception:
                    continue
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        layers = info.get("Layers", []) if isinstance(info, dict) else []
        detailed = [layer for layer in layers if isinstance(layer, dict)]
        return {
            "layers": len(layers),
            "layer_types": dict(Counter(layer.get("LayerType", "?") for layer in detailed)),
            "layer_precisions": dict(Counter(_layer_precision(layer) for layer in detailed)),
            "tactics": dict(Counter(str(layer.get("TacticName", "")) for layer in detailed if layer.get("TacticName"))),
            "fallback_ops": [],  # TensorRT either builds every layer on the GPU or fails the build
        }
