"""TensorRT engines on a CUDA device; torch holds the CUDA buffers (on a Jetson, NVIDIA's torch wheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .runtimes import Model


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32, trt.bool: torch.bool}
    for name, torch_dtype in (("int64", torch.int64), ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_dtype
    if dtype not in table:
        raise RuntimeError(f"tensorrt: engine IO dtype {dtype} has no torch equivalent")
    return table[dtype]

class TensorRtModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        import tensorrt as trt
        self.trt = trt
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
        self.stream = torch.cuda.Stream(device=self.device)
        self.runtime = f"tensorrt {trt.__version__}"

    def predict(self, x: np.ndarray) -> np.ndarray:
        trt, engine, context = self.trt, self.engine, self.context
        name = self.inputs[0]
        x = np.ascontiguousarray(x, dtype=np.float32)
        fixed = engine.get_tensor_shape(name)[0]
        if fixed > 0 and x.shape[0] != fixed:  # a static batch (1 for deployed artifacts): row by row
            return np.concatenate([self.predict(x[i : i + fixed]) for i in range(0, len(x), fixed)])
        with torch.cuda.stream(self.stream):  # copies, allocation and the engine all on one stream
            device_input = torch.from_numpy(x).to(self.device, non_blocking=False).to(_torch_dtype(trt, engine.get_tensor_dtype(name))).contiguous()
            context.set_input_shape(name, tuple(device_input.shape))
            context.set_tensor_address(name, device_input.data_ptr())
            results = {}
            for output in self.outputs:
                shape = tuple(context.get_tensor_shape(output))
                results[output] = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(output)), device=self.device)
                context.set_tensor_address(output, results[output].data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")
            logits = results[self.outputs[0]].float().cpu()
        self.stream.synchronize()
        return logits.numpy()
