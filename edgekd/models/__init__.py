"""Models: the zoo, loading user models and weights, stats and feature hooks.

Zoo models (``create_model``): ``resnet`` (teacher), ``tiny_cnn`` and
``mobilenetv2`` (students) for images; ``bert`` (a BERT-style encoder taking
``input_ids``; ``hf:DIR`` loads Hugging Face BERT checkpoints into it) for text.
Every zoo model ends in ``pool`` and an ``nn.Linear`` named ``classifier``;
each class docstring lists its hook names.
"""

from . import bert, mobilenetv2, resnet, tiny_cnn  # noqa: F401  (importing registers the zoo models)
from .bert import BertClassifier, init_from_teacher
from .ensemble import Ensemble
from .hf import hf_weights_sha256, resolve_hf_dir
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
    "BertClassifier",
    "init_from_teacher",
    "resolve_hf_dir",
    "hf_weights_sha256",
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
