"""Layers of a converted PT2E graph returned to float: LiteRT's and ExecuTorch's side of accuracy-aware mixed
precision (``edgekd.mixed_precision`` chooses the layers; this is how a choice is applied to their graph).

In the graph ``convert_pt2e`` makes, a layer runs in INT8 because its inputs arrive as
``dequantize(quantize(x))``: litert-torch and ExecuTorch's XNNPACK partitioner turn that pattern into an integer
kernel. A layer fed ``x`` itself, and its weight as the float tensor from before its quantize op (the
quantization-aware trained value, before rounding), runs in float in both; the quantize op on its output stays,
so the next INT8 layer is fed as before.

An INT8 layer whose output is no longer quantized (its one consumer went back to float) cannot be an integer
kernel in XNNPACK either, which wants a quantized output: it runs in float on its quantized input, and its
weight becomes the float constant of its INT8 value (the same numbers). Left as ``dequantize(int8 weight)``
outside the delegate, ExecuTorch 1.4.1 computes that layer wrongly (by up to 4 on unit-scale outputs, where the
program without XNNPACK matches the graph to 5e-7).
"""

from __future__ import annotations

import copy

import torch

aten = torch.ops.aten
LAYER_OPS = (aten.conv1d, aten.conv2d, aten.conv_transpose1d, aten.conv_transpose2d, aten.linear)


def _packet(node: torch.fx.Node):
    return getattr(node.target, "overloadpacket", None) if node.op == "call_function" else None


def _is(node, name: str) -> bool:
    return _packet(node) is not None and _packet(node).__name__.startswith(name)


def _float_source(arg) -> torch.fx.Node | None:
    """The tensor before ``dequantize(quantize(tensor))``, for an argument fed that way."""
    if isinstance(arg, torch.fx.Node) and _is(arg, "dequantize_per_") and arg.args:
        quantize = arg.args[0]
        if isinstance(quantize, torch.fx.Node) and _is(quantize, "quantize_per_") and quantize.args:
            return quantize.args[0]
    return None


def quantized_layers(graph: torch.fx.GraphModule) -> list[str]:
    """The layers of an unfolded converted graph whose activation input is quantized, by node name, in order."""
    return [node.name for node in graph.graph.nodes
            if _packet(node) in LAYER_OPS and node.args and _float_source(node.args[0]) is not None]


def module_names(graph: torch.fx.GraphModule, layers: list[str]) -> dict[str, str]:
    """The PyTorch module of each layer, from the module stack torch.export records."""
    found = {}
    for node in graph.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.name in layers else None
        if stack:
            found[node.name] = list(stack.values())[-1][0]
    return found


def with_float_layers(graph: torch.fx.GraphModule, layers: list[str]) -> torch.fx.GraphModule:
    """A copy of ``graph`` (converted with ``fold_quantize=False``) with ``layers`` in float."""
    mixed = copy.deepcopy(graph)
    wanted = set(layers)
    found = set()
    for node in mixed.graph.nodes:
        if node.name in wanted and _packet(node) in LAYER_OPS:
            found.add(node.name)
            node.args = tuple(_float_source(arg) or arg for arg in node.args)
    if found != wanted:
        raise ValueError(f"not layers of the converted graph: {', '.join(sorted(wanted - found))}")
    mixed.graph.eliminate_dead_code()  # the quantize/dequantize pairs that fed only these layers
    if wanted:
        _drop_stranded_pairs(mixed, int8=set(quantized_layers(graph)) - wanted)
        mixed.graph.eliminate_dead_code()
        _constant_weights_where_output_is_float(mixed)
        mixed.graph.eliminate_dead_code()
    mixed.recompile()
    return mixed


CONVS = LAYER_OPS[:4]


def take_student_weights(graph: torch.fx.GraphModule, layers: list[str], student: dict[str, torch.Tensor], *,
                         convs_folded: bool = False) -> dict[str, str]:
    """Give each float layer of ``graph`` (from ``with_float_layers``) the FP32 student's weight and bias where its
    weight pairs with the student's parameter of the same name and shape within a few INT8 steps, as the ONNX path
    does (after quantization-aware training the learned values, trained around the very quantizers removed, did
    worse in float: benchmarks/results/mixed_precision.md). ``convs_folded``: the student has batch norm, which
    torchao folded into the convs under their own names, so no conv pairs. Returns ``fp32`` or ``pre-rounding``
    per layer."""
    origin = {}
    for node in graph.graph.nodes:
        if node.name not in layers:
            continue
        origin[node.name] = "pre-rounding"
        if convs_folded and _packet(node) in CONVS:
            continue
        weight = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
            continue
        mine, theirs = _attr(graph, weight.target), student.get(weight.target)
        if theirs is None or theirs.shape != mine.shape or \
                (theirs - mine).abs().max() > 0.05 * mine.abs().max() + 1e-12:  # not the same weights before rounding
            continue
        args = list(node.args)
        for index, arg in enumerate(args[1:3], start=1):
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and arg.target in student \
                    and student[arg.target].shape == _attr(graph, arg.target).shape:
                name = f"{node.name}_student_{index}"
                graph.register_buffer(name, student[arg.target].detach().clone())
                with graph.graph.inserting_before(node):
                    args[index] = graph.graph.get_attr(name)
        node.args = tuple(args)
        origin[node.name] = "fp32"
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return origin


