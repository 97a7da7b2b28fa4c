"""ONNX Runtime: FP32 and INT8 (the verified QDQ model), with the optimized graph saved as the artifact."""

from ...ondevice.backend_info import declare

declare("onnxruntime", modules=("onnxruntime",), packages=("onnxruntime", "onnxruntime-gpu"))
