"""ONNX Runtime: FP32 and INT8 (the verified QDQ model), with the optimized graph saved as the artifact."""

from ...ondevice.backend_info import declare

# onnxruntime_perf_test: ONNX Runtime's own benchmark, where a build of it is on PATH (no wheel ships it)
declare("onnxruntime", modules=("onnxruntime",), packages=("onnxruntime", "onnxruntime-gpu"), tool="onnxruntime_perf_test")
