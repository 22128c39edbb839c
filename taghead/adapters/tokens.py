"""Token helpers for transformer backbones: tokens to maps, resampled positional embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..layers.pos_embed import resample_pos_embed_3d

__all__ = ["tokens_to_map", "resample_separable_pos_embed"]


def tokens_to_map(tokens: torch.Tensor, thw: Sequence[int], num_prefix: int = 0) -> torch.Tensor:
    """``[B, P + T*H*W, C]`` tokens (t-major, then h, then w) -> feature map ``[B, C, T, H, W]``.

    The first ``num_prefix`` tokens (class / distillation tokens) are dropped.

    Args:
        tokens: ``[B, P + T*H*W, C]``.
        thw: the grid ``(T, H, W)``.
        num_prefix: ``P``, the prefix tokens to drop.
    """
    t, h, w = (int(v) for v in thw)
    x = tokens[:, num_prefix:]
    if x.shape[1] != t * h * w:
        raise ValueError(f"expected {t}*{h}*{w} = {t * h * w} tokens after {num_prefix} prefix tokens, "
                         f"got {tokens.shape[1]} tokens in total (shape {tuple(tokens.shape)})")
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w)


def resample_separable_pos_embed(
    spatial: torch.Tensor, temporal: torch.Tensor, old_thw: Sequence[int], new_thw: Sequence[int]
) -> torch.Tensor:
    """Sum a separable space-time embedding on a (possibly new) grid: ``[T*H*W, C]``, t-major.

    ``spatial`` is ``[H0*W0, C]`` (resampled bilinearly to ``H x W``), ``temporal`` is ``[T0, C]``
    (resampled linearly to ``T``); position ``(t, s)`` gets ``temporal[t] + spatial[s]``, as in MViT.
    On the original grid no resampling happens and the values are exactly MViT's.

    Args:
        spatial: the spatial embedding ``[H0*W0, C]``.
        temporal: the temporal embedding ``[T0, C]``.
        old_thw: the grid ``(T0, H0, W0)`` the embeddings were made for.
        new_thw: the grid ``(T, H, W)`` to sum them on.
    """
    t0, h0, w0 = (int(v) for v in old_thw)
    t, h, w = (int(v) for v in new_thw)
    dim = spatial.shape[-1]
    sp = resample_pos_embed_3d(spatial.reshape(1, h0 * w0, dim), (1, h0, w0), (1, h, w)).reshape(h * w, dim)
    tp = resample_pos_embed_3d(temporal.reshape(1, t0, dim), (t0, 1, 1), (t, 1, 1)).reshape(t, dim)
    return (tp[:, None, :] + sp[None, :, :]).reshape(t * h * w, dim)
