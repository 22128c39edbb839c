"""Backbones: taghead's own (the reference R(2+1)D-34, a tiny demo CNN), a registry of named ones with their
published weights, and the recognition of a module as one of them."""

from . import transformers as _transformers  # noqa: F401  (registers the Hugging Face Transformers backbones)
from .r2plus1d import r2plus1d_34
from .recognize import Recognition, module_structure, recognize_backbone
from .registry import (
    BackboneEntry,
    backbone_weights_table,
    create_backbone,
    download_backbone_weights,
    get_backbone_data_config,
    get_backbone_weights,
    list_backbones,
    register_backbone,
)
from .tiny import TinyVideoCNN, tiny_video_cnn
from .weights import BackboneWeights, WeightsUnavailableError

__all__ = [
    "r2plus1d_34", "TinyVideoCNN", "tiny_video_cnn",
    "create_backbone", "list_backbones", "register_backbone", "get_backbone_data_config", "BackboneEntry",
    "BackboneWeights", "get_backbone_weights", "download_backbone_weights", "backbone_weights_table",
    "WeightsUnavailableError",
    "recognize_backbone", "Recognition", "module_structure",
]
