"""Builds TensorRT engines from the verified ONNX files (see the package's docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...errors import ModelError
from ...io import atomic_path
from ..base import BACKENDS, Backend, CompileSources, package_version


def _trt():
    import tensorrt

    return tensorrt


@BACKENDS.register("tensorrt")
class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp16", "int8")
    suffix = ".engine"
    int8_from_onnx = True

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
        self._add_profile(builder, network, config, int(options.get("max_batch", 1)), sources.sequence)

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
    def _add_profile(builder, network, config, max_batch: int, sequence: int | None = None) -> None:
        """An optimization profile for inputs with dynamic dimensions: batch 1..max_batch, optimized for 1; a
        text's sequence axis 1..``sequence``, optimized for ``sequence`` (the length it is profiled at)."""
        profile, dynamic = builder.create_optimization_profile(), False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = list(tensor.shape)
            if all(d >= 0 for d in shape):
                continue
            if any(d < 0 for d in shape[1:]) and not (sequence and len(shape) == 2):
                raise ModelError(f"tensorrt: input {tensor.name} has dynamic non-batch dimensions {shape}")
            dynamic = True
            rest_min = [1 if d < 0 else d for d in shape[1:]]
            rest_opt = [sequence if d < 0 else d for d in shape[1:]]
            profile.set_shape(tensor.name, (1, *rest_min), (1, *rest_opt), (max(1, max_batch), *rest_opt))
        if dynamic:
            config.add_optimization_profile(profile)

    def inspect(self, path: Path) -> dict[str, Any]:
        return {"engine_bytes": Path(path).stat().st_size}
