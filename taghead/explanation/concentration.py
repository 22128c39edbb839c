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

    ``inf`` when the heatmap is zero everywhere outside the mask but not inside; ``nan`` when it is zero everywhere.
    """
    if not isinstance(heatmap, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise TypeError("heatmap and mask must be tensors")
    if heatmap.shape != mask.shape or heatmap.dim() not in (3, 4):
        raise ValueError(f"heatmap and mask must both be [T, H, W] or [N, T, H, W] of the same shape, got "
                         f"{tuple(heatmap.shape)} and {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if not mask.any() or mask.all():
        raise ValueError("mask must have voxels both inside and outside")
    values = heatmap.detach().double()
    inside, outside = float(values[mask].mean()), float(values[~mask].mean())
    if outside > 0:
        return inside / outside
    return math.inf if inside > 0 else math.nan
