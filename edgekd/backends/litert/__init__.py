"""LiteRT (.tflite) with litert-torch: FP32, FP16 (float16 weights) and full-integer INT8, run with XNNPACK.

* fp32: the FP32 PyTorch student, converted as is.
* fp16: the FP32 student with litert-torch's FP16 weight recipe (ai-edge-quantizer float casting):
  weights are stored as float16 and a DEQUANTIZE op turns each into float32 before its consumer,
  so the file is about half the size and compute stays float32 (XNNPACK may still pick fp16
  kernels on CPUs that have them). This is TFLite's classic "float16 quantization".
* int8: the converted PT2E graph (``fold_quantize=False``: litert-torch cannot lower folded int8
  weights). A litert ``QuantConfig`` in STATIC mode makes the converter lower the graph's own
  Q/DQ ops into int8 tensors with int8 IO; the quantizer inside it is only a mode flag, nothing is
  re-calibrated, so every scale in the .tflite is the learned one. With the ``transformer`` INT8
  scheme (linear inputs in INT8, their outputs float) the converter would keep every FULLY_CONNECTED
  float behind Q/DQ ops, so the artifact is LiteRT's dynamic range INT8 instead: the learned weights
  at their INT8 values, int8 per channel, activations quantized per batch by the kernels (int64 ids
  and integer LayerNorm never arise). ``inspect`` names the precision from what the matmul-like ops
  really take (``weighted_ops``: int8 x int8, float x int8, float x float).

The interpreter is ai-edge-litert's (tflite-runtime's where that is what a device has), with its
default XNNPACK delegate. The INT8 model's input and output are int8: the runtime quantizes with the
input tensor's (scale, zero point) and dequantizes the output with the output's, so callers always
pass and get float32.
"""

from ...ondevice.backend_info import declare

declare("litert", modules=("ai_edge_litert.interpreter", "tflite_runtime.interpreter"),
        packages=("litert-torch", "ai-edge-litert", "tflite-runtime"), tool="benchmark_model",
        other_tools=("litert-benchmark",))  # ai-edge-litert's Python tool, where the C++ one is not built
