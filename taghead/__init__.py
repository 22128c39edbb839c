"""taghead: plug-in heads that upgrade any video backbone for fine-grained action recognition."""

from . import ops
from .adapters import list_adapters, register_adapter
from .backbones import create_backbone, list_backbones, recognize_backbone
from .config import DataConfig
from .data import SyntheticFineGrainedDataset, VideoClipDataset
from .explanation import Explanation, explain
from .heads import (
    TAG_PRESETS,
    ARTHead,
    AttentiveProbeHead,
    MeanPoolHead,
    TAGHead,
    VideoHead,
    create_head,
    list_heads,
    register_head,
)
from .models.classifier import VideoClassifier
from .models.loading import from_pretrained
from .models.registry import create_model, list_models, register_model
from .models.wrap import wrap_backbone
from .ops import time_aligned_appnp
from .text import HashingTextEncoder, build_text_bank
from .version import __version__

__all__ = [
    "__version__",
    "ops",
    "time_aligned_appnp",
    "TAGHead",
    "TAG_PRESETS",
    "MeanPoolHead",
    "ARTHead",
    "AttentiveProbeHead",
    "build_text_bank",
    "HashingTextEncoder",
    "VideoHead",
    "create_head",
    "list_heads",
    "register_head",
    "DataConfig",
    "VideoClipDataset",
    "SyntheticFineGrainedDataset",
    "VideoClassifier",
    "wrap_backbone",
    "register_adapter",
    "list_adapters",
    "create_backbone",
    "list_backbones",
    "recognize_backbone",
    "create_model",
    "list_models",
    "register_model",
    "from_pretrained",
    "explain",
    "Explanation",
]
