"""Counted (not estimated) parameters, MACs and serialized size of a model."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .ensemble import Ensemble
from .onnx_module import OnnxModule


@dataclass
class ModelStats:
    """``macs`` is -1 when it cannot be counted; ``note`` then says why (or how it was counted)."""

    params: int
    macs: int
    size_bytes: int
    note: str = ""
    embedding_params: int = 0  # in nn.Embedding(Bag) tables (a text model's vocabulary): parameters, but no MACs

    def to_dict(self) -> dict:
        return asdict(self)


def model_stats(model: nn.Module, example: torch.Tensor) -> ModelStats:
    """Stats for one batch-1 ``example`` input (``DataBundle.example()``: an image, or ids at the maximum length).

    PyTorch modules: MACs from ``torch_pruning.utils.count_ops_and_params``
    (conv/linear incl. bias adds, plus BN/activation/pool element ops).
    TorchScript and torch.export modules cannot take its hooks, so they fall
    back to ``torch.utils.flop_counter`` (conv/matmul only), as do text models, whose attention matmuls
    (no module of their own) the hooks would miss. ONNX: see
    ``onnx_stats``. Ensembles: the sum over members. ``size_bytes`` is the
    float32 safetensors serialization of the state dict (the file size for ONNX).
    """
    if isinstance(model, OnnxModule):
        return onnx_stats(model.path, tuple(example.shape[1:]))
    if isinstance(model, Ensemble):
        parts = [model_stats(m, example) for m in model.members]
        macs = -1 if any(p.macs < 0 for p in parts) else sum(p.macs for p in parts)
        notes = "; ".join(sorted({p.note for p in parts if p.note}))
        return ModelStats(sum(p.params for p in parts), macs, sum(p.size_bytes for p in parts), notes)
    params = sum(p.numel() for p in model.parameters())
    first = next(model.parameters(), None)
    x = example.to(first.device if first is not None else "cpu")
    work = copy.deepcopy(model).eval()
    macs, note = 0, ""
    text = not x.is_floating_point()
    if not isinstance(work, torch.jit.ScriptModule) and not text:
        macs = int(tp.utils.count_ops_and_params(work, x)[0])
    if macs == 0 and params > 0:  # no hookable layers (ScriptModule, torch.export graph), or a text model
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            work(x)
        macs = counter.get_total_flops() // 2
        note = (f"counted with torch.utils.flop_counter (matmuls, attention included) at sequence {x.shape[-1]}"
                if text else "counted with torch.utils.flop_counter (conv/matmul only)")
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)))
    return ModelStats(params, macs, _safetensors_size(model), note, embedding)


def _safetensors_size(model: nn.Module) -> int:
    tensors = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue  # e.g. dtype entries of quantized modules
        value = value.detach().cpu()
        value = value.dequantize() if value.is_quantized else value
        value = value.float() if value.is_floating_point() else value
        tensors[name] = value.contiguous().clone()
    return len(safetensors_bytes(tensors))


# op -> (index of the input whose last dim is the reduction length K, index of the optional bias)
_ONNX_MATMULS = {"Gemm": (0, 2), "MatMul": (0, None), "MatMulInteger": (0, None), "QLinearMatMul": (0, None)}
# op -> (index of the weight [Cout, Cin/groups, kh, kw], index of the optional bias)
_ONNX_CONVS = {"Conv": (1, 2), "ConvInteger": (1, None), "QLinearConv": (3, 8)}


def onnx_stats(path: Path, input_shape: tuple[int, int, int]) -> ModelStats:
    """Params = elements of all initializers; MACs = Conv/Gemm/MatMul nodes (incl. bias adds)
    sized by ONNX shape inference at batch 1, or -1 with the reason in ``note``;
    size = bytes on disk (model file plus external data)."""
    import onnx  # lazily: only ONNX users pay for it

    path = Path(path)
    model = onnx.load(str(path))
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    external = {e.value for i in model.graph.initializer for e in i.external_data if e.key == "location"}
    size = path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)
    macs, note = _onnx_macs(model, input_shape)
    return ModelStats(params, macs, size, note)


def _onnx_macs(model, input_shape: tuple[int, int, int]) -> tuple[int, str]:
    import onnx

    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        return -1, "ONNX graph has no input"
    wanted = (1, *input_shape)
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(wanted):
        return -1, f"ONNX input {inputs[0].name} has rank {len(dims)}, expected {len(wanted)}"
    for dim, value in zip(dims, wanted):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            dim.dim_value = value  # pin dynamic dims so shape inference yields numbers
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises its own error types
        return -1, f"ONNX shape inference failed: {exc}"
    shapes: dict[str, list[int]] = {i.name: list(i.dims) for i in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in info.type.tensor_type.shape.dim]
        if info.type.tensor_type.HasField("shape"):
            shapes[info.name] = shape
    macs = 0
    for node in inferred.graph.node:
        if node.op_type not in _ONNX_CONVS and node.op_type not in _ONNX_MATMULS:
            continue
        out = shapes.get(node.output[0])
        if node.op_type in _ONNX_CONVS:
            arg, bias = _ONNX_CONVS[node.op_type]
            operand = shapes.get(node.input[arg])
            per_output = int(np.prod(operand[1:])) if operand and min(operand) > 0 else -1
        else:
            arg, bias = _ONNX_MATMULS[node.op_type]
            operand = shapes.get(node.input[arg])
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            per_output = (operand[0] if trans_a else operand[-1]) if operand else -1
        if not out or min(out) <= 0 or per_output <= 0:
            where = node.name or node.output[0]
            return -1, f"shape of {node.op_type} node {where!r} unknown after ONNX shape inference"
        has_bias = bias is not None and len(node.input) > bias and node.input[bias] != ""
        macs += int(np.prod(out)) * (per_output + int(has_bias))
    return macs, "ONNX: Conv/Gemm/MatMul only"
