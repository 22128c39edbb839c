"""Learnable 3D (time x height x width) absolute positional embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PositionalEmbedding3d", "resample_pos_embed_3d"]


def resample_pos_embed_3d(
    pos_embed: torch.Tensor, old_grid: tuple[int, int, int], new_grid: tuple[int, int, int]
) -> torch.Tensor:
    """Resample a ``[1, T*H*W, D]`` embedding laid out t-major to another grid, trilinearly.

    The 3D analogue of timm's ``resample_abs_pos_embed`` (``align_corners=False``). Computed in
    float32 and cast back, so half-precision embeddings resample accurately.

    Args:
        pos_embed: the embedding, ``[1, T*H*W, D]`` with ``(T, H, W) = old_grid``.
        old_grid: its ``(t, h, w)`` grid.
        new_grid: the grid to resample to; the same grid returns ``pos_embed`` itself.

    Raises:
        ValueError: ``pos_embed`` does not have ``t*h*w`` positions of ``old_grid``.
    """
    t, h, w = old_grid
    if pos_embed.shape[-2] != t * h * w:
        raise ValueError(f"pos_embed has {pos_embed.shape[-2]} positions, expected t*h*w = {t * h * w} for grid {old_grid}")
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed.float().reshape(1, t, h, w, dim).permute(0, 4, 1, 2, 3)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="trilinear", align_corners=False)
    return grid.permute(0, 2, 3, 4, 1).reshape(1, -1, dim).to(pos_embed.dtype)


class PositionalEmbedding3d(nn.Module):
    """One learnable vector per token of a ``t x h x w`` grid, added to ``[B, N, D]`` tokens.

    Initialised from a standard normal, as the reference TAG-Head does. ``forward`` takes the grid of
    the incoming tokens; a different grid is resampled with :func:`resample_pos_embed_3d`.

    Args:
        t: frames of the grid the embedding is learned for.
        h: its height in tokens.
        w: its width in tokens.
        dim: token width ``D``.
    """

    def __init__(self, t: int, h: int, w: int, dim: int) -> None:
        super().__init__()
        self.grid = (t, h, w)
        self.weight = nn.Parameter(torch.randn(1, t * h * w, dim))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``tokens`` plus the embedding of ``grid`` (resampled when it differs from the learned grid).

        Args:
            tokens: ``[B, t*h*w, D]``, t-major.
            grid: their ``(t, h, w)``.
        """
        if tuple(grid) == self.grid:  # no resampling (and no shape check, which torch.fx could not trace)
            return tokens + self.weight.to(tokens.dtype)
        return tokens + resample_pos_embed_3d(self.weight, self.grid, grid).to(tokens.dtype)
