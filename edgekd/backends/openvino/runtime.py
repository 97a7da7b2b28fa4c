"""An OpenVINO compiled model with an explicit inference precision, latency hint and thread count."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...ondevice.runtimes import Model, RUNTIMES, as_input, package_version


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


@RUNTIMES.register("openvino")
class OpenVinoModel(Model):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.compiled = openvino_compile(path, options)
        self.path, self.device = Path(path), str(options.get("device", "CPU"))
        self.request = self.compiled.create_infer_request()
        first = self.compiled.input(0).get_partial_shape()[0]
        self.batch = first.get_length() if first.is_static else None
        self.runtime = package_version("openvino")
        self._inputs: dict[tuple, Any] = {}  # bind's input tensors by (shape, dtype)
        self._bound = None  # the one of them set on the request

    def infer(self, x: np.ndarray) -> np.ndarray:
        import openvino as ov

        # A Tensor is set on the request (a numpy array would be copied into, and resize, bind's tensor)
        self._bound = None
        return np.asarray(self.request.infer({0: ov.Tensor(as_input(x))})[0]).copy()

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        # Each input is copied into one input tensor the request keeps, outside the runtime's clock, as a C++
        # application writes each frame into its request's input and as benchmark_app's loop feeds one tensor:
        # handing the request a different tensor per call cost 2% of the MNIST student's 50 µs here.
        import openvino as ov

        data = as_input(x)
        key = (data.shape, data.dtype.str)
        if key not in self._inputs:
            self._inputs[key] = ov.Tensor(data)  # a copy, in memory OpenVINO owns
        tensor = self._inputs[key]
        view, request = tensor.data, self.request

        def infer() -> None:
            np.copyto(view, data)
            if self._bound is not tensor:  # set once, again only after another shape or infer() replaced it
                request.set_input_tensor(tensor)
                self._bound = tensor
            request.infer()

        return infer

    def runtime_clock(self) -> tuple[str, Callable[[], float]]:
        # The Python binding stamps a C++ clock before and after the inference (with the GIL released), as
        # benchmark_app's own loop does; what a Python caller adds on top is kept as python_call_p50.
        request = self.request
        return "InferRequest.latency (OpenVINO's C++ clock around infer)", lambda: float(request.latency)

    def layer_precisions(self, layers: dict[str, list[str]]) -> dict[str, str]:
        """From the compiled model: each runtime layer lists the ONNX nodes fused into it (``originalLayersNames``,
        ``node/WithoutBiases`` for a layer's matmul part) and the precision it runs in (``runtimePrecision``)."""
        aliases = {alias: name for name, names in layers.items() for alias in (name, *names)}
        found = {}
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "originalLayersNames" not in info or "runtimePrecision" not in info or "layerType" not in info:
                continue
            if info["layerType"].astype(str) not in ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Subgraph"):
                continue  # reorders and eltwise ops fused around a layer carry its name too (a Subgraph fuses layers)
            precision = info["runtimePrecision"].astype(str)
            for original in info["originalLayersNames"].astype(str).split(","):
                name = aliases.get(original.split("/")[0])
                if name is not None and name not in found:
                    found[name] = "int8" if precision in ("u8", "i8") else "float"
        return found

    def operator_report(self) -> dict[str, Any]:
        import openvino.properties.hint as hints

        precisions: Counter = Counter()
        layers: Counter = Counter()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            if layer in ("Input", "Output", "Parameter", "Result", "Constant"):
                continue
            layers[layer] += 1
            precisions[info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"] += 1
        try:
            precision = self.compiled.get_property(hints.inference_precision).get_type_name()
        except RuntimeError:  # HETERO keeps no such property of its own: each device's part has its own
            precision = None
        return {"inference_precision": precision, "layers": dict(layers), "runtime_precision_per_layer": dict(precisions),
                **self._placement_or_why()}

    def _placement_or_why(self) -> dict[str, Any]:
        try:  # a side report: an op query the device refuses must not fail an artifact that passed parity
            return self.placement()
        except RuntimeError as error:
            return {"devices": {}, "placement": f"unknown: query_model on {self.device} failed: {error}", "fallback_ops": []}

    def placement(self) -> dict[str, Any]:
        """Where each operation of the model (as read, before the plugin fuses it) runs, from ``Core.query_model`` on
        the configured device, counted per device: for ``HETERO:GPU,CPU`` the ops the first device cannot run go to
        the next, and those are the fallback; on one device (``CPU``, ``GPU``, ``NPU``) an op it does not support is
        listed, since compiling it would fail."""
        if self.device.startswith(("AUTO", "MULTI", "BATCH")):  # the whole model on one device the plugin picks
            return {"devices": {}, "placement": f"{self.device}: chosen by the plugin at run time", "fallback_ops": []}
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(self.path))
        placed = core.query_model(model, self.device)
        first = self.device.partition(":")[2].split(",")[0] if ":" in self.device else self.device
        ops = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in ("Parameter", "Result", "Constant")]
        devices = Counter(placed.get(name, "unsupported") for name in ops)
        return {"devices": dict(devices), "fallback_ops": sorted(name for name in ops if placed.get(name) != first)}
