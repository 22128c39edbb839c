"""Adapter for timm image models, applied frame by frame: any timm model becomes a video backbone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..config import DataConfig
from .base import FeatureExtractor, GroupMatcher, children_group_matcher
from .registry import register_adapter

__all__ = ["TimmFrameFeatures", "timm_data_config"]


@register_adapter("timm_frames", nn.Module, family="timm image models, frame by frame (any timm.create_model model)")
class TimmFrameFeatures(FeatureExtractor):
    """Fold the frames into the batch, run ``forward_features`` on every frame, unfold:
    ``[B, 3, T, H, W] -> [B*T, 3, H, W] -> [B*T, C, h, w] -> [B, C, T, h, w]``.

    Frame maps are brought to ``[C, h, w]``: channels-last maps (``output_fmt == "NHWC"``, e.g. Swin)
    are permuted; token sequences (ViT-like) lose their ``num_prefix_tokens`` class/register tokens and
    are reshaped to the patch grid. The classifier is removed with ``reset_classifier(0)``. There is
    no temporal modelling in the backbone (temporal stride 1): the head sees every frame.
    ViT-like models check the image size they were built for; pass ``img_size=`` (or
    ``dynamic_img_size=True``) to ``timm.create_model`` for other crops. Gradient checkpointing and layer
    groups are the timm model's own (``set_grad_checkpointing``, ``group_matcher``).

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    @property
    def supports_grad_checkpointing(self) -> bool:  # type: ignore[override]
        """Whether the timm model has ``set_grad_checkpointing``."""
        return callable(getattr(self.model, "set_grad_checkpointing", None))

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return type(model).__module__.startswith("timm.") and callable(getattr(model, "forward_features", None))

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if hasattr(model, "reset_classifier"):
            model.reset_classifier(0)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        self.model.set_grad_checkpointing(enable)

    def group_matcher(self, coarse: bool = False) -> GroupMatcher:
        own = getattr(self.model, "group_matcher", None)
        return own(coarse=coarse) if callable(own) else children_group_matcher(self.model, coarse)

    def _frame_map(self, out: torch.Tensor, height: int, width: int) -> torch.Tensor:
        m = self.model
        if out.dim() == 4:
            return out.permute(0, 3, 1, 2) if getattr(m, "output_fmt", "NCHW") == "NHWC" else out
        if out.dim() == 3:
            tokens = out[:, int(getattr(m, "num_prefix_tokens", 0)):]
            grid = self._token_grid(height, width)
            if grid is None or grid[0] * grid[1] != tokens.shape[1]:
                raise ValueError(f"{type(m).__name__}.forward_features returned {tokens.shape[1]} patch tokens "
                                 f"(shape {tuple(out.shape)}) that do not form the patch grid {grid} of a "
                                 f"{height}x{width} frame")
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        raise ValueError(f"{type(m).__name__}.forward_features returned a {out.dim()}-D tensor {tuple(out.shape)}; "
                         "expected a map [N, C, h, w] / [N, h, w, C] or tokens [N, L, C]")

    def _token_grid(self, height: int, width: int) -> tuple[int, int] | None:
        pe = getattr(self.model, "patch_embed", None)
        if pe is None:
            return None
        if callable(getattr(pe, "dynamic_feat_size", None)):
            return tuple(int(v) for v in pe.dynamic_feat_size((height, width)))  # type: ignore[return-value]
        if getattr(pe, "grid_size", None) is not None:
            return tuple(int(v) for v in pe.grid_size)  # type: ignore[return-value]
        return None

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        maps = self._frame_map(self.model.forward_features(frames), h, w)
        return maps.reshape(b, t, *maps.shape[1:]).transpose(1, 2)

    def default_data_config(self) -> DataConfig:
        """The model's pretrained config (crop, ``crop / crop_pct`` resize, mean, std; the crop a ViT-like
        model was built for), 8 frames (:func:`timm_data_config`)."""
        built_for = getattr(getattr(self.model, "patch_embed", None), "img_size", None)
        crop = int(built_for[-1]) if built_for is not None else None  # ViT-like models built for another size
        return timm_data_config(getattr(self.model, "pretrained_cfg", None) or {}, crop_size=crop)


def timm_data_config(cfg: Mapping[str, Any], crop_size: int | None = None, num_frames: int = 8) -> DataConfig:
    """The :class:`DataConfig` of a timm pretrained config (``model.pretrained_cfg`` or
    ``timm.models.get_pretrained_cfg(name).to_dict()``), used frame by frame.

    Crop: ``input_size[-1]`` (or ``crop_size``); resize: ``int(crop / crop_pct)`` (timm's eval transform
    resizes the shorter side to it); mean and std as given; ``num_frames`` frames (timm models have no
    clip length: 8 by default).
    """
    crop = int(crop_size if crop_size is not None else (cfg.get("input_size") or (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875) or 0.875)
    return DataConfig(num_frames=num_frames, crop_size=crop, resize_size=int(crop / crop_pct),
                      mean=tuple(cfg.get("mean") or (0.485, 0.456, 0.406)),
                      std=tuple(cfg.get("std") or (0.229, 0.224, 0.225)))
