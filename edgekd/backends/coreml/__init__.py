"""Core ML (.mlpackage, ML Program) with coremltools: FP16, and INT8 weights on top of FP16.

* fp16: the FP32 PyTorch student captured with ``torch.export`` (decomposed to ATen, the path
  coremltools 8+ converts; TorchScript tracing is the fallback), converted with
  ``compute_precision=FLOAT16``. Input and output stay float32 (a cast at each end).
* int8: the fp16 program with ``linear_quantize_weights`` (int8, symmetric, per output channel):
  **weights only**. Weights are stored as int8 and dequantized to fp16 when the model loads
  (``constexpr_affine_dequantize``); activations and compute stay fp16. This is not the
  learned PT2E activation quantization the other INT8 artifacts use.

Core ML runs only on macOS: elsewhere ``load`` raises ``NotRunnable`` and ``inspect`` verifies the
program without running it (IO names and shapes, MIL op types, precision, weight dtypes).
"""

from ...ondevice.backend_info import declare

declare("coreml", modules=("coremltools",), packages=("coremltools",), systems=("Darwin",))
