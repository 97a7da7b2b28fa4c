"""An ONNX Runtime session on the CPU provider (or the providers the options name)."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...ondevice.runtimes import RUNTIMES, Model, as_input, package_version

LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@RUNTIMES.register("onnxruntime")
class OnnxRuntimeModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        so = ort.SessionOptions()
        if options.get("threads"):
            so.intra_op_num_threads = int(options["threads"])
        level = options.get("optimization", "all")
        if level not in LEVELS:
            raise ValueError(f"onnxruntime option optimization={level!r}; expected one of {', '.join(LEVELS)}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
        self.providers = list(options.get("providers") or ["CPUExecutionProvider"])
        self.session = ort.InferenceSession(str(path), so, providers=self.providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        first = self.session.get_inputs()[0].shape[0]
        self.batch = first if isinstance(first, int) and first > 0 else None
        self.runtime = package_version("onnxruntime", "onnxruntime-gpu")

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        staged = as_input(x)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, staged)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        session = self.session

        def infer(_keep_alive: np.ndarray = staged) -> None:  # the binding points into ``staged``'s memory
            session.run_with_iobinding(binding)

        return infer

    def layer_precisions(self, layers: dict[str, list[str]]) -> dict[str, str]:
        """From the artifact itself, the graph ONNX Runtime optimized (its nodes keep the layer's name, with a
        ``_token_N`` suffix where ORT made them): QLinearConv, QGemm, ConvInteger, MatMulInteger... are integer."""
        import re

        import onnx  # the build machine's, as operator_report

        aliases = {alias: name for name, names in layers.items() for alias in (name, *names)}
        found = {}
        for node in onnx.load(str(self.path)).graph.node:
            # fused nodes are named "fused <node>", NCHWc convolutions "<output>_nchwc"
            name = aliases.get(re.sub(r"(_token_\d+|_nchwc)$", "", node.name.removeprefix("fused ")))
            if name is not None and name not in found:
                integer = node.op_type.startswith("QLinear") or node.op_type in ("QGemm", "QAttention") or "Integer" in node.op_type
                found[name] = "int8" if integer else "float"
        return found

    def operator_report(self) -> dict[str, Any]:
        """Provider per node, from one profiled inference (ONNX Runtime's own record of where nodes ran), on the
        providers this session was given. Where one other than the CPU was asked for, every node that ran on the
        CPU provider is a fallback (also when the provider is not in this build: ORT then runs everything on CPU)."""
        import onnx  # the build machine's: operator reports are made where artifacts are built
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_profiling = True
        # beside the artifact, in the form a run holding the lock cleans up after a kill (edgekd.runlock)
        with tempfile.TemporaryDirectory(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent) as tmp:
            options.profile_file_prefix = str(Path(tmp) / "profile")
            sess = ort.InferenceSession(str(self.path), options, providers=self.providers)
            meta = sess.get_inputs()[0]
            shape = [d if isinstance(d, int) else 1 if i == 0 else 16 for i, d in enumerate(meta.shape)]
            # ones: a valid token id (0 is padding) as well as a valid pixel
            sess.run(None, {self.input_name: np.ones(shape, dtype=np.int64 if "int" in meta.type else np.float32)})
            events = json.loads(Path(sess.end_profiling()).read_text())
        nodes = {  # one entry per executed node (each node logs several timing events)
            e["name"].rsplit("_", 2)[0]: (e["args"]["op_name"], e["args"].get("provider", "?"))
            for e in events
            if e.get("cat") == "Node" and "op_name" in e.get("args", {})
        }
        by_provider: dict[str, Counter] = {}
        for op, provider in nodes.values():
            by_provider.setdefault(provider, Counter())[op] += 1
        accelerated = [p for p in self.providers if p != "CPUExecutionProvider"]
        fallback = sorted(f"{name} ({op})" for name, (op, provider) in nodes.items()
                          if accelerated and provider == "CPUExecutionProvider")
        return {
            "optimized_ops": dict(Counter(n.op_type for n in onnx.load(str(self.path)).graph.node)),
            "executed_ops_by_provider": {p: dict(c) for p, c in by_provider.items()},
            "providers_requested": self.providers,
            "providers_used": sess.get_providers(),
            "fallback_ops": fallback,  # a CPU-only session has nothing to fall back to
        }
