"""ExecuTorch (.pte programs) with the XNNPACK delegate: FP32, FP16 and INT8, PyTorch's own on-device runtime.

* fp32: the FP32 PyTorch student, ``torch.export``-ed and lowered to XNNPACK.
* fp16: the same student in float16 behind a float32 boundary (a cast in, a cast out), so callers
  pass and get float32; XNNPACK runs the float16 graph, the two casts run on the portable kernels.
* int8: edgekd's converted QAD graph with its int8 weights folded (``fold_quantize=True``): XNNPACK
  takes it whole, with the learned scales of the ONNX and LiteRT INT8 artifacts (nothing is
  re-calibrated). The unfolded graph that litert-torch wants would split into dozens of partitions
  and fail to lower (no kernel for ``quantize_per_channel``). With the ``transformer`` scheme (float
  outputs of INT8 linears, which XNNPACK's static kernels do not take: they stayed on the portable
  kernels and the program failed to load) it is XNNPACK's dynamic INT8 instead: the learned weights at
  their INT8 values, int8 per channel, activations quantized per token at run time.

Each build also writes ``<program>.operators.json``: which nodes XNNPACK took and which stayed on
the portable CPU kernels, by op type (``executorch.devtools.backend_debug.get_delegation_info`` on
the lowered program; the .pte itself keeps the delegated part as an opaque blob).
"""

from ...ondevice.backend_info import declare

declare("executorch", modules=("executorch.runtime",), packages=("executorch",))
