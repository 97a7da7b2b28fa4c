"""TensorRT (.engine) from the verified ONNX files: FP16, and INT8 from the explicit QDQ model.

* fp16: the FP32 ONNX with ``BuilderFlag.FP16`` (TensorRT picks fp16 or fp32 per layer).
* int8: the QDQ ONNX (learned scales, explicit quantization) with ``BuilderFlag.INT8`` and FP16
  for the layers the Q/DQ pairs leave in float. Nothing is calibrated.

Options: ``workspace`` (MiB, default 1024), ``timing_cache`` (a file, loaded if present and saved
after the build), ``max_batch`` (upper bound of the optimization profile for a dynamic batch,
default 1), ``device`` (CUDA device index, default 0).

The engine is specific to the GPU and the TensorRT version that built it. ``tensorrt`` is imported
only inside functions, so the backend registers without it; ``unavailable`` says why it cannot build here.
"""

from ...ondevice.backend_info import declare

declare("tensorrt", modules=("tensorrt",), packages=("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), tool="trtexec")
