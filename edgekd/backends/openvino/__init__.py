"""OpenVINO: IR (.xml/.bin) from the ONNX models. FP32, FP16 (compressed weights), INT8 (from QDQ).

On CPUs with AVX-512 BF16/AMX, OpenVINO runs FP32 models in bf16 unless told otherwise; the
inference precision is set explicitly (``inference_precision``, default f32) and the precision each
layer actually ran in is read back from the compiled model and reported.
"""

from ...ondevice.backend_info import declare

declare("openvino", modules=("openvino",), packages=("openvino",), tool="benchmark_app", beside=(".bin",))
