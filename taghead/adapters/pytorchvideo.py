"""Adapters for pytorchvideo's hub models: the ResNet family (slow, c2d, i3d, r2plus1d, csn), X3D,
SlowFast and MViT.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DataConfig
from ..layers.pos_embed import resample_pos_embed_3d
from ..utils.checkpointing import checkpoint_call, run_checkpointed
from ..utils.tracing import is_tracing
from .base import FeatureExtractor, GroupMatcher, check_video
from .registry import register_adapter
from .tokens import resample_separable_pos_embed, tokens_to_map

__all__ = ["PTVNetFeatures", "PTVResNetFeatures", "X3DFeatures", "SlowFastFeatures", "PTVMViTFeatures",
           "AlignPathways"]

_NET = "pytorchvideo.models.net:Net"
_MEAN, _STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def _type_name(module: Any) -> str:
    return type(module).__name__


def _is_multipathway(model: nn.Module) -> bool:
    return any(_type_name(b) == "MultiPathWayWithFuse" for b in getattr(model, "blocks", ()))


def _head_block(model: nn.Module) -> nn.Module | None:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        return None
    head = blocks[-1]
    return head if _type_name(head) == "ResNetBasicHead" else None


def _strip_basic_head(head: nn.Module) -> None:
    """Turn a ``ResNetBasicHead`` into a pass-through (``forward`` skips ``None`` parts)."""
    head.dropout = None
    head.proj = None
    head.activation = None
    head.output_pool = None


class PTVNetFeatures(FeatureExtractor):
    """What pytorchvideo's ``Net`` models share (ResNet family, X3D, SlowFast): ``model.blocks`` run in order.

    Gradient checkpointing: every block after the stem; a residual stage (``ResStage``) per residual block, a
    two-pathway block (SlowFast) as a whole. Layer groups: the blocks (``coarse``), or their residual blocks.
    """

    supports_grad_checkpointing = True

    def extract(self, video: Any) -> torch.Tensor:
        if not self.grad_checkpointing:
            return self.model(video)
        blocks = self.model.blocks
        x = blocks[0](video)  # the stem: its output is the next block's input, kept anyway
        for block in blocks[1:]:
            res_blocks = getattr(block, "res_blocks", None)
            if next(block.parameters(), None) is None:  # nothing to recompute (pooling, Identity)
                x = block(x)
            elif isinstance(res_blocks, nn.ModuleList):  # a ResStage: its forward is exactly this loop
                x = run_checkpointed(res_blocks, x)
            elif isinstance(x, list):  # MultiPathWayWithFuse writes into the list it gets: give it a copy
                x = checkpoint_call(_on_copy(block), x, owner=block)
            else:
                x = checkpoint_call(block, x)
        return x

    def group_matcher(self, coarse: bool = False) -> GroupMatcher:
        if coarse:
            return dict(blocks=r"^blocks\.(\d+)")
        return dict(blocks=[(r"^blocks\.(\d+)\.res_blocks\.(\d+)", None),
                            (r"^blocks\.(\d+)\.multipathway_blocks\.\d+\.res_blocks\.(\d+)", None),
                            (r"^blocks\.(\d+)", None)])


def _on_copy(block: nn.Module) -> Any:
    """``block`` called on a copy of its list input (so a checkpointed re-run sees the original list)."""
    return lambda x: block(list(x))


@register_adapter(
    "pytorchvideo_resnet", _NET,
    family="pytorchvideo ResNet-style Net: slow_r50, c2d_r50, i3d_r50, r2plus1d_r50, csn_r101",
)
class PTVResNetFeatures(PTVNetFeatures):
    """The stem and the residual stages; the ``ResNetBasicHead`` (pool, dropout, projection,
    activation, output pool) is replaced by ``nn.Identity``, so ``model(video)`` returns the last map
    ``[B, 2048, T/s_t, H/32, W/32]`` (``s_t`` = 1 for slow_r50, 2 for c2d/i3d, 4 for r2plus1d_r50,
    8 for csn_r101).

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        head = _head_block(model)
        return head is not None and not _is_multipathway(model) and _type_name(head.pool) != "ProjectedPool"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.blocks[-1] = nn.Identity()

    def default_data_config(self) -> DataConfig:
        return DataConfig(num_frames=8, crop_size=224, resize_size=256, mean=_MEAN, std=_STD)


