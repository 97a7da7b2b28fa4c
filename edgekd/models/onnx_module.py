"""An ONNX file as an inference-only ``nn.Module`` (onnxruntime, CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ModelError

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxModule(nn.Module):
    """Runs ``path`` with onnxruntime's CPUExecutionProvider; ``forward`` returns float32 logits.

    No gradients flow through it and it has no parameters, so it can be a
    teacher or an evaluation target but never a student. Attributes: ``path``,
    ``input_name``, ``output_name``, ``input_shape`` (dims as onnxruntime reports them).
    """

    is_onnx = True

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        import onnxruntime as ort  # imported lazily: only ONNX users pay for it

        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep onnxruntime's warnings out of the run log
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load ONNX model {self.path}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        self.input_shape: list[Any] = list(inp.shape)
        self._input_dtype = _NUMPY_TYPES.get(inp.type, np.float32)
        self.output_name: str = self.session.get_outputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        array = x.detach().cpu().numpy().astype(self._input_dtype, copy=False)
        if self.input_shape and self.input_shape[0] == 1 and array.shape[0] != 1:
            # a file exported with a fixed batch of 1: run the samples one by one
            outs = [self.session.run([self.output_name], {self.input_name: a[None]})[0] for a in array]
            out = np.concatenate(outs)
        else:
            out = self.session.run([self.output_name], {self.input_name: array})[0]
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)

    # InferenceSession cannot be pickled or deep-copied; reopen it from the file instead.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("session", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input={self.input_name}{self.input_shape}"
