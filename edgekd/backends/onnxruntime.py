"""ONNX Runtime: FP32 and INT8 (the verified QDQ model), with the optimized graph saved beside it."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .. import onnx_export as ox
from ..io import atomic_path
from ..ondevice import runtimes
from .base import BACKENDS, Backend, CompileSources, Runner, package_version


class OrtRunner(Runner):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.path, self.options = path, options
        self.model = runtimes.load("onnxruntime", path, options)
        self.session, self.input_name = self.model.session, self.model.input_name

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def operator_report(self) -> dict[str, Any]:
        """Provider per node, from one profiled inference (ONNX Runtime's own record of where nodes ran)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            options.profile_file_prefix = str(Path(tmp) / "profile")
            sess = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
            sess.run(None, {self.input_name: np.zeros(shape, dtype=np.float32)})
            events = json.loads(Path(sess.end_profiling()).read_text())
        nodes = {  # one entry per executed node (each node logs several timing events)
            e["name"].rsplit("_", 2)[0]: (e["args"]["op_name"], e["args"].get("provider", "?"))
            for e in events
            if e.get("cat") == "Node" and "op_name" in e.get("args", {})
        }
        by_provider: dict[str, Counter] = {}
        for op, provider in nodes.values():
            by_provider.setdefault(provider, Counter())[op] += 1
        return {
            "optimized_ops": dict(Counter(n.op_type for n in onnx.load(str(self.path)).graph.node)),
            "executed_ops_by_provider": {p: dict(c) for p, c in by_provider.items()},
            "fallback_ops": [],  # a CPU-only session has nothing to fall back to
        }


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

    def load(self, path: Path, options: dict[str, Any]) -> Runner:
        return OrtRunner(path, options)

    def inspect(self, path: Path) -> dict[str, Any]:
        model = onnx.load(str(path))
        return {"ops": dict(Counter(n.op_type for n in model.graph.node)), "opset": model.opset_import[0].version}
