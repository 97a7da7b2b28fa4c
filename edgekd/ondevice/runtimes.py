"""Load a compiled artifact in its own runtime and predict logits, with nothing but that runtime.

The compile stage's backends and the device-side benchmark both load
artifacts through here, so an artifact is run the same way when it is
checked, profiled on this machine and profiled on a device.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

LOADERS: dict[str, Callable[[Path, dict[str, Any]], "Model"]] = {}


def loader(name: str):
    def register(fn):
        LOADERS[name] = fn
        return fn

    return register


def package_version(*names: str) -> str:
    for name in names:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return ""


class Model:
    """A loaded artifact: ``predict`` takes float32 NCHW inputs (batch 1 for deployed artifacts) and returns logits."""

    runtime: str = ""

    def predict(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """One inference on ``x`` already in the runtime's own input form, for timing loops: as
        benchmark_app and benchmark_model do, the loop then times the runtime, not numpy conversions
        (tens of microseconds per call, which is most of a small model's latency). Default: ``predict``."""
        return lambda: self.predict(x)


class Unavailable(RuntimeError):
    """This runtime cannot run here (a missing package, the wrong OS, no GPU); the message says why."""


def load(backend: str, path: str | Path, options: dict[str, Any] | None = None) -> Model:
    if backend not in LOADERS:
        raise ValueError(f"unknown backend {backend!r}; this device-side runner knows {', '.join(sorted(LOADERS))}")
    return LOADERS[backend](Path(path), dict(options or {}))


class _OnnxRuntime(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if options.get("threads"):
            so.intra_op_num_threads = int(options["threads"])
        levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
        level = options.get("optimization", "all")
        if level not in levels:
            raise ValueError(f"onnxruntime option optimization={level!r}; expected one of {', '.join(levels)}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[level])
        self.session = ort.InferenceSession(str(path), so, providers=options.get("providers") or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.runtime = package_version("onnxruntime", "onnxruntime-gpu")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        staged = np.ascontiguousarray(x, dtype=np.float32)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, staged)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        session = self.session

        def infer(_keep_alive: np.ndarray = staged) -> None:  # the binding points into ``staged``'s memory
            session.run_with_iobinding(binding)

        return infer


@loader("onnxruntime")
def _load_onnxruntime(path: Path, options: dict[str, Any]) -> Model:
    return _OnnxRuntime(path, options)


def openvino_compile(path: Path, options: dict[str, Any]):
    """Latency hint, pinned thread and stream counts, and an explicit inference precision: left alone,
    OpenVINO runs FP32 models in bf16 on CPUs with AMX or AVX512-BF16."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    config = {hints.performance_mode: hints.PerformanceMode.LATENCY, props.inference_num_threads: int(options.get("threads", 0))}
    if options.get("streams"):
        config[props.num_streams] = int(options["streams"])
    wanted = options.get("inference_precision", "f32")
    types = {"f32": ov.Type.f32, "bf16": ov.Type.bf16, "f16": ov.Type.f16}
    if wanted not in types:
        raise ValueError(f"openvino option inference_precision={wanted!r}; expected one of {', '.join(types)}")
    config[hints.inference_precision] = types[wanted]
    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), options.get("device", "CPU"), config)


class _OpenVino(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.compiled = openvino_compile(path, options)
        self.request = self.compiled.create_infer_request()
        self.runtime = package_version("openvino")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0]).copy()

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        import openvino as ov

        tensor = ov.Tensor(np.ascontiguousarray(x, dtype=np.float32))
        request = self.request

        def infer() -> None:
            request.set_input_tensor(tensor)  # no copy: the request reads the tensor's memory
            request.infer()

        return infer


@loader("openvino")
def _load_openvino(path: Path, options: dict[str, Any]) -> Model:
    return _OpenVino(path, options)


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


class _LiteRt(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.interpreter = litert_interpreter(path, threads=options.get("threads"))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.runtime = package_version("ai-edge-litert", "tflite-runtime")

    def _staged(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):  # int8 IO: quantize with the input tensor's own parameters
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            # As torch's quantize_per_tensor: round-half-even of x * (1 / scale), in float32.
            return np.clip(np.round(x * np.float32(1.0 / scale)) + zero_point, info.min, info.max).astype(dtype)
        return x.astype(dtype, copy=False)

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        staged, index, interpreter = self._staged(np.ascontiguousarray(x, dtype=np.float32)), self.input["index"], self.interpreter

        def infer() -> None:
            interpreter.set_tensor(index, staged)  # a copy of the input's few KB, so a loop may cycle inputs
            interpreter.invoke()

        return infer

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self._staged(x))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"]).copy()
        if np.issubdtype(y.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return (y.astype(np.float32) - zero_point) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        batch = int(self.input["shape"][0])
        if x.shape[0] == batch:
            return self._invoke(x)
        if batch == 1:  # artifacts are built at batch 1; larger inputs run row by row
            return np.concatenate([self._invoke(x[i : i + 1]) for i in range(len(x))])
        raise ValueError(f"litert: the model takes batches of {batch}, got {x.shape[0]}")


@loader("litert")
def _load_litert(path: Path, options: dict[str, Any]) -> Model:
    return _LiteRt(path, options)


COREML_INPUT, COREML_OUTPUT = "input", "logits"


class _CoreMl(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        if platform.system() != "Darwin":
            raise Unavailable(f"Core ML runs only on macOS (this is {platform.system()})")
        import coremltools as ct

        units = getattr(ct.ComputeUnit, str(options.get("compute_units", "ALL")).upper())
        self.model = ct.models.MLModel(str(path), compute_units=units)
        self.runtime = package_version("coremltools")

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[0] != 1:  # the program is built for batch 1
            return np.concatenate([self.predict(x[i : i + 1]) for i in range(len(x))])
        return np.asarray(self.model.predict({COREML_INPUT: x})[COREML_OUTPUT], dtype=np.float32)


@loader("coreml")
def _load_coreml(path: Path, options: dict[str, Any]) -> Model:
    return _CoreMl(path, options)


@loader("tensorrt")
def _load_tensorrt(path: Path, options: dict[str, Any]) -> Model:
    """TensorRT engines run through the backend's runner, which uses torch for CUDA buffers (on a Jetson,
    NVIDIA's torch wheel); a device without torch can use ``trtexec`` instead (see the SSH runner)."""
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError as error:
        raise Unavailable(f"tensorrt: {error}") from None
    if not torch.cuda.is_available():
        raise Unavailable("tensorrt: no CUDA device")
    from ._tensorrt import TensorRtModel

    return TensorRtModel(path, options)
