"""Heads: a backbone feature map ``[B, C, T, H, W]`` in, logits out (TAG-Head, ART, the attentive probe, mean pooling)."""

from .art import ARTHead
from .attentive import AttentiveProbeHead
from .base import VideoHead, check_feature_map
from .meanpool import MeanPoolHead
from .registry import create_head, get_head_class, list_heads, register_head
from .tag import REFERENCE_WIDTH, TAG_PRESETS, TAGHead

__all__ = [
    "VideoHead", "check_feature_map", "TAGHead", "TAG_PRESETS", "REFERENCE_WIDTH", "MeanPoolHead", "ARTHead",
    "AttentiveProbeHead",
    "register_head", "create_head", "list_heads", "get_head_class",
]
