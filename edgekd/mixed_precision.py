"""Accuracy-aware mixed precision: return the fewest INT8 layers to float until an accuracy budget holds.

For the runtimes that take the QDQ ONNX model (ONNX Runtime, OpenVINO, TensorRT), a layer runs in INT8
because its activation input arrives through QuantizeLinear -> DequantizeLinear: the runtime fuses the
pair with the layer into an integer kernel. Feeding the layer the float tensor from before the
QuantizeLinear leaves nothing to fuse, so the layer runs in float, its weights float constants. What the
runtime then makes of its neighbours is its own affair: ONNX Runtime builds an integer kernel only where
the layer's output is quantized again, so the INT8 layer whose one consumer went back to float runs float
too. The compile stage records, from each runtime's own graph, which layers it runs as integer kernels.

Which layers: as NNCF's accuracy control and ModelOpt's AutoQuantize do, rank them by sensitivity and
return them in that order. A layer's sensitivity is the SQNR of the logits, against the FP32 student's,
of the model with that layer alone in INT8 (lowest first), measured in the target runtime on the
validation split; the test split is never looked at, so the accuracy the gate reads stays unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx

from .metrics import evaluate_logits
from .parity import sqnr_db
from .records import FloatLayers, FloatLayerStep, LayerSensitivity

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CONTROL_FLOW = ("If", "Loop", "Scan")


def _constants(graph) -> set[str]:
    """Tensors computed from initializers and Constant nodes alone (weights, scales, zero points)."""
    constant = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:  # ONNX nodes are in topological order
        if node.input and all(not name or name in constant for name in node.input):
            constant.update(node.output)
    return constant


def _quantized_inputs(graph) -> dict[str, list[tuple[int, str]]]:
    """Per layer (node name): its activation inputs that come through Q -> DQ, as (input index, float tensor)."""
    producers = {out: node for node in graph.node for out in node.output}
    constant = _constants(graph)
    found: dict[str, list[tuple[int, str]]] = {}
    for node in graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if name in constant or dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                found.setdefault(node.name, []).append((index, q.input[0]))
    return found


def quantized_layers(path: Path) -> list[str]:
    """The layers of a QDQ ONNX model that run in INT8, by node name, in graph order."""
    graph = onnx.load(str(path)).graph
    flow = sorted({n.op_type for n in graph.node if n.op_type in CONTROL_FLOW})
    if flow:  # their subgraphs would need the same rewiring and liveness: not done
        raise ValueError(f"{path.name}: control flow ({', '.join(flow)}): layers return to float only in graphs without it")
    names = [n.name for n in graph.node if n.op_type in LAYER_OPS]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"{path.name}: layers without unique node names; cannot name the ones returned to float")
    found = _quantized_inputs(graph)
    return [name for name in names if name in found]


def _twins(graph, fp32_graph) -> dict[str, "onnx.NodeProto"]:
    """Each layer's node in the FP32 model. The two exports name nodes their own way (``node_conv2d`` in one,
    ``node_Conv_53`` in the other once batch norm is folded), so layers pair by their order among the layers of
    the same op, and only where both models have as many of them."""
    pairs = {}
    for op in LAYER_OPS:
        mine, theirs = [n for n in graph.node if n.op_type == op], [n for n in fp32_graph.node if n.op_type == op]
        if len(mine) == len(theirs):
            pairs.update({a.name: b for a, b in zip(mine, theirs)})
    return pairs


def layer_aliases(path: Path, layers: Iterable[str]) -> dict[str, list[str]]:
    """Other names a runtime may give each layer of ``path`` once it fuses it: its output tensor's, and that of
    the activation (Relu, Clip) it fuses with."""
    graph = onnx.load(str(path)).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wanted, found = set(layers), {}
    for node in graph.node:
        if node.name in wanted:
            names = [node.output[0]]
            after = consumers.get(node.output[0], [])
            if len(after) == 1 and after[0].op_type in ("Relu", "Clip"):
                names.append(after[0].output[0])
            found[node.name] = names
    return found


def module_names(source: Path, fp32: Path, layers: Iterable[str]) -> dict[str, str]:
    """The PyTorch module of each layer, where its FP32 twin reads a weight named ``<module>.weight`` (the
    exporter keeps parameter names; node names are its own, ``node_linear_1``)."""
    fp32_graph = onnx.load(str(fp32)).graph
    twins = _twins(onnx.load(str(source)).graph, fp32_graph)
    weights = {i.name for i in fp32_graph.initializer}
    found = {}
    for layer in layers:
        twin = twins.get(layer)
        if twin is not None and len(twin.input) > 1 and twin.input[1] in weights and twin.input[1].endswith(".weight"):
            found[layer] = twin.input[1].removesuffix(".weight")
    return found


def with_float_layers(source: Path, layers: Iterable[str], target: Path, fp32: Path | None = None) -> dict[str, str]:
    """Write ``source`` with ``layers`` fed their activations in float (see the module docstring) to ``target``.

    Their weights become float constants: the FP32 model's (``fp32``, weights and bias) where its twin layer has
    a weight of the same shape within a few INT8 steps of this one (an INT8-rounded weight times a large
    activation is the very error a float layer is there to avoid; after quantization-aware training, the
    student's weights from before it, which the choice then judges on validation accuracy like everything
    else), else the INT8 weights' float values. Returns where each layer's weights came from."""
    model = onnx.load(str(source))
    found = _quantized_inputs(model.graph)
    wanted = set(layers)
    unknown = wanted - set(found)
    if unknown:
        raise ValueError(f"not INT8 layers of {source.name}: {', '.join(sorted(unknown))}")
    for node in model.graph.node:
        for index, tensor in found.get(node.name, []) if node.name in wanted else []:
            node.input[index] = tensor
    weights = {}
    if wanted:
        weights = _float_weights(model, wanted, None if fp32 is None else onnx.load(str(fp32)).graph)
        _drop_stranded_pairs(model.graph, int8={name for name in found if name not in wanted})
    del model.graph.value_info[:]  # shapes recorded for rewired tensors; the runtimes infer them again
    # Q/DQ pairs that now feed nothing would still quantize and dequantize on every call
    onnx.save(_without_dead_nodes(model), str(target))
    return weights


def _float_weights(model: onnx.ModelProto, layers: set[str], fp32_graph) -> dict[str, str]:
    """Feed ``layers`` float constants in place of their dequantized INT8 weights, so that no DequantizeLinear is
    left to run on every call; returns ``fp32`` or ``int8 grid`` per layer (see ``with_float_layers``)."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constant = _constants(graph)
    twins = _twins(graph, fp32_graph) if fp32_graph is not None else {}
    fp32_weights = {i.name: i for i in fp32_graph.initializer} if fp32_graph is not None else {}
    computed = [(node, index, name) for node in graph.node if node.name in layers
                for index, name in enumerate(node.input) if name in constant and name not in initializers]
    values = _evaluate(model, sorted({name for _, _, name in computed}))
    sources: dict[str, str] = {}
    for node, index, name in computed:
        value, source = values[name], "int8 grid"
        twin = twins.get(node.name)
        theirs = fp32_weights.get(twin.input[index]) if twin is not None and index < len(twin.input) else None
        if theirs is not None:
            candidate = numpy_helper.to_array(theirs)
            # a few INT8 steps apart at most: the same weights before rounding, not another layer's
            if candidate.shape == value.shape and np.abs(candidate - value).max() <= 0.05 * np.abs(value).max() + 1e-12:
                value, source = candidate, "fp32"
        tensor = numpy_helper.from_array(value.astype(np.float32), f"{node.name}.float_input{index}")
        graph.initializer.append(tensor)
        node.input[index] = tensor.name
        sources[node.name] = source if sources.get(node.name, source) == source else "int8 grid"
    # a layer that took the student's weights takes its bias too (quantization-aware training moved both)
    for node in graph.node:
        twin = twins.get(node.name)
        if sources.get(node.name) != "fp32" or twin is None:
            continue
        for index, name in enumerate(node.input[: len(twin.input)]):
            theirs = fp32_weights.get(twin.input[index])
            if name in initializers and theirs is not None and list(theirs.dims) == list(initializers[name].dims):
                copy = onnx.TensorProto()
                copy.CopyFrom(theirs)
                copy.name = f"{node.name}.float_input{index}"
                graph.initializer.append(copy)
                node.input[index] = copy.name
    return sources


