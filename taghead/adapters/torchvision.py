"""Adapters for torchvision's video models: VideoResNet (r3d_18, mc3_18, r2plus1d_18, taghead's
R(2+1)D-34), S3D, MViT (v1/v2) and Swin3D.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DataConfig
from ..utils.checkpointing import checkpoint_call, run_checkpointed
from .base import FeatureExtractor, GroupMatcher
from .registry import register_adapter
from .tokens import resample_separable_pos_embed, tokens_to_map

__all__ = ["VideoResNetFeatures", "S3DFeatures", "MViTFeatures", "SwinTransformer3dFeatures"]

#: Normalisation of torchvision's Kinetics-400 video weights (``VideoClassification`` preset).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_adapter(
    "torchvision_video_resnet", "torchvision.models.video.resnet:VideoResNet",
    family="torchvision VideoResNet: r3d_18, mc3_18, r2plus1d_18, taghead.backbones.r2plus1d_34",
)
class VideoResNetFeatures(FeatureExtractor):
    """``stem -> layer1..layer4``; ``avgpool`` and ``fc`` are replaced by ``nn.Identity``.

    112x112 clips of ``T`` frames give ``[B, 512, T/8, 7, 7]`` (r3d_18, r2plus1d_18, R(2+1)D-34) or
    ``[B, 512, T, 7, 7]`` (mc3_18, whose 2D stages keep the time axis). Gradient checkpointing: per residual
    block; layer groups: the stem, then the stages (``coarse``) or their blocks.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.avgpool = nn.Identity()
        model.fc = nn.Identity()

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.stem(video)
        for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = run_checkpointed(stage, x) if self.grad_checkpointing else stage(x)
        return x

    def group_matcher(self, coarse: bool = False) -> GroupMatcher:
        return dict(stem=r"^stem", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")

    def default_data_config(self) -> DataConfig:
        # torchvision's Kinetics-400 weights: 16-frame clips, 112 crop, frames resized to 128x171.
        return DataConfig(num_frames=16, crop_size=112, resize_size=128, mean=KINETICS_MEAN, std=KINETICS_STD)


@register_adapter("torchvision_s3d", "torchvision.models.video.s3d:S3D", family="torchvision S3D: s3d")
class S3DFeatures(FeatureExtractor):
    """``features`` (the separable Inception stages); ``avgpool`` and ``classifier`` are dropped.

    A 224x224 clip of ``T`` frames gives ``[B, 1024, T/8, 7, 7]``. Gradient checkpointing: per element of
    ``features``.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.avgpool = nn.Identity()
        model.classifier = nn.Identity()

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing:
            return run_checkpointed(self.model.features, video)
        return self.model.features(video)

    def default_data_config(self) -> DataConfig:
        # torchvision evaluates its S3D weights on 128-frame clips at 224 (resize 256).
        return DataConfig(num_frames=128, crop_size=224, resize_size=256, mean=KINETICS_MEAN, std=KINETICS_STD)


@register_adapter(
    "torchvision_mvit", "torchvision.models.video.mvit:MViT", family="torchvision MViT: mvit_v1_b, mvit_v2_s"
)
class MViTFeatures(FeatureExtractor):
    """Patch embedding, class token and positional encoding, the MViT blocks and the final norm; the
    class token is dropped and the remaining tokens are reshaped to ``[B, 768, T/2, H/32, W/32]``.

    The head (dropout + linear on the class token) is replaced by ``nn.Identity``. torchvision builds
    MViT for 16x224x224 clips; other sizes work here: the absolute space and time embeddings of
    MViT-v1 are resampled (bilinear / linear) to the actual token grid (unchanged at the native size),
    and MViT-v2's relative position tables are interpolated by torchvision itself. Gradient
    checkpointing: per block.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.head = nn.Identity()

    def _native_thw(self) -> tuple[int, int, int]:
        pe = self.model.pos_encoding
        return (int(pe.temporal_size), int(pe.spatial_size[0]), int(pe.spatial_size[1]))

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.conv_proj(video)
        thw = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        pe = m.pos_encoding
        cls = pe.class_token.expand(x.shape[0], 1, -1)
        if pe.spatial_pos is not None:  # MViT-v1: absolute, separable space + time embedding
            pos = resample_separable_pos_embed(pe.spatial_pos, pe.temporal_pos, self._native_thw(), thw)
            x = x + pos.unsqueeze(0)
            cls = cls + pe.class_pos
        x = torch.cat((cls, x), dim=1)
        for block in m.blocks:
            x, thw = checkpoint_call(block, x, thw, enabled=self.grad_checkpointing)
        x = m.norm(x)
        return tokens_to_map(x, thw, num_prefix=1)

    def default_data_config(self) -> DataConfig:
        t, h, _ = self._native_thw()
        stride = self.model.conv_proj.stride
        return DataConfig(num_frames=t * stride[0], crop_size=h * stride[1], resize_size=256,
                          mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))


@register_adapter(
    "torchvision_swin3d", "torchvision.models.video.swin_transformer:SwinTransformer3d",
    family="torchvision Swin3D: swin3d_t, swin3d_s, swin3d_b",
)
class SwinTransformer3dFeatures(FeatureExtractor):
    """Patch embedding, the Swin stages and the final norm; the channels-last output
    ``[B, T', H', W', C]`` is permuted to ``[B, C, T', H', W']`` (``T/2, H/32, W/32``).

    ``avgpool`` and ``head`` are replaced by ``nn.Identity``. Any clip size works (windows are padded).
    Gradient checkpointing: per element of ``features`` (stages and patch merging).

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.avgpool = nn.Identity()
        model.head = nn.Identity()

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.pos_drop(m.patch_embed(video))
        x = m.norm(run_checkpointed(m.features, x) if self.grad_checkpointing else m.features(x))
        return x.permute(0, 4, 1, 2, 3)

    def default_data_config(self) -> DataConfig:
        # torchvision evaluates its Swin3D weights on 32-frame clips at 224 (resize 256), ImageNet statistics.
        return DataConfig(num_frames=32, crop_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