@register_adapter("pytorchvideo_x3d", _NET, family="pytorchvideo X3D: x3d_xs, x3d_s, x3d_m, x3d_l")
class X3DFeatures(PTVNetFeatures):
    """The stem, the stages and X3D's ``conv5`` (the head's 1x1x1 expansion to 432 channels with its
    norm and activation, part of stage 5 in the X3D paper); the head's pooling, its ``lin5``
    projection to 2048, dropout and classifier are removed. ``[B, 432, T, H/32, W/32]``.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        head = _head_block(model)
        return head is not None and not _is_multipathway(model) and _type_name(head.pool) == "ProjectedPool"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        head = model.blocks[-1]
        _strip_basic_head(head)
        projected = head.pool
        projected.pool = nn.Identity()
        projected.post_conv = nn.Identity()
        projected.post_norm = None
        projected.post_act = None

    def default_data_config(self) -> DataConfig:
        # X3D-M's clip (16 x 224); x3d_xs/x3d_s/x3d_l take 4 x 160, 13 x 160, 16 x 312 (backbone registry).
        return DataConfig(num_frames=16, crop_size=224, resize_size=256, mean=_MEAN, std=_STD)


class AlignPathways(nn.Module):
    """Bring SlowFast's two last maps to the slow pathway's length and concatenate them on channels.

    The fast map ``[B, C_f, alpha*T, H, W]`` is average-pooled over time to ``T`` steps
    (``adaptive_avg_pool3d``: non-overlapping windows of ``alpha`` frames when the lengths divide),
    then ``[slow, fast]`` are concatenated: ``[B, C_s + C_f, T, H, W]``. It replaces pytorchvideo's
    ``PoolConcatPathway``, which pools both pathways to a single vector.
    """

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate the two pathways' maps along channels, the fast one average-pooled in time to the
        slow one's length.

        Args:
            x: the ``[slow, fast]`` feature maps ``[B, C, T, H, W]``.

        Returns:
            One map ``[B, C_slow + C_fast, T_slow, H, W]``.
        """
        slow, fast = x
        if is_tracing():  # no shapes to compare: pool the fast map to the slow one's length (a no-op when equal)
            return torch.cat([slow, F.adaptive_avg_pool3d(fast, (slow.shape[2], slow.shape[3], slow.shape[4]))], dim=1)
        if slow.shape[3:] != fast.shape[3:]:
            raise ValueError(f"SlowFast pathways end with different spatial sizes: slow {tuple(slow.shape)}, "
                             f"fast {tuple(fast.shape)}")
        if fast.shape[2] != slow.shape[2]:
            fast = F.adaptive_avg_pool3d(fast, tuple(slow.shape[2:]))
        return torch.cat([slow, fast], dim=1)


