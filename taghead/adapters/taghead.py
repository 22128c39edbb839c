"""Adapters for taghead's own backbones (R(2+1)D-34 is a torchvision ``VideoResNet``: see ``torchvision.py``)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import DataConfig
from ..utils.checkpointing import run_checkpointed
from .base import FeatureExtractor
from .registry import register_adapter

__all__ = ["TinyVideoCNNFeatures"]


@register_adapter(
    "taghead_tiny_video_cnn", "taghead.backbones.tiny:TinyVideoCNN",
    family="taghead TinyVideoCNN: taghead.backbones.tiny_video_cnn",
)
class TinyVideoCNNFeatures(FeatureExtractor):
    """``model.forward_features``: ``[B, 4*width, T/4, H/8, W/8]``; ``pool`` and ``fc`` are dropped.
    Gradient checkpointing: the three stages after the stem.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.pool = nn.Identity()
        model.fc = nn.Identity()

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.grad_checkpointing:
            return run_checkpointed((m.layer1, m.layer2, m.layer3), m.stem(video))
        return m.forward_features(video)

    def default_data_config(self) -> DataConfig:
        return DataConfig()
