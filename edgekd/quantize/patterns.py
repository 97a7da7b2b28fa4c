"""torchao's conv-BN rewrites with the same result and a fraction of the exports.

``prepare_qat_pt2e`` and ``convert_pt2e`` rewrite each conv-BN pair by matching pattern graphs that torchao
``torch.export``s afresh on every call, for conv1d, conv2d and both transposed convolutions whether the model
has them or not: 18 exports to prepare and ~100 to convert, 17 s of the MNIST student's 17.5 s convert here.
Inside ``fewer_pattern_exports()``:

- a conv kind the graph has no node of is not rewritten (no pattern of that kind can match it);
- each pattern graph is exported once per process and copied for every later use (a pattern's graph depends on
  its code, the values it closes over and its example inputs' shapes and dtypes, which make the key).

tests/test_quantize_patterns.py checks that the graphs and outputs equal torchao's own.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torchao.quantization.pt2e import qat_utils
from torchao.quantization.pt2e.export_utils import WrapperModule

aten = torch.ops.aten
CONV_OPS = {F.conv1d: aten.conv1d, F.conv2d: aten.conv2d,
            F.conv_transpose1d: aten.conv_transpose1d, F.conv_transpose2d: aten.conv_transpose2d}
GENERIC_CONV_OPS = (aten.convolution, aten._convolution)  # could be any kind: never skip a graph holding one

_exported: dict[tuple, torch.fx.GraphModule] = {}
_lock = threading.RLock()


def _value_key(value: Any) -> Any:
    """An example input stands for its shape and dtype; any other value for itself."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device.type)
    hash(value)  # TypeError for anything unhashable: that pattern is not cached
    return value


def _pattern_key(pattern: Callable, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> tuple | None:
    if type(pattern) is WrapperModule:  # torchao wraps its pattern functions in a module with no state
        pattern = pattern.fn
    code = getattr(pattern, "__code__", None)
    if code is None:
        return None
    try:
        closure = tuple(cell.cell_contents for cell in getattr(pattern, "__closure__", None) or ())
        if any(isinstance(value, torch.Tensor) for value in closure):  # a captured tensor's values are in the graph
            return None
        hash(closure)
        inputs = tuple(_value_key(x) for x in example_inputs)
        named = tuple(sorted((k, _value_key(v)) for k, v in kwargs.items()))
    except (TypeError, ValueError):  # unhashable, or an empty cell
        return None
    return code, closure, inputs, is_cuda, named


def _uses(graph: torch.fx.GraphModule, packets: tuple) -> bool:
    return any(getattr(node.target, "overloadpacket", None) in packets
               for node in graph.graph.nodes if node.op == "call_function")


def _only_if_present(helper: Callable) -> Callable:
    def rewrite(m: torch.fx.GraphModule, conv_fn: Callable, *args, **kwargs) -> torch.fx.GraphModule:
        packet = CONV_OPS.get(conv_fn)
        if packet is not None and not _uses(m, (packet, *GENERIC_CONV_OPS)):
            return m
        return helper(m, conv_fn, *args, **kwargs)
    return rewrite


def _exported_once(export: Callable) -> Callable:
    def cached(pattern: Callable, example_inputs: tuple, is_cuda: bool = False, **kwargs) -> torch.fx.GraphModule:
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return export(pattern, example_inputs, is_cuda, **kwargs)
        with _lock:
            if key not in _exported:
                _exported[key] = export(pattern, example_inputs, is_cuda, **kwargs)
            return copy.deepcopy(_exported[key])  # the rewrite may touch its pattern's nodes
    return cached


PATCHES = {"_get_aten_graph_module_for_pattern": _exported_once,
           "_fuse_conv_bn_qat_helper": _only_if_present,
           "_fold_conv_bn_qat_helper": _only_if_present}


@contextmanager
def fewer_pattern_exports() -> Iterator[None]:
    """torchao's conv-BN rewrites without re-exporting patterns. Where this torchao has renamed what is patched,
    it runs unpatched (slower, same result)."""
    if not all(hasattr(qat_utils, name) for name in PATCHES):
        yield
        return
    with _lock:
        originals = {name: getattr(qat_utils, name) for name in PATCHES}
        for name, wrap in PATCHES.items():
            setattr(qat_utils, name, wrap(originals[name]))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(qat_utils, name, original)
