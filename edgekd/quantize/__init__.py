"""Quantization-aware distillation and PTQ with one INT8 scheme shared by every artifact."""

from .pt2e import QuantizedStudent, load_state, prepare, save_state
from .quantizer import Int8Quantizer

__all__ = ["Int8Quantizer", "QuantizedStudent", "load_state", "prepare", "save_state"]
