"""A LiteRT interpreter with its default XNNPACK delegate; int8 IO is (de)quantized with the tensors' own parameters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...ondevice.runtimes import RUNTIMES, Model, Unavailable, as_input, package_version


def litert_interpreter(path: Path, *, threads: int | None = None, delegates: bool = True):
    """ai-edge-litert where installed, else tflite-runtime (what a Raspberry Pi usually has)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise Unavailable("neither ai-edge-litert nor tflite-runtime is installed") from None
    kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": int(threads) if threads else None}
    if not delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(**kwargs)


def dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


def io_entry(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    entry = {"name": detail["name"], "shape": [int(d) for d in detail["shape"]], "dtype": dtype_name(detail["dtype"])}
    if scale:
        entry["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return entry


def _delegated_node_indices(ops: list[dict[str, Any]]) -> set[int]:
    """Original nodes replaced by a DELEGATE node.

    ai-edge-litert lists every node of the model and, after delegation, one DELEGATE node per
    partition whose inputs/outputs are the partition's boundary tensors. A partition is the set of
    nodes reached walking back from its outputs until its inputs; nodes outside every partition
    run on the builtin kernels.
    """
    producers: dict[int, dict[str, Any]] = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for tensor in op["outputs"]:
                producers[int(tensor)] = op
    delegated: set[int] = set()
    for op in ops:
        if op["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in op["inputs"]}
        stack = [int(t) for t in op["outputs"]]
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary or tensor not in producers:
                continue
            seen.add(tensor)
            node = producers[tensor]
            if node["index"] not in delegated:
                delegated.add(node["index"])
                stack.extend(int(t) for t in node["inputs"] if int(t) >= 0)
    return delegated


@RUNTIMES.register("litert")
class LiteRtModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.path = Path(path)
        self.interpreter = litert_interpreter(path, threads=options.get("threads"))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])
        self.runtime = package_version("ai-edge-litert", "tflite-runtime")

    def _staged(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        scale, zero_point = self.input["quantization"]
        if np.issubdtype(dtype, np.integer) and scale:  # int8 IO: quantize with the input tensor's own parameters
            info = np.iinfo(dtype)
            # As torch's quantize_per_tensor: round-half-even of x * (1 / scale), in float32.
            return np.clip(np.round(x * np.float32(1.0 / scale)) + zero_point, info.min, info.max).astype(dtype)
        return x.astype(dtype, copy=False)

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        staged, index, interpreter = self._staged(as_input(x)), self.input["index"], self.interpreter

        def infer() -> None:
            interpreter.set_tensor(index, staged)  # a copy of the input's few KB, so a loop may cycle inputs
            interpreter.invoke()

        return infer

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self._staged(x))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"]).copy()
        if np.issubdtype(y.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return (y.astype(np.float32) - zero_point) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def operator_report(self) -> dict[str, Any]:
        ops = self.interpreter._get_ops_details()  # no public API lists nodes; this one is stable across tflite/litert
        model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
        partitions = len(ops) - len(model_ops)
        delegated = _delegated_node_indices(ops)
        fallback = Counter(op["op_name"] for op in model_ops if op["index"] not in delegated)
        tensors = Counter(dtype_name(d["dtype"]) for d in litert_interpreter(self.path, delegates=False).get_tensor_details())
        return {
            "ops": dict(Counter(op["op_name"] for op in model_ops)),
            "delegate": "XNNPACK" if partitions else None,
            "delegate_partitions": partitions,
            "delegated_nodes": len(delegated),
            "total_nodes": len(model_ops),
            "fallback_ops": sorted(fallback),
            "fallback_op_counts": dict(fallback),
            "tensor_dtypes": dict(tensors),
            "io": {"input": io_entry(self.input), "output": io_entry(self.output)},
        }
