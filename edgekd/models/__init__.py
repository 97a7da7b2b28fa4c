"""Models: the zoo, loading user models and weights, stats and feature hooks.

Zoo models (``create_model``): ``resnet`` (teacher), ``tiny_cnn`` and
``mobilenetv2`` (students). Every zoo model ends in ``pool`` and an
``nn.Linear`` named ``classifier``; each class docstring lists its hook names.
"""

from . import mobilenetv2, resnet, tiny_cnn  # noqa: F401  (importing registers the zoo models)
from .ensemble import Ensemble
from .hooks import FeatureRecorder, feature_shapes
from .loading import load_model, load_weights, read_state_dict, save_weights
from .mobilenetv2 import MobileNetV2
from .onnx_module import OnnxModule
from .resnet import ResNet
from .stats import ModelStats, model_stats, onnx_stats
from .tiny_cnn import TinyCNN
from .zoo import MODELS, create_model

__all__ = [
    "MODELS",
    "create_model",
    "ResNet",
    "TinyCNN",
    "MobileNetV2",
    "load_model",
    "load_weights",
    "read_state_dict",
    "save_weights",
    "OnnxModule",
    "Ensemble",
    "ModelStats",
    "model_stats",
    "onnx_stats",
    "FeatureRecorder",
    "feature_shapes",
]
