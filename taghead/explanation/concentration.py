r"""How concentrated a heatmap is on where and when something happens.

:math:`\text{ratio} = \operatorname{mean}(\text{heatmap}[\text{mask}]) / \operatorname{mean}(\text{heatmap}[\neg\text{mask}])`:
1 when the heatmap ignores the mask, large when it lights up inside it and stays dark elsewhere. With
several clips the means are pooled over every voxel of every clip (each voxel counts once, so a clip
with a nearly black background cannot dominate the way it would in a mean of per-clip ratios).
"""

from __future__ import annotations

import math

import torch

__all__ = ["concentration_ratio"]


def concentration_ratio(heatmap: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``heatmap`` inside ``mask`` over its mean outside (``[T, H, W]`` each, or ``[N, T, H, W]`` pooled).

    The heatmap must be finite and non-negative (a relevance, like :attr:`Explanation.heatmap`); ``mask`` bool.
    ``inf`` when the heatmap is zero everywhere outside the mask but not inside; ``nan`` when it is zero everywhere.

    Args:
        heatmap: the relevance, ``[T, H, W]`` or ``[N, T, H, W]``.
        mask: bool, same shape: where the evidence is.
    """
    if not isinstance(heatmap, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise TypeError(f"heatmap and mask must be torch.Tensors, got {type(heatmap).__name__} and "
                        f"{type(mask).__name__}")
    if heatmap.shape != mask.shape or heatmap.dim() not in (3, 4):
        raise ValueError(f"heatmap and mask must both be [T, H, W] or [N, T, H, W] of the same shape, got "
                         f"{tuple(heatmap.shape)} and {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if heatmap.dtype == torch.bool or heatmap.is_complex():
        raise ValueError(f"heatmap must hold real numbers, got {heatmap.dtype}")
    values = heatmap.detach().double()
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(f"heatmap must be finite, got {bad} non-finite (nan or inf) values of {values.numel()}")
    negative = int((values < 0).sum())
    if negative:
        raise ValueError(f"heatmap must be non-negative (a relevance), got {negative} negative values (minimum "
                         f"{float(values.min()):.4g})")
    if not mask.any() or mask.all():
        raise ValueError("mask must have voxels both inside and outside")
    inside, outside = float(values[mask].mean()), float(values[~mask].mean())
    if outside > 0:
        return inside / outside
    return math.inf if inside > 0 else math.nan
