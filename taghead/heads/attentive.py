r"""The attentive probe: learnable queries cross-attend to every space-time token (V-JEPA's evaluation head)."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import PositionalEmbedding3d
from ..utils.checkpointing import run_checkpointed
from .base import VideoHead
from .registry import register_head

__all__ = ["AttentiveProbeHead"]


@register_head("attentive")
class AttentiveProbeHead(VideoHead):
    r"""Attentive probe: ``num_queries`` learnable query tokens read the whole feature map through one
    cross-attention block, then a linear classifier.

    The evaluation head of V-JEPA (Bardes et al., 2024, "Revisiting Feature Prediction for Learning Visual
    Representations from Video", its ``AttentivePooler`` + ``AttentiveClassifier``) and V-JEPA 2 (Assran et
    al., 2025, "V-JEPA 2: Self-Supervised Video Models Enable Understanding, Prediction and Planning"; in
    Hugging Face Transformers ``VJEPA2AttentivePooler`` inside ``VJEPA2ForVideoClassification``), the usual baseline
    for frozen video foundation models. On a feature map ``x [B, C, T, H, W]``:

    1. tokens ``[B, N, C]`` (``N = T*H*W``, t-major), an optional linear projection to ``embed_dim`` and a
       learnable 3D positional embedding (one vector per token, as TAG-Head's; V-JEPA's encoders carry
       their positions in the tokens, a CNN's map does not);
    2. ``depth`` pre-norm self-attention blocks over all tokens (V-JEPA 2 puts three before the
       cross-attention; V-JEPA's probe has none, the default);
    3. the cross-attention block, with queries :math:`q` (learnable, ``[num_queries, D]``) and tokens
       :math:`X`: :math:`q \leftarrow q + \mathrm{MHA}(q, \mathrm{LN}(X), \mathrm{LN}(X))`, then
       :math:`q \leftarrow q + \mathrm{MLP}(\mathrm{LN}(q))` (GELU, width ``mlp_ratio * D``);
    4. the mean over the queries (one query: that query), dropout, ``Linear(D, num_classes)``.

    Unlike TAG-Head nothing in it knows which tokens share a frame or a position over time: what it reads
    about time, it reads from the positional embedding through attention.

    Args:
        in_channels: channels ``C`` of the backbone's feature map.
        t: time steps of the feature map the head is built for.
        h: its height.
        w: its width.
        num_classes: classifier outputs; ``0`` returns the pooled queries ``[B, embed_dim]``.
        embed_dim: token width; ``None`` (default): ``min(in_channels, 512)`` as in TAG-Head (wider tokens
            projected by a linear layer).
        num_queries: learnable queries (V-JEPA: 1).
        num_heads: attention heads.
        mlp_ratio: width of the MLPs relative to ``embed_dim`` (V-JEPA: 4).
        depth: self-attention blocks over the tokens before the cross-attention (V-JEPA: 0, V-JEPA 2: 3).
        dropout: dropout in the attention and the MLPs (V-JEPA: 0).
        pos_embed: add the learnable positional embedding.
        drop_rate: dropout before the classifier.
        dynamic_size: accept feature maps on another grid (positional embedding resampled trilinearly);
            otherwise such input is an error.
    """

    head_name = "attentive"

    def __init__(
        self,
        in_channels: int,
        t: int,
        h: int,
        w: int,
        *,
        num_classes: int = 99,
        embed_dim: int | None = None,
        num_queries: int = 1,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        depth: int = 0,
        dropout: float = 0.0,
        pos_embed: bool = True,
        drop_rate: float = 0.0,
        dynamic_size: bool = False,
    ) -> None:
        super().__init__(in_channels, t, h, w)
        embed_dim = min(in_channels, 512) if embed_dim is None else embed_dim
        for name, value, minimum in (("embed_dim", embed_dim, 1), ("num_queries", num_queries, 1),
                                     ("num_heads", num_heads, 1), ("depth", depth, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        self._record_config(embed_dim=embed_dim, num_queries=num_queries, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            depth=depth, dropout=dropout, pos_embed=pos_embed, drop_rate=drop_rate,
                            dynamic_size=dynamic_size)
        self.embed_dim = self.num_features = self.head_hidden_size = embed_dim
        self.dynamic_size = dynamic_size
        hidden = max(1, round(mlp_ratio * embed_dim))

        self.proj = nn.Linear(in_channels, embed_dim) if embed_dim != in_channels else nn.Identity()
        self.pos_embed = PositionalEmbedding3d(t, h, w, embed_dim) if pos_embed else None
        if depth > 0:
            block = nn.TransformerEncoderLayer(embed_dim, num_heads, dim_feedforward=hidden, dropout=dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        else:
            self.blocks = None
        self.query = nn.Parameter(torch.empty(1, num_queries, embed_dim))
        nn.init.trunc_normal_(self.query, std=0.02)  # V-JEPA's initialisation of its query token
        self.norm_tokens = nn.LayerNorm(embed_dim)
        self.cross_attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_query = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, embed_dim))
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_classifier(num_classes)

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay (timm's convention): the queries (like a class token) and the
        positional embedding."""
        return {"query"} | ({"pos_embed.weight"} if self.pos_embed is not None else set())

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Steps 1-2: the normalised tokens ``[B, N, D]`` that the queries attend to."""
        tokens, _ = self._positioned_tokens(x)
        if self.blocks is not None:
            # with gradient checkpointing the blocks run one by one, recomputed in the backward pass
            tokens = run_checkpointed(self.blocks.layers, tokens) if self.grad_checkpointing else self.blocks(tokens)
        return self.norm_tokens(tokens)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The queries after the cross-attention block, ``[B, num_queries, embed_dim]``.

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        tokens = self._tokens(x)
        query = self.query.expand(tokens.shape[0], -1, -1)
        query = query + self.cross_attn(query, tokens, tokens, need_weights=False)[0]
        return query + self.mlp(self.norm_query(query))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over the queries, dropout, then the classifier (skipped when ``pre_logits``).

        Args:
            x: the queries :meth:`forward_features` returned.
            pre_logits: return the pooled queries instead of logits.
        """
        x = self.head_drop(x.mean(dim=1))
        return x if pre_logits else self.fc(x)

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Where each query looks: its cross-attention weights over the tokens of ``x [B, C, T, H, W]``, averaged
        over the heads, ``[B, num_queries, T, H, W]`` (each query's map sums to 1; in training mode with
        ``dropout > 0`` the weights after attention dropout).

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        tokens = self._tokens(x)
        query = self.query.expand(tokens.shape[0], -1, -1)
        weights = self.cross_attn(query, tokens, tokens, need_weights=True, average_attn_weights=True)[1]
        return weights.reshape(weights.shape[0], weights.shape[1], *x.shape[2:])
