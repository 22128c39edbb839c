"""Adapters: run any video backbone up to its last spatio-temporal feature map ``[B, C, T, H, W]``.

An adapter is a :class:`FeatureExtractor` subclass registered for model classes with
:func:`register_adapter`; :func:`adapt` finds the one for a model (most specific class first).
The built-in adapters import nothing from torchvision, pytorchvideo, timm or transformers until a model
of theirs arrives.
"""

from . import generic, pytorchvideo, taghead, timm, torchvision, transformers  # noqa: F401  (register the built-ins)
from .base import FeatureExtractor, FeatureMapError, check_feature_output, check_video
from .generic import LayerFeatures
from .pytorchvideo import AlignPathways, PTVMViTFeatures, PTVResNetFeatures, SlowFastFeatures, X3DFeatures
from .registry import adapt, find_adapter, get_adapter, list_adapters, register_adapter, supported_families
from .taghead import TinyVideoCNNFeatures
from .timm import TimmFrameFeatures
from .tokens import resample_separable_pos_embed, tokens_to_map
from .torchvision import MViTFeatures, S3DFeatures, SwinTransformer3dFeatures, VideoResNetFeatures
from .transformers import (
    TimesformerFeatures,
    TransformersVideoFeatures,
    VideoMAEFeatures,
    VivitFeatures,
    VJEPA2Features,
    XCLIPVisionFeatures,
)

__all__ = [
    "FeatureExtractor", "FeatureMapError", "check_video", "check_feature_output",
    "register_adapter", "list_adapters", "get_adapter", "find_adapter", "adapt", "supported_families",
    "LayerFeatures", "TimmFrameFeatures", "TinyVideoCNNFeatures",
    "VideoResNetFeatures", "S3DFeatures", "MViTFeatures", "SwinTransformer3dFeatures",
    "PTVResNetFeatures", "X3DFeatures", "SlowFastFeatures", "PTVMViTFeatures", "AlignPathways",
    "TransformersVideoFeatures", "VideoMAEFeatures", "TimesformerFeatures", "VivitFeatures", "VJEPA2Features",
    "XCLIPVisionFeatures",
    "tokens_to_map", "resample_separable_pos_embed",
]
