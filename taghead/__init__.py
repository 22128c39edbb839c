"""taghead: plug-in heads that upgrade any video backbone for fine-grained action recognition."""

from . import ops
from .config import DataConfig
from .heads import TAG_PRESETS, MeanPoolHead, TAGHead, VideoHead, create_head, list_heads, register_head
from .models.classifier import VideoClassifier
from .ops import time_aligned_appnp
from .version import __version__

__all__ = [
    "__version__",
    "ops",
    "time_aligned_appnp",
    "TAGHead",
    "TAG_PRESETS",
    "MeanPoolHead",
    "VideoHead",
    "create_head",
    "list_heads",
    "register_head",
    "DataConfig",
    "VideoClassifier",
]