def _evaluate(model: onnx.ModelProto, names: list[str]) -> dict[str, np.ndarray]:
    """The values of tensors computed from constants alone (DequantizeLinear of int8 weights, and any Clip or
    Transpose after it), by ONNX Runtime on just the nodes that make them (ONNX's reference evaluator lacks
    DequantizeLinear at opset 18)."""
    if not names:
        return {}
    import onnxruntime as ort

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    needed, todo, nodes = set(), list(names), []
    while todo:
        name = todo.pop()
        node = producers.get(name)
        if name in needed or node is None:
            continue
        needed.add(name)
        todo.extend(i for i in node.input if i)
    nodes = [n for n in graph.node if any(out in needed for out in n.output)]
    used = {i for n in nodes for i in n.input}
    outputs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names]
    sub = onnx.helper.make_graph(nodes, "weights", [], outputs, [i for i in graph.initializer if i.name in used])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    made = onnx.helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    session = ort.InferenceSession(made.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, {})))


def _drop_stranded_pairs(graph, int8: set[str]) -> None:
    """Remove the activation Q -> DQ pairs that serve no INT8 layer any more: through the ops that are not
    layers (ReLU, pooling, reshapes, concatenation), neither an INT8 layer's output reaches them nor do they
    reach an INT8 layer's input. They kept the integer path between INT8 layers; between float layers they only
    add rounding (the output quantizer after a float classifier; pooled features before a float head)."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constant = _constants(graph)

    def reaches(start, step) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in step(node):
                if nxt.name in seen:
                    continue
                seen.add(nxt.name)
                if nxt.op_type in LAYER_OPS:
                    if nxt.name in int8:
                        return True
                    continue  # a float layer ends the integer path
                todo.append(nxt)
        return False

    def downstream(node):
        return [c for out in node.output for c in consumers.get(out, [])]

    def upstream(node):
        return [producers[name] for name in node.input if name in producers and name not in constant]

    outputs = {o.name for o in graph.output}
    stranded = []  # decided on the graph as it is, then removed (a renamed output would mislead later walks)
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constant]:
        pairs = [dq for dq in consumers.get(q.output[0], []) if dq.op_type == "DequantizeLinear"]
        if len(pairs) == 1 and not reaches(q, upstream) and not reaches(pairs[0], downstream):
            stranded.append((q, pairs[0]))
    for q, dq in stranded:
        source = q.input[0]
        if dq.output[0] in outputs:  # the graph's output keeps its name: the producer writes it directly
            for node in graph.node:
                node.output[:] = [dq.output[0] if out == source else out for out in node.output]
                node.input[:] = [dq.output[0] if name == source else name for name in node.input]
            dq.output[0] = dq.output[0] + "_unused"  # the pair is now dead: removed with the others
        else:
            for node in graph.node:
                node.input[:] = [source if name == dq.output[0] else name for name in node.input]


def _without_dead_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    used = needed | {name for node in keep for name in node.input}
    dropped = {i.name for i in graph.initializer if i.name not in used}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # an initializer also listed as a graph input (older exporters) would leave an input nothing feeds
    inputs = [i for i in graph.input if i.name not in dropped]
    del graph.input[:]
    graph.input.extend(inputs)
    return model


@dataclass
class Budget:
    max_drop: float  # accuracy points as a fraction, below the reference
    reference_accuracy: float  # the FP32 student on the validation split
    reference_logits: np.ndarray  # its logits there, for the SQNR of each layer
    labels: np.ndarray
    num_classes: int


def choose_float_layers(layers: list[str], budget: Budget, predict: Callable[[list[str]], np.ndarray],
                        progress: Callable[[str], None] = lambda _: None, modules: dict[str, str] | None = None) -> FloatLayers:
    """The fewest of ``layers`` to return to float so that the validation accuracy is within ``budget``.

    ``predict(float_layers)`` builds the artifact with those layers in float, runs it in its runtime and returns
    the validation logits."""

    def accuracy(logits: np.ndarray) -> float:
        return evaluate_logits(logits, budget.labels, budget.num_classes).accuracy

    modules = modules or {}
    record = FloatLayers(max_accuracy_drop=budget.max_drop, reference_accuracy=budget.reference_accuracy,
                         quantized_layers=len(layers), validation_samples=len(budget.labels))
    record.int8_accuracy = record.accuracy = accuracy(predict([]))
    if budget.reference_accuracy - record.int8_accuracy <= budget.max_drop + 1e-9:
        record.status = "not needed"
        return record
    for i, layer in enumerate(layers):
        progress(f"sensitivity {i + 1}/{len(layers)}: {modules.get(layer) or layer} alone in INT8")
        logits = predict([other for other in layers if other != layer])
        record.sensitivity.append(LayerSensitivity(layer=layer, module=modules.get(layer),
                                                   sqnr_db=sqnr_db(budget.reference_logits, logits), accuracy=accuracy(logits)))
    ranked = record.ranked()
    best = FloatLayerStep(layers=[], accuracy=record.int8_accuracy)  # all-INT8 stays a candidate
    for k in range(1, len(ranked) + 1):
        chosen = [s.layer for s in ranked[:k]]
        progress(f"{k} layer(s) in float: {', '.join(modules.get(layer) or layer for layer in chosen)}")
        step = FloatLayerStep(layers=chosen, accuracy=accuracy(predict(chosen)))
        record.steps.append(step)
        if step.accuracy > best.accuracy:
            best = step
        if budget.reference_accuracy - step.accuracy <= budget.max_drop + 1e-9:
            record.status, record.layers, record.accuracy = "met", chosen, step.accuracy
            record.modules = [modules.get(layer) for layer in chosen]
            return record
    record.status = "not met"
    record.layers, record.accuracy = best.layers, best.accuracy
    record.modules = [modules.get(layer) for layer in best.layers]
    kept = f"{len(best.layers)} layer(s) in float" if best.layers else "every layer INT8"
    record.reason = (f"no set of layers in float met it ({len(layers)} INT8 layers, returned one by one, most "
                     f"sensitive first); the most accurate, {kept}, reaches {best.accuracy:.2%} on the validation "
                     f"split, {budget.reference_accuracy - best.accuracy:.2%} below the FP32 student's "
                     f"{budget.reference_accuracy:.2%} (allowed: {budget.max_drop:.2%}); kept it")
    return record