@register_adapter(
    "pytorchvideo_slowfast", _NET,
    family="pytorchvideo SlowFast: slowfast_r50, slowfast_r101, slowfast_16x8_r101_50_50",
)
class SlowFastFeatures(PTVNetFeatures):
    """Both pathways to their last maps, aligned by :class:`AlignPathways`: the fast pathway is
    average-pooled over time to the slow pathway's length, then the maps are concatenated on
    channels (slow 2048 + fast 256 = 2304 for the hub models): ``[B, 2304, T/alpha, H/32, W/32]``.

    Input: a list ``[slow, fast]`` of ``[B, 3, T_s, H, W]`` and ``[B, 3, T_f, H, W]`` clips, or one
    ``[B, 3, T, H, W]`` clip, which becomes the fast pathway while the slow pathway takes ``T // alpha``
    frames at ``linspace(0, T - 1, T // alpha)`` (pytorchvideo's ``PackPathway``). ``alpha`` (frame-rate
    ratio of the two pathways) is read from the model's fast-to-slow fusion stride (4 for the hub
    models). The data config's ``num_frames`` is the fast pathway's length. The head's pooling
    (``PoolConcatPathway``) is replaced by :class:`AlignPathways` and the ``ResNetBasicHead`` by
    ``nn.Identity``.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
        alpha: frame-rate ratio of the fast to the slow pathway; ``None`` reads it from the model's fusion
            stride.
    """

    input_format = "video tensor [B, 3, T, H, W] (split into pathways) or a list [slow, fast] of such tensors"

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        blocks = getattr(model, "blocks", None)
        return (isinstance(blocks, nn.ModuleList) and _is_multipathway(model)
                and any(_type_name(b) in ("PoolConcatPathway", "AlignPathways") for b in blocks))

    def __init__(self, model: nn.Module, alpha: int | None = None) -> None:
        super().__init__(model)
        blocks = model.blocks
        pool_index = max(i for i, b in enumerate(blocks) if _type_name(b) in ("PoolConcatPathway", "AlignPathways"))
        blocks[pool_index] = AlignPathways()
        for i in range(pool_index + 1, len(blocks)):
            blocks[i] = nn.Identity()
        self.alpha = int(alpha) if alpha is not None else self._fusion_alpha()
        if self.alpha < 1:
            raise ValueError(f"alpha must be a positive int, got {self.alpha}")

    def _fusion_alpha(self) -> int:
        for block in self.model.blocks:
            conv = getattr(getattr(block, "multipathway_fusion", None), "conv_fast_to_slow", None)
            if conv is not None:
                return int(conv.stride[0])
        raise ValueError("cannot read alpha from this SlowFast model (no fast-to-slow fusion conv); pass alpha=")

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def pack_pathways(self, video: torch.Tensor) -> list[torch.Tensor]:
        """One clip ``[B, 3, T, H, W]`` -> ``[slow, fast]`` (slow: ``T // alpha`` evenly spaced frames).

        Args:
            video: one clip batch ``[B, 3, T, H, W]``.
        """
        t = video.shape[2]
        if not is_tracing() and t < self.alpha:
            raise ValueError(f"a SlowFast clip needs at least alpha={self.alpha} frames, got {t} ({tuple(video.shape)})")
        index = torch.linspace(0, t - 1, t // self.alpha, device=video.device).long()
        return [video.index_select(2, index), video]

    def check_input(self, video: Any) -> list[torch.Tensor]:
        owner = type(self).__name__
        if isinstance(video, (list, tuple)):
            if len(video) != 2:
                raise ValueError(f"{owner} expects a list [slow, fast] of two clips, got {len(video)} tensors")
            slow, fast = (check_video(v, self.in_chans, f"{owner} ({name} pathway)")
                          for v, name in zip(video, ("slow", "fast")))
            if slow.shape[0] != fast.shape[0] or slow.shape[3:] != fast.shape[3:]:
                raise ValueError(f"{owner}: slow and fast clips must share batch and frame size, got "
                                 f"{tuple(slow.shape)} and {tuple(fast.shape)}")
            return [slow, fast]
        return self.pack_pathways(check_video(video, self.in_chans, owner))

    def extract(self, video: list[torch.Tensor]) -> torch.Tensor:
        return super().extract(list(video))  # MultiPathWayWithFuse writes into the list it gets

    def default_data_config(self) -> DataConfig:
        return DataConfig(num_frames=32, crop_size=224, resize_size=256, mean=_MEAN, std=_STD)


@register_adapter(
    "pytorchvideo_mvit", "pytorchvideo.models.vision_transformers:MultiscaleVisionTransformers",
    family="pytorchvideo MViT: mvit_base_16x4, mvit_base_32x3",
)
class PTVMViTFeatures(FeatureExtractor):
    """Patch embedding, class token and positional encoding, the multiscale blocks and the final norm;
    the class token is dropped and the tokens reshaped to ``[B, 768, T/2, H/32, W/32]``.

    The head (sequence pool, dropout, projection) is removed. The model is built for one clip size
    (``spatial_size``, ``temporal_size``); other sizes work here because the positional embedding is
    resampled to the actual token grid (trilinearly, or bilinear + linear when separable; unchanged at
    the native size). Gradient checkpointing: per block.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
    """

    supports_grad_checkpointing = True

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return getattr(model, "patch_embed", None) is not None and hasattr(model.patch_embed, "patch_model")

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.head = None

    def _native_thw(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.model.cls_positional_encoding.patch_embed_shape)  # type: ignore[return-value]

    def _add_position(self, x: torch.Tensor, thw: tuple[int, int, int]) -> torch.Tensor:
        pe = self.model.cls_positional_encoding
        if pe.sep_pos_embed:
            pos = resample_separable_pos_embed(pe.pos_embed_spatial[0], pe.pos_embed_temporal[0], self._native_thw(), thw)
            pos = pos.unsqueeze(0)
            cls_pos = pe.pos_embed_class if pe.cls_embed_on else None
        else:
            offset = 1 if pe.cls_embed_on else 0
            pos = resample_pos_embed_3d(pe.pos_embed[:, offset:], self._native_thw(), thw)
            cls_pos = pe.pos_embed[:, :1] if pe.cls_embed_on else None
        x = x + pos
        if pe.cls_embed_on:
            x = torch.cat((pe.cls_token.expand(x.shape[0], -1, -1) + cls_pos, x), dim=1)
        return x

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.patch_embed.patch_model(video)
        thw = tuple(int(v) for v in x.shape[2:])
        x = self._add_position(x.flatten(2).transpose(1, 2), thw)
        if m.pos_drop is not None:
            x = m.pos_drop(x)
        if m.norm_patch_embed is not None:
            x = m.norm_patch_embed(x)
        for block in m.blocks:
            x, thw = checkpoint_call(block, x, thw, enabled=self.grad_checkpointing)
        if m.norm_embed is not None:
            x = m.norm_embed(x)
        return tokens_to_map(x, thw, num_prefix=1 if m.cls_positional_encoding.cls_embed_on else 0)

    def default_data_config(self) -> DataConfig:
        t, h, _ = self._native_thw()
        stride = self.model.patch_embed.patch_model.stride
        return DataConfig(num_frames=t * stride[0], crop_size=h * stride[1], resize_size=256, mean=_MEAN, std=_STD)