def _drop_stranded_pairs(graph: torch.fx.GraphModule, int8: set[str]) -> None:
    """Bypass the activation quantize -> dequantize pairs that serve no INT8 layer any more, as the ONNX path does
    (``edgekd.mixed_precision._drop_stranded_pairs``): through the ops that are not layers, neither an INT8 layer's
    output reaches them nor do they reach an INT8 layer's input, so they would only add rounding."""

    def reaches(start: torch.fx.Node, step) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in step(todo.pop()):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if _packet(nxt) in LAYER_OPS:
                    if nxt.name in int8:
                        return True
                    continue  # a float layer ends the integer path
                todo.append(nxt)
        return False

    def upstream(node: torch.fx.Node) -> list[torch.fx.Node]:
        return [n for n in node.all_input_nodes if n.op != "get_attr"]

    def downstream(node: torch.fx.Node) -> list[torch.fx.Node]:
        return list(node.users)

    stranded = []  # decided on the graph as it is, then bypassed
    for q in graph.graph.nodes:
        if not _is(q, "quantize_per_tensor") or not q.args or getattr(q.args[0], "op", None) == "get_attr":
            continue
        # torchao gives each consumer its own dequantize (DuplicateDQPass): the pair serves all of them
        dequantizes = list(q.users)
        if dequantizes and all(_is(dq, "dequantize_per_tensor") for dq in dequantizes) and not reaches(q, upstream) \
                and not any(reaches(dq, downstream) for dq in dequantizes):
            stranded.append((q, dequantizes))
    for q, dequantizes in stranded:
        for dq in dequantizes:
            dq.replace_all_uses_with(q.args[0])


def _reaches_quantize(node: torch.fx.Node) -> bool:
    """Whether ``node``'s output is quantized again before (or without) meeting another layer."""
    seen, todo = set(), [node]
    while todo:
        for user in todo.pop().users:
            if user in seen:
                continue
            seen.add(user)
            if _is(user, "quantize_per_tensor"):
                return True
            if _packet(user) not in LAYER_OPS:
                todo.append(user)
    return False


def _constant(graph: torch.fx.GraphModule, node) -> object:
    """The value of a constant argument: a get_attr, a literal, or quantize ops on them."""
    if not isinstance(node, torch.fx.Node):
        return node
    if node.op == "get_attr":
        return _attr(graph, node.target)
    if node.op == "call_function" and (_is(node, "quantize_per_") or _is(node, "dequantize_per_")):
        return node.target(*(_constant(graph, a) for a in node.args), **node.kwargs)
    raise ValueError(f"{node.name} is not a constant")


def _attr(graph: torch.fx.GraphModule, target: str):
    owner = graph
    for part in target.split("."):
        owner = getattr(owner, part)
    return owner


def _constant_weights_where_output_is_float(graph: torch.fx.GraphModule) -> None:
    """Each INT8 layer whose output is no longer quantized takes its weights as float constants on the INT8 grid
    (see the module docstring)."""
    for node in list(graph.graph.nodes):
        if _packet(node) not in LAYER_OPS or not node.args or _float_source(node.args[0]) is None:
            continue
        if _reaches_quantize(node):
            continue
        args = list(node.args)
        for index, arg in enumerate(args[1:], start=1):
            if _float_source(arg) is None or getattr(_float_source(arg), "op", None) != "get_attr":
                continue
            with torch.no_grad():
                value = _constant(graph, arg).detach().clone()
            name = f"{node.name}_int8_grid_{index}"
            graph.register_buffer(name, value)
            with graph.graph.inserting_before(node):
                args[index] = graph.graph.get_attr(name)
        node.args = tuple(args)


def folded(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """What ``convert_pt2e(fold_quantize=True)`` adds to an unfolded graph: INT8 weights stored as int8 constants
    (its last step, the same call)."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    result = copy.deepcopy(graph)
    constant_fold(result, _quant_node_constraint)
    return result
