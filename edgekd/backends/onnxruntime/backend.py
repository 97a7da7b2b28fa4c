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
            ox.session(source, optimization=level, optimized_path=tmp)
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
