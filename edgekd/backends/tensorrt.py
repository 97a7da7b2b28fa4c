"""TensorRT (.engine) from the verified ONNX files: FP16, and INT8 from the explicit QDQ model.

* fp16: the FP32 ONNX with ``BuilderFlag.FP16`` (TensorRT picks fp16 or fp32 per layer).
* int8: the QDQ ONNX (learned scales, explicit quantization) with ``BuilderFlag.INT8`` and FP16
  for the layers the Q/DQ pairs leave in float. Nothing is calibrated.

Options: ``workspace`` (MiB, default 1024), ``timing_cache`` (a file, loaded if present and saved
after the build), ``max_batch`` (upper bound of the optimization profile for a dynamic batch,
default 1), ``device`` (CUDA device index, default 0).

The engine is specific to the GPU and the TensorRT version that built it. ``tensorrt`` is imported
only inside the methods, so this module imports (and registers) without it; ``unavailable``
says why it cannot build here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from ..io import atomic_path
from .base import BACKENDS, Backend, CompileSources, Runner, package_version


def _trt():
    import tensorrt

    return tensorrt


def _layer_precision(layer: dict[str, Any]) -> str:
    """The output precision of one layer from the inspector's JSON ("Row major linear FP16 format", "Int8 ...")."""
    formats = " ".join(str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", []) if isinstance(o, dict))
    for token, name in (("Int8", "int8"), ("FP8", "fp8"), ("FP16", "fp16"), ("Half", "fp16"), ("BF16", "bf16"), ("FP32", "fp32"), ("Float", "fp32"), ("Int32", "int32")):
        if token in formats:
            return name
    return "unknown"


class TensorRtRunner(Runner):
    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        from ..ondevice._tensorrt import TensorRtModel

        self.model = TensorRtModel(path, options)
        self.trt, self.engine, self.context = self.model.trt, self.model.engine, self.model.context

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def operator_report(self) -> dict[str, Any]:
        """Layers, their types and output precisions from the engine inspector (needs a DETAILED build)."""
        trt = self.trt
        inspector = self.engine.create_engine_inspector()
        for attribute in ("execution_context", "context"):  # renamed across TensorRT 10 releases
            if hasattr(inspector, attribute):
                try:
                    setattr(inspector, attribute, self.context)
                    break
                except Exception:
                    continue
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        layers = info.get("Layers", []) if isinstance(info, dict) else []
        detailed = [layer for layer in layers if isinstance(layer, dict)]
        return {
            "layers": len(layers),
            "layer_types": dict(Counter(layer.get("LayerType", "?") for layer in detailed)),
            "layer_precisions": dict(Counter(_layer_precision(layer) for layer in detailed)),
            "tactics": dict(Counter(str(layer.get("TacticName", "")) for layer in detailed if layer.get("TacticName"))),
            "fallback_ops": [],  # TensorRT either builds every layer on the GPU or fails the build
        }


@BACKENDS.register("tensorrt")
class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp16", "int8")
    suffix = ".engine"

    def unavailable(self) -> str | None:
        try:
            _trt()
        except ImportError:
            return "TensorRT is not installed (pip install tensorrt; needs an NVIDIA GPU)"
        except Exception as error:  # e.g. the wheel is there but libnvinfer does not load
            return f"TensorRT does not import: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        return None

    def toolchain_version(self) -> str:
        for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_lean"):
            version = package_version(name)
            if version:
                return version
        return ""

    def build(self, sources: CompileSources, precision: str, out_dir: Path, options: dict[str, Any]) -> Path:
        if precision not in self.precisions:
            raise ValueError(f"tensorrt: unknown precision {precision!r}; expected one of {', '.join(self.precisions)}")
        reason = self.unavailable()
        if reason:
            raise ModelError(f"tensorrt: {reason}")
        trt = _trt()
        source = sources.int8_onnx if precision == "int8" else sources.fp32_onnx
        if source is None:
            raise ValueError("no INT8 model: the quantize stage ran with mode none")
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors)) or "no parser message"
            raise ModelError(f"tensorrt: cannot parse {Path(source).name}: {errors}")

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.get("workspace", 1024)) << 20)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer details for the engine inspector
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the Q/DQ nodes
        config.set_flag(trt.BuilderFlag.FP16)
        self._add_profile(builder, network, config, int(options.get("max_batch", 1)))

        cache_path = Path(options["timing_cache"]) if options.get("timing_cache") else None
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelError(f"tensorrt: building the {precision} engine from {Path(source).name} failed (see the TensorRT log)")
        if cache_path is not None:
            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
        path = Path(out_dir) / f"model_{precision}{self.suffix}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(memoryview(serialized))
        return path

    @staticmethod
    def _add_profile(builder, network, config, max_batch: int) -> None:
        """An optimization profile for inputs with dynamic dimensions (batch 1..max_batch, optimized for 1)."""
        profile, dynamic = builder.create_optimization_profile(), False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = list(tensor.shape)
            if all(d >= 0 for d in shape):
                continue
            if any(d < 0 for d in shape[1:]):
                raise ModelError(f"tensorrt: input {tensor.name} has dynamic non-batch dimensions {shape}")
            dynamic = True
            rest = shape[1:]
            profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max(1, max_batch), *rest))
        if dynamic:
            config.add_optimization_profile(profile)

    def load(self, path: Path, options: dict[str, Any]) -> Runner:
        return TensorRtRunner(path, options)

    def inspect(self, path: Path) -> dict[str, Any]:
        return {"engine_bytes": Path(path).stat().st_size}
