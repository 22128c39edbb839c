"""TAG-Head: Transformer + time-aligned graph refinement on a video backbone's feature map."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers import PositionalEmbedding3d
from ..ops import time_aligned_appnp
from ..ops.time_aligned import check_propagation
from ..utils.checkpointing import run_checkpointed
from .base import VideoHead, check_number
from .registry import register_head

__all__ = ["TAGHead", "TAG_PRESETS", "REFERENCE_WIDTH"]

# One node in a torch.fx graph (create_feature_extractor): the propagation checks its input's values.
torch.fx.wrap("time_aligned_appnp")

REFERENCE_WIDTH = 512
"""Token width of the reference head (R(2+1)D-34's 512 channels). By default tokens wider than this are
projected to it, so that a wide backbone gets a head of the reference's size."""

TAG_PRESETS: dict[str, dict[str, Any]] = {
    "haa500": dict(num_classes=500, num_frames=32, t=4, h=7, w=7, mlp_dim=512),
    "gym99": dict(num_classes=99, num_frames=64, t=8, h=7, w=7, mlp_dim=1024),
    "gym288": dict(num_classes=288, num_frames=64, t=8, h=7, w=7, mlp_dim=2048),
}
"""The reference configurations (R(2+1)D-34 at 112x112, a 7x7 map, 512 channels).

``num_frames`` is the clip length fed to the backbone; ``t`` the temporal size of its feature map.
"""


@register_head("tag")
class TAGHead(VideoHead):
    r"""Time-Aligned Graph Head.

    ``[B, C, T, H, W]`` -> tokens ``[B, N, C]`` (``N = T*H*W``, t-major) -> optional linear projection
    to ``embed_dim`` -> + learnable 3D positional embedding -> Transformer encoder (global space-time
    context) -> APPNP on the time-aligned graph (complete graph inside each frame, same-position
    edges between consecutive frames; :func:`taghead.ops.time_aligned_appnp`) -> mean over the N
    nodes -> LayerNorm -> Linear.

    The defaults are a light reference head: tokens at most 512 wide (wider ones projected), 2
    post-norm layers of 8 heads, dropout 0.5, ReLU, K=2, alpha=0.1, the feed-forward width of the
    lightest reference preset (HAA500's 512) and 99 classes; on every built-in backbone of at least
    20 M parameters it adds at most about a fifth of the backbone's parameters (the table in the heads
    guide, ``docs/guides/heads.md``, section "Parameters and FLOPs"). :meth:`from_preset` gives the HAA500,
    Gym99 and Gym288 presets exactly (512 channels in, no projection, feed-forward 512 / 1024 / 2048).

    Args:
        in_channels: channels ``C`` of the backbone's feature map.
        t: time steps of the feature map the head is built for.
        h: its height.
        w: its width.
        num_classes: classifier outputs; ``0`` returns the pooled, normalised features.
        embed_dim: token width. ``None`` (default): ``min(in_channels, 512)``, i.e. tokens wider than
            the reference width (:data:`REFERENCE_WIDTH`, 512) are projected to 512 by a linear layer
            and narrower ones are kept as they are. An int sets the width (``embed_dim=in_channels``
            never projects). ``get_config()`` records the width used.
        depth: Transformer layers (``0`` = graph only).
        num_heads: attention heads.
        mlp_dim: feed-forward width of each layer (reference: 512 HAA500, 1024 Gym99, 2048 Gym288).
        dropout: dropout inside the Transformer layers.
        norm_first: pre-norm layers (with a final LayerNorm) instead of the reference post-norm.
        activation: ``"relu"`` (reference) or ``"gelu"``.
        use_graph: apply the graph propagation (``False`` = Transformer only).
        k: APPNP steps (``None`` = the personalised-PageRank limit).
        alpha: APPNP teleport probability.
        intra: the intra-frame edge set (for ablations).
        temporal: the temporal edge set (for ablations).
        pos_embed: add the learnable positional embedding.
        drop_rate: dropout before the classifier.
        dynamic_size: accept feature maps on another grid (positional embedding resampled
            trilinearly, graph built on the actual grid); otherwise such input is an error.
    """

    head_name = "tag"

    def __init__(
        self,
        in_channels: int,
        t: int,
        h: int,
        w: int,
        *,
        num_classes: int = 99,
        embed_dim: int | None = None,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 512,
        dropout: float = 0.5,
        norm_first: bool = False,
        activation: str = "relu",
        use_graph: bool = True,
        k: int | None = 2,
        alpha: float = 0.1,
        intra: bool = True,
        temporal: bool = True,
        pos_embed: bool = True,
        drop_rate: float = 0.0,
        dynamic_size: bool = False,
    ) -> None:
        super().__init__(in_channels, t, h, w)
        embed_dim = min(in_channels, REFERENCE_WIDTH) if embed_dim is None else embed_dim
        if embed_dim % num_heads != 0 and depth > 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        # Validate the settings here rather than on the first forward pass: cheap checks only (nothing
        # allocated, nothing computed), so that a hostile config costs nothing before its weights are compared.
        check_propagation(t, h, w, k, alpha)
        dropout = check_number("dropout", dropout, 0.0, 1.0)
        drop_rate = check_number("drop_rate", drop_rate, 0.0, 1.0)
        self._record_config(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout,
            norm_first=norm_first, activation=activation, use_graph=use_graph, k=k, alpha=alpha,
            intra=intra, temporal=temporal, pos_embed=pos_embed, drop_rate=drop_rate, dynamic_size=dynamic_size,
        )
        self.embed_dim = self.num_features = self.head_hidden_size = embed_dim
        self.use_graph, self.k, self.alpha = use_graph, k, alpha
        self.intra, self.temporal = intra, temporal
        self.dynamic_size = dynamic_size

        self.proj = nn.Linear(in_channels, embed_dim) if embed_dim != in_channels else nn.Identity()
        self.pos_embed = PositionalEmbedding3d(t, h, w, embed_dim) if pos_embed else None
        if depth > 0:
            layer = nn.TransformerEncoderLayer(
                embed_dim, num_heads, dim_feedforward=mlp_dim, dropout=dropout, activation=activation,
                batch_first=True, norm_first=norm_first,
            )
            final_norm = nn.LayerNorm(embed_dim) if norm_first else None
            self.transformer = nn.TransformerEncoder(layer, depth, norm=final_norm, enable_nested_tensor=False)
        else:
            self.transformer = None
        self.norm = nn.LayerNorm(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_classifier(num_classes)

    @classmethod
    def from_preset(cls, preset: str, in_channels: int = 512, **overrides: Any) -> TAGHead:
        """The reference head for ``"haa500"``, ``"gym99"`` or ``"gym288"`` (keyword overrides allowed).

        Args:
            preset: ``"haa500"``, ``"gym99"`` or ``"gym288"`` (:data:`TAG_PRESETS`).
            in_channels: channels of the backbone's feature map.
            **overrides: constructor arguments that replace the preset's.
        """
        if preset not in TAG_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TAG_PRESETS)}")
        cfg = {key: v for key, v in TAG_PRESETS[preset].items() if key != "num_frames"}
        cfg.update(overrides)
        t, h, w = cfg.pop("t"), cfg.pop("h"), cfg.pop("w")
        return cls(in_channels, t, h, w, **cfg)

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay (timm's convention): the positional embedding (1-D parameters
        are exempt anyway, see :meth:`taghead.VideoClassifier.param_groups`)."""
        return {"pos_embed.weight"} if self.pos_embed is not None else set()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Refined tokens ``[B, N, embed_dim]`` (after the Transformer and the graph propagation).

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        tokens, grid = self._positioned_tokens(x)
        if self.transformer is not None:
            tokens = self._encode(tokens)
        if self.use_graph:
            tokens = time_aligned_appnp(tokens, *grid, k=self.k, alpha=self.alpha,
                                        intra=self.intra, temporal=self.temporal)
        return tokens

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The Transformer encoder, its layers checkpointed one by one when gradient checkpointing is on (the same
        computation as ``self.transformer(tokens)``: no masks, then the final norm of pre-norm layers)."""
        if not self.grad_checkpointing:
            return self.transformer(tokens)
        tokens = run_checkpointed(self.transformer.layers, tokens)
        return tokens if self.transformer.norm is None else self.transformer.norm(tokens)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over nodes, LayerNorm, then the classifier (skipped when ``pre_logits``).

        Args:
            x: the tokens :meth:`forward_features` returned.
            pre_logits: return the pooled, normalised features instead of logits.
        """
        x = self.head_drop(self.norm(x.mean(dim=1)))
        return x if pre_logits else self.fc(x)
