"""The one INT8 scheme every artifact uses, as a torchao PT2E quantizer.

* weights: int8, symmetric, per output channel (axis 0), range [-127, 127], zero point 0
  (what TFLite requires for symmetric weights);
* activations: int8 (signed: LiteRT's XNNPACK refuses uint8), per tensor, affine, [-128, 127];
* bias: left float; ONNX Runtime, OpenVINO and LiteRT derive int32 biases as s_in * s_w.

Why our own quantizer: torchao's X86InductorQuantizer uses uint8 activations,
and litert-torch's PT2EQuantizer fails in QAT mode with torchao 0.18. One
prepared graph from this quantizer converts to QDQ ONNX (ONNX Runtime,
OpenVINO, TensorRT) and to full-integer TFLite without re-calibration.

Two schemes (``SCHEMES``):

* ``full`` (CNNs): conv/linear (+ batch norm, folded) (+ ReLU/ReLU6), float add (+ ReLU),
  and pooling/flatten/reshape sharing their input's parameters: a full-integer graph.
* ``transformer``: the inputs and weights of every linear layer in INT8, their outputs float
  (the logits too, so runtimes with dynamic-range INT8 compute the same function). Residual adds,
  LayerNorm, softmax, GELU and the attention matmuls stay float: a transformer's residual
  stream has outliers that a per-tensor INT8 scale cannot hold (measured on the sentiment
  student, PTQ: 74.8% with residual adds in INT8, 80.0% with this scheme, FP32 79.9%).
  This is the pattern of ONNX Runtime's and OpenVINO's INT8 BERTs (INT8 matmul, float output).

``scheme_for`` picks ``transformer`` for a graph with LayerNorm, else ``full``.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
from torch.fx import Node
from torchao.quantization.pt2e import (
    FakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec, Quantizer, SharedQuantizationSpec

aten = torch.ops.aten
EPS = 2**-12

CONV_LINEAR = {aten.conv1d.default, aten.conv2d.default, aten.linear.default}
BATCH_NORM = {aten.batch_norm.default, aten._native_batch_norm_legit.default, aten._native_batch_norm_legit_no_training.default}
RELU = {aten.relu.default, aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default}
ADD = {aten.add.Tensor}  # not add_: that is batch norm's int64 num_batches_tracked += 1
LAYER_NORM = {aten.layer_norm.default, aten.native_layer_norm.default}
SCHEMES = ("full", "transformer")
SHARED = {
    aten.adaptive_avg_pool2d.default, aten.max_pool2d.default, aten.avg_pool2d.default, aten.mean.dim,
    aten.flatten.using_ints, aten.reshape.default, aten.view.default,
}


def qspecs(observer: str) -> tuple[QuantizationSpec, QuantizationSpec]:
    """(activation, weight) specs. ``moving_average`` for QAT, ``minmax`` for calibration (PTQ)."""
    act_obs, w_obs = {
        "moving_average": (MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver),
        "minmax": (MinMaxObserver, PerChannelMinMaxObserver),
    }[observer]
    activation = QuantizationSpec(
        dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine, is_dynamic=False,
        observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=act_obs, eps=EPS),
    )
    weight = QuantizationSpec(
        dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric, ch_axis=0, is_dynamic=False,
        observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=w_obs, eps=EPS),
    )
    return activation, weight


def _annotated(node: Node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return bool(annotation and annotation._annotated)


def _has_output_spec(node: Node) -> bool:
    return _annotated(node) and node.meta["quantization_annotation"].output_qspec is not None


def _is_float_activation(arg) -> bool:
    value = arg.meta.get("val") if isinstance(arg, Node) else None
    return isinstance(value, torch.Tensor) and value.dtype.is_floating_point


def _only_user(node: Node) -> Optional[Node]:
    return next(iter(node.users)) if len(node.users) == 1 else None


def scheme_for(graph: torch.fx.GraphModule) -> str:
    """``transformer`` for a graph with LayerNorm (a residual stream), ``full`` otherwise."""
    has_layer_norm = any(node.op == "call_function" and node.target in LAYER_NORM for node in graph.graph.nodes)
    return "transformer" if has_layer_norm else "full"


class Int8Quantizer(Quantizer):
    def __init__(self, observer: str = "moving_average", scheme: str = "full") -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"unknown INT8 scheme {scheme!r}; expected one of {SCHEMES}")
        self.activation, self.weight = qspecs(observer)
        self.scheme = scheme

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        if self.scheme == "transformer":
            return self._annotate_linear_inputs(model)
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target in CONV_LINEAR:
                self._conv_linear(node)
            elif node.op == "call_function" and node.target in ADD:
                self._add(node)
        # Second pass: ops that reuse their producer's parameters need the producers annotated first.
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target in SHARED and not _annotated(node):
                source = node.args[0]
                if _is_float_activation(source):
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={source: SharedQuantizationSpec(source) if _has_output_spec(source) else self.activation},
                        output_qspec=SharedQuantizationSpec((source, node)),
                        _annotated=True,
                    )
        return model

    def _annotate_linear_inputs(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        for node in model.graph.nodes:
            if node.op == "call_function" and node.target in CONV_LINEAR and not _annotated(node):
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={node.args[0]: self.activation, node.args[1]: self.weight}, _annotated=True
                )
        return model

    def _conv_linear(self, node: Node) -> None:
        if _annotated(node):
            return
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={node.args[0]: self.activation, node.args[1]: self.weight}, _annotated=True
        )
        # conv -> [batch norm (-> getitem)] -> [relu]: the output is observed after the last one,
        # so torchao folds batch norm into the conv and the weight observer sees folded weights.
        last, user = node, _only_user(node)
        if user is not None and user.target in BATCH_NORM:
            last, user = user, _only_user(user)
            if user is not None and user.target is operator.getitem:
                last, user = user, _only_user(user)
        if user is not None and user.target in RELU:
            last = user
        if last is node:
            node.meta["quantization_annotation"].output_qspec = self.activation
        else:
            last.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=self.activation, _annotated=True)

    def _add(self, node: Node) -> None:
        if _annotated(node) or not all(_is_float_activation(a) for a in node.args[:2]):
            return
        inputs = {a: self.activation for a in node.args[:2]}
        relu = _only_user(node)
        if relu is not None and relu.target in RELU:
            node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
            relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=self.activation, _annotated=True)
        else:
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map=inputs, output_qspec=self.activation, _annotated=True
            )

    def validate(self, model: torch.fx.GraphModule) -> None:
        return None
