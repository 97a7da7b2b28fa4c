"""Prepare, train, freeze and convert a student with the INT8 quantizer (torchao PT2E).

``QuantizedStudent`` wraps the prepared graph so the shared trainer can use it
like any module: PT2E graphs forbid ``.train()``/``.eval()``, and observers
keep updating in eval mode unless disabled, which would let validation data
move the scales. Its frozen flags are buffers, so a resumed run restores them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torchao.quantization.pt2e import (
    FakeQuantize,
    disable_observer,
    enable_observer,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

from ..errors import ModelError
from ..inputs import dynamic_axes, example_input
from ..io import atomic_path
from ..records import InputSpec
from .patterns import fewer_pattern_exports
from .quantizer import BATCH_NORM, Int8Quantizer, scheme_for


def _freeze_batch_norm(graph: torch.fx.GraphModule) -> None:
    # No torchao API: flip batch_norm's ``training`` argument, as freeze_bn_stats does in eager QAT.
    for node in graph.graph.nodes:
        if node.op == "call_function" and node.target in BATCH_NORM and len(node.args) > 5:
            node.args = (*node.args[:5], False, *node.args[6:])
    graph.recompile()


class QuantizedStudent(torch.nn.Module):
    def __init__(self, graph: torch.fx.GraphModule, scheme: str) -> None:
        super().__init__()
        self.graph = graph
        self.scheme = scheme  # which layers are INT8 (edgekd.quantize.quantizer.SCHEMES)
        self.register_buffer("observers_frozen", torch.tensor(False))
        self.register_buffer("batch_norm_frozen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> "QuantizedStudent":
        self.training = mode  # children are PT2E graphs: switched with torchao's helpers, not recursively
        if mode:
            move_exported_model_to_train(self.graph)
            if bool(self.batch_norm_frozen):
                _freeze_batch_norm(self.graph)  # move_exported_model_to_train undoes the freeze
            self.graph.apply(disable_observer if bool(self.observers_frozen) else enable_observer)
        else:
            move_exported_model_to_eval(self.graph)
            self.graph.apply(disable_observer)
        return self

    def freeze_observers(self) -> None:
        self.observers_frozen.fill_(True)
        self.graph.apply(disable_observer)

    def freeze_batch_norm(self) -> None:
        self.batch_norm_frozen.fill_(True)
        if self.training:
            _freeze_batch_norm(self.graph)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, batch_size: int = 64) -> None:
        """Run observers over ``x`` with batch norm in inference mode (PTQ, or the start of QAD)."""
        move_exported_model_to_eval(self.graph)
        self.graph.apply(enable_observer)
        for start in range(0, len(x), batch_size):
            self.graph(x[start : start + batch_size])
        self.train(self.training)

    def learned_qparams(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every fake-quantizer's (scale, zero point), by module name."""
        result = {}
        for name, module in self.graph.named_modules():
            if isinstance(module, FakeQuantize):
                scale, zero_point = module.calculate_qparams()
                result[name] = (scale.detach().numpy().astype(np.float32).ravel(), zero_point.detach().numpy().astype(np.int64).ravel())
        return result

    @torch.no_grad()
    def with_learned_weights(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` (the FP32 student's architecture) carrying this student's learned weights, each INT8 weight at
        its dequantized value: the float model a runtime's own dynamic-range INT8 starts from, so its weights round
        to the same grid as the QDQ graph's (the activations are then quantized by the runtime, per batch)."""
        model = copy.deepcopy(model).eval()
        state = {name: tensor.detach().clone() for name, tensor in self.graph.state_dict().items()}
        for node in self.graph.graph.nodes:
            if node.op != "get_attr":
                continue
            quantizers = [user for user in node.users if user.op == "call_module"]
            if quantizers and node.target in state:
                fake_quant = self.graph.get_submodule(quantizers[0].target)
                state[node.target] = fake_quant(state[node.target])  # observers are frozen: only rounds
        missing = [name for name, _ in model.named_parameters() if name not in state]
        if missing:  # torch.export keeps parameter names; a model it renamed would silently keep FP32 weights
            raise ModelError(f"quantize: the captured graph has no learned weight named {missing[0]!r} "
                             f"({len(missing)} missing); cannot build a dynamic-range INT8 artifact from it")
        own = model.state_dict()
        model.load_state_dict({name: state.get(name, tensor) for name, tensor in own.items()})
        return model

    def converted(self, *, fold_quantize: bool) -> torch.fx.GraphModule:
        """The QDQ graph with batch norm folded. ONNX wants folded int8 weights; litert-torch wants them unfolded."""
        graph = copy.deepcopy(self.graph)
        move_exported_model_to_eval(graph)
        graph.apply(disable_observer)
        with fewer_pattern_exports():
            converted = convert_pt2e(graph, fold_quantize=fold_quantize)
        converted.training = False  # .eval() is not allowed on PT2E graphs
        return converted


def prepare(model: torch.nn.Module, spec: InputSpec, *, observer: str = "moving_average", scheme: str = "auto") -> QuantizedStudent:
    """Capture ``model`` in training mode (so conv-BN patterns fuse for QAT) with its dynamic axes
    (the batch; for text also the sequence, so trimmed training batches of any length fit).
    ``scheme``: ``full``, ``transformer`` or ``auto`` (``transformer`` when the model has LayerNorm)."""
    model = copy.deepcopy(model).train()
    example = (example_input(spec, 2),)
    dims = {i: torch.export.Dim(name, min=1, max=top) for i, (name, top) in dynamic_axes(spec).items()}
    try:
        graph = torch.export.export(model, example, dynamic_shapes=(dims,)).module()
    except Exception as error:  # torch.export's errors are long; keep the first line and the model name
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"quantize: cannot capture {type(model).__name__} with torch.export: {first}") from error
    scheme = scheme_for(graph) if scheme == "auto" else scheme
    with fewer_pattern_exports():
        student = QuantizedStudent(prepare_qat_pt2e(graph, Int8Quantizer(observer, scheme)), scheme)
    return student.train()


def save_state(student: QuantizedStudent, path: Path) -> None:
    tensors = {k: v.detach().contiguous().clone() for k, v in student.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp))


def load_state(student: QuantizedStudent, path: Path) -> QuantizedStudent:
    """Load learned weights and quantization parameters into a freshly prepared student."""
    state = load_file(str(path))
    own = student.state_dict()
    for name, tensor in state.items():  # per-channel observer buffers start empty; size them first
        if name in own and own[name].shape != tensor.shape:
            module_name, _, leaf = name.rpartition(".")
            owner = student.get_submodule(module_name)
            owner._buffers[leaf] = torch.empty_like(tensor)
    # A plain dict from safetensors lacks PyTorch's per-module version metadata; without it torchao
    # treats the observers as an old format and resets their eps, which would change converted scales.
    state = OrderedDict(state)
    state._metadata = own._metadata  # type: ignore[attr-defined]
    student.load_state_dict(state, strict=True)
    if bool(student.observers_frozen):
        student.graph.apply(disable_observer)
    return student.eval()
