"""ONNX export, simplification, metadata and ONNX Runtime inference.

FP32 models go through the TorchScript-free dynamo exporter like the INT8
ones, so both files come from one code path. Export failures are turned into
a ModelError that names the model and the first line of the exporter's error.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from .errors import ModelError
from .inputs import dynamic_axes, example_input
from .io import atomic_path
from .ondevice.runtimes import first_line
from .records import InputSpec

OUTPUT_NAME = "logits"


def export(model: torch.nn.Module, spec: InputSpec, path: Path, *, opset: int, dynamic_batch: bool) -> Path:
    """One named input as ``spec`` says; the batch axis dynamic when asked, a text's sequence axis always
    (a device feeds each text at its own length)."""
    example = (example_input(spec, 1),)
    axes = {i: torch.export.Dim(name, min=1, max=top) for i, (name, top) in dynamic_axes(spec).items()
            if name != "batch" or dynamic_batch}
    dynamic = (axes,) if axes else None
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's concern
            program = torch.onnx.export(
                model, example, dynamo=True, opset_version=opset, input_names=[spec.name], output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic, verbose=False, report=False,
            )
    except Exception as error:
        # the exporter wraps torch.export's error in a page of coloured advice; the innermost cause says why
        root = error
        while root.__cause__ is not None:
            root = root.__cause__
        first = re.sub(r"\x1b\[[0-9;]*m", "", first_line(root))
        int8 = isinstance(model, torch.fx.GraphModule)
        what = "the INT8 (quantized) student" if int8 else type(model).__name__
        hint = "; quantize.mode: none ships the FP32 student alone" if int8 else ""
        raise ModelError(f"export: {what} does not export to ONNX: {type(root).__name__}: {first}{hint}") from error
    with atomic_path(Path(path)) as tmp:
        program.save(str(tmp), external_data=False)
    return Path(path)


def simplify(path: Path) -> None:
    import onnxslim

    slim = onnxslim.slim(onnx.load(str(path)))
    with atomic_path(Path(path)) as tmp:
        onnx.save(slim, str(tmp))


def set_metadata(path: Path, metadata: dict[str, object]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    with atomic_path(Path(path)) as tmp:
        onnx.save(model, str(tmp))


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def session(path: Path, *, threads: int | None = None, optimization: str = "all", optimized_path: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess, x: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Logits for every row of ``x``; a model with a fixed batch of 1 is fed one row at a time."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    x = np.ascontiguousarray(x, dtype=np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32)
    meta = sess.get_inputs()[0]
    fixed = meta.shape[0] if isinstance(meta.shape[0], int) else None
    step = fixed or batch_size
    return np.concatenate([sess.run(None, {meta.name: x[i : i + step]})[0] for i in range(0, len(x), step)])


def output_scale(onnx_path: Path) -> float:
    """The scale of the last DequantizeLinear feeding the output: one INT8 step of the logits."""
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    scales = [values.get(n.input[1]) for n in model.graph.node if n.op_type == "DequantizeLinear"]
    scales = [float(np.asarray(s).ravel()[0]) for s in scales if s is not None and np.asarray(s).size == 1]
    return scales[-1] if scales else 0.0
