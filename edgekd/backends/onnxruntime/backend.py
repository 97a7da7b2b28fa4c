"""Builds ONNX Runtime artifacts: the verified ONNX after ONNX Runtime's own graph optimizations."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from ... import onnx_export as ox
from ...io import atomic_path
from ..base import BACKENDS, Backend, CompileSources, package_version


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    suffix = ".onnx"
    int8_from_onnx = True

    def toolchain_version(self) -> str:
        return package_version("onnxruntime")

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        source = sources.fp32_onnx if precision == "fp32" else sources.int8_onnx
        if source is None:
            raise ValueError("no INT8 model: the quantize stage ran with mode none")
        level = options.get("optimization", "all")
        path = out_dir / f"model_{precision}_ort_{level}.onnx"
        # The saved file is the graph after ONNX Runtime's optimizations: what actually runs.
        with atomic_path(path) as tmp:
            reencoded = None
            if precision == "int8" and not cpu_has_vnni():
                # x86 without VNNI: ONNX Runtime's u8 x s8 kernels (AVX2's VPMADDUBSW) saturate 16-bit pair sums,
                # 22 output steps off on a small CNN here; its u8 x u8 kernels do not (ONNX Runtime's own advice)
                reencoded = as_uint8(source, tmp.with_name(tmp.name + ".uint8.onnx"), weights=True)
            elif precision == "int8" and sources.int8_scheme == "transformer":
                # ONNX Runtime on x86 fuses DequantizeLinear -> MatMul into its integer kernel only with uint8
                # activations: with int8 ones it kept half of a BERT's linears float (1.1x over FP32)
                reencoded = as_uint8(source, tmp.with_name(tmp.name + ".uint8.onnx"))
            try:
                ox.session(reencoded or source, optimization=level, optimized_path=tmp)
            finally:
                if reencoded is not None:
                    reencoded.unlink(missing_ok=True)
            canonical_node_names(tmp)
        if options.get("ort_format"):
            self._to_ort_format(path)
        return path

    @staticmethod
    def _to_ort_format(path: Path) -> Path:
        """The .ort flatbuffer used by ONNX Runtime Mobile."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        target = path.with_suffix(".ort")
        with atomic_path(target) as tmp:
            options.optimized_model_filepath = str(tmp)
            options.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return target

    def inspect(self, path: Path) -> dict[str, Any]:
        model = onnx.load(str(path))
        return {"ops": dict(Counter(n.op_type for n in model.graph.node)), "opset": model.opset_import[0].version}


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512_VNNI or AVX_VNNI); True elsewhere (ARM's dot products do not saturate)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    try:
        return "vnni" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: assume a current CPU


def as_uint8(source: Path, target: Path, *, weights: bool = False) -> Path:
    """``source`` with every activation's QuantizeLinear/DequantizeLinear in uint8 (zero point + 128), and with
    ``weights`` the weights' too. Exact: uint8 q = int8 q + 128 for every value, and (q - zero point) * scale is
    unchanged."""
    import numpy as np
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    # Tensors computed from constants alone: weights, whether stored int8 or quantized from float in the graph
    constant = set(initializers) | set(constants)
    for node in graph.node:  # ONNX nodes are in topological order
        if node.input and all(not name or name in constant for name in node.input):
            constant.update(node.output)
    made: dict[str, str] = {}
    shifted: set[str] = set()
    movable = _movable_weights(graph, initializers, constant) if weights else set()
    for index, node in enumerate(graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.input[0] in constant and index not in movable:
            continue  # a weight left int8 (ONNX Runtime's U8S8 kernels; or quantized by other ops in the graph)
        zero_point = node.input[2]
        if zero_point in initializers:
            value = numpy_helper.to_array(initializers[zero_point])
        elif zero_point in constants:
            value = numpy_helper.to_array(constants[zero_point].attribute[0].t)
        else:
            continue
        if value.dtype != np.int8:
            continue
        stored = node.input[0]
        if node.op_type == "DequantizeLinear" and stored not in shifted and (stored in initializers or stored in constants):
            tensor = initializers[stored] if stored in initializers else constants[stored].attribute[0].t
            data = numpy_helper.to_array(tensor)
            if data.dtype == np.int8:  # an int8 weight stored as is: its values move by 128 with the zero point
                tensor.CopyFrom(numpy_helper.from_array((data.astype(np.int16) + 128).astype(np.uint8), tensor.name))
                shifted.add(stored)
        if zero_point not in made:  # a new tensor: onnxslim may have merged this zero point with a weight's
            made[zero_point] = f"{zero_point}_as_uint8"
            graph.initializer.append(numpy_helper.from_array((value.astype(np.int16) + 128).astype(np.uint8), made[zero_point]))
        node.input[2] = made[zero_point]
    del graph.value_info[:]  # the int8 types recorded for Q outputs no longer hold; ONNX Runtime infers them
    onnx.save(model, str(target))
    return target


def _movable_weights(graph, initializers: dict, constant: set[str]) -> set[int]:
    """The weight Q/DQ nodes whose int8 values can move to uint8 with their zero point: a DequantizeLinear of an
    initializer or Constant, or of a QuantizeLinear of a constant (both nodes). A weight quantized by other ops
    (Div, Round, Clip to int8 bounds: the exporter's decomposed per-channel quantize) stays int8."""
    # nodes by position: protobuf hands out a new wrapper object on every access, so id() would not match
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    found: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.op_type != "DequantizeLinear" or node.input[0] not in constant:
            continue
        at = producers.get(node.input[0])
        source = graph.node[at] if at is not None else None
        if node.input[0] in initializers or (source is not None and source.op_type == "Constant"):
            found.add(index)
        elif source is not None and source.op_type == "QuantizeLinear" and len(source.input) >= 3:
            found.update((index, at))
    return found


def canonical_node_names(path: Path) -> None:
    """ONNX Runtime names the nodes its NCHWc transformer adds in a varying order ('ReorderOutput' and
    'ReorderOutput_token_9' swap between runs); the same names handed out in graph order make the file's
    bytes, and so its hash, the same on every build (found by tests/test_kill.py)."""
    model = onnx.load(str(path))
    groups: dict[str, list] = {}
    for node in model.graph.node:
        groups.setdefault(re.sub(r"_token_\d+$", "", node.name), []).append(node)
    for nodes in groups.values():
        for node, name in zip(nodes, sorted(n.name for n in nodes)):
            node.name = name
    onnx.save(model, str(path))
