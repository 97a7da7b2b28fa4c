"""A .pte program in ExecuTorch's Python runtime (``executorch.runtime``), with its XNNPACK delegate.

Unlike the other runtimes, ExecuTorch's Python binding takes and returns torch tensors (it links
libtorch), so this module imports torch too, inside functions like the runtime itself: a device
needs the ``executorch`` package (which brings torch) to run these artifacts.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...ondevice.runtimes import Model, RUNTIMES, Unavailable, as_input, package_version


def operators_path(program: Path) -> Path:
    """The delegation report the build writes beside a program: model_int8.pte -> model_int8.operators.json."""
    return Path(program).with_suffix(".operators.json")


@RUNTIMES.register("executorch")
class ExecuTorchModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        try:
            import torch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
        except ImportError as error:
            raise Unavailable(f"executorch is not installed or does not import (pip install executorch): {error}") from None
        # kernels for quantize/dequantize ops XNNPACK leaves outside its delegate (e.g. beside a layer returned to
        # float): without them such a program fails to load with OperatorMissing; the others run without
        with contextlib.suppress(ImportError):
            import executorch.kernels.quantized  # noqa: F401
        self.path, self._torch = Path(path), torch
        if options.get("threads"):
            # XNNPACK's thread pool is one per process: the profiler loads one artifact per process.
            portable_lib._unsafe_reset_threadpool(int(options["threads"]))
        self.method = Runtime.get().load_program(self.path).load_method("forward")
        meta = self.method.metadata
        self.input_meta, self.output_meta = meta.input_tensor_meta(0), meta.output_tensor_meta(0)
        self.batch = int(self.input_meta.sizes()[0])
        self.runtime = package_version("executorch")

    def infer(self, x: np.ndarray) -> np.ndarray:
        (y,) = self.method.execute([self._torch.from_numpy(as_input(x))])
        return y.numpy().copy()  # the output lives in the program's planned memory, reused by the next call

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        staged, method = [self._torch.from_numpy(as_input(x))], self.method
        return lambda: method.execute(staged)

    def operator_report(self) -> dict[str, Any]:
        io = {"input": list(self.input_meta.sizes()), "output": list(self.output_meta.sizes())}
        report_path = operators_path(self.path)
        if not report_path.is_file():
            return {"delegation": f"unknown: no {report_path.name} beside the program", "fallback_ops": [], "io": io}
        return {**json.loads(report_path.read_text()), "io": io}
