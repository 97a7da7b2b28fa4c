"""Quantization-aware distillation and PTQ with one INT8 scheme shared by every artifact."""

import logging
import warnings

# torchao announces its optional CUDA kernels failing to load on every CPU-only import; that is expected here.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torchao  # noqa: F401

from .pt2e import QuantizedStudent, load_state, prepare, save_state
from .quantizer import Int8Quantizer
from .restore import load_quantized

__all__ = ["Int8Quantizer", "QuantizedStudent", "load_quantized", "load_state", "prepare", "save_state"]
