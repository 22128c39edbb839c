r"""Where the head's tokens sit in the clip, and upsampling token maps to it.

A token of the feature map ``[C, T', H', W']`` summarises a receptive field of the clip. Where that
field is centred depends on the backbone: for "same"-padded strided convolutions (ResNets, R(2+1)D, X3D,
the tiny demo CNN) token ``k`` of an axis with stride ``s`` is centred on input index ``s k``; for
patch embeddings with kernel = stride (ViT, Swin) on ``s k + (s - 1) / 2``, the middle of its cell. A
plain resize assumes the latter and shifts a ResNet's map by half a cell, which on a 4-step time grid is
1.5 frames: more than the length of a short event.

So the centres are measured: on a fixed noise clip (standard normal, seed 0) of the explained shape, the gradient of the middle token's
channel sum with respect to the input; along each axis the centre of mass of its magnitude is that
token's centre :math:`c`, and token ``k`` sits at :math:`c + s (k - k_{mid})` with
:math:`s = \text{input size} / \text{grid size}`. One backbone forward and backward per model, clip shape,
device and dtype, cached until a weight of the feature extractor changes (the gradients depend on the weights:
training, ``load_state_dict`` or replacing a parameter measure afresh). When the backbone gives no input
gradient (a frozen or non-differentiable backbone), the cell centres :math:`s k + (s - 1) / 2` are used.

:func:`upsample` then interpolates linearly between the token centres along each axis (trilinear over
the three axes) and holds the edge values beyond the first and last centre.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable

import torch
from torch import nn

__all__ = ["TokenCentres", "cell_centres", "measure_token_centres", "upsample"]

#: ``(centres along T, along H, along W)``: input coordinates (frame, row, column) of each token, float64.
TokenCentres = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: ``model -> (weight fingerprint, {(clip size, grid, device, dtype): centres})``: one fingerprint per model, so
#: centres measured on older weights are dropped, not kept.
_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, dict[tuple, TokenCentres]]] = (
    weakref.WeakKeyDictionary())


def cell_centres(grid: tuple[int, int, int], size: tuple[int, int, int]) -> TokenCentres:
    """Token ``k`` at the middle of its cell, ``s k + (s - 1) / 2`` (what a plain resize assumes)."""
    out = []
    for n, length in zip(grid, size):
        s = length / n
        out.append(torch.arange(n, dtype=torch.float64) * s + (s - 1) / 2)
    return tuple(out)  # type: ignore[return-value]


def _features_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model.forward_features``; for a frozen taghead backbone (which runs under ``no_grad``) its ``extract``."""
    backbone = getattr(model, "backbone", None)
    if getattr(backbone, "frozen", False) and callable(getattr(backbone, "extract", None)):
        return lambda video: backbone.extract(backbone.check_input(video))
    return model.forward_features


def _weights_fingerprint(model: nn.Module) -> Hashable | None:
    """What identifies the current weights of the feature extractor (the model without its ``head``): each
    parameter's and buffer's name, identity, storage and in-place version counter, which every optimiser step,
    ``load_state_dict`` and ``copy_`` bumps. ``None`` when a tensor keeps no version counter (inference mode)."""
    head = getattr(model, "head", None)
    skip = {id(t) for t in (*head.parameters(), *head.buffers())} if isinstance(head, nn.Module) else set()
    tensors = [*model.named_parameters(), *model.named_buffers()]
    try:
        return tuple((name, id(t), t.data_ptr(), t._version) for name, t in tensors if id(t) not in skip)
    except RuntimeError:  # an inference tensor has no version counter
        return None


def measure_token_centres(model: nn.Module, shape: tuple[int, ...], grid: tuple[int, int, int], *,
                          device: torch.device, dtype: torch.dtype) -> TokenCentres:
    """The token centres of ``model.forward_features`` for clips of ``shape`` ``[B, 3, T, H, W]`` (see the module
    docstring); the model must already be in the mode to explain (eval). Cached per model, clip shape, device and
    dtype while the weights of the feature extractor stay the same."""
    size = tuple(int(s) for s in shape[2:])
    key = (size, tuple(grid), str(device), str(dtype))
    fingerprint = _weights_fingerprint(model)
    known, cache = _CACHE.get(model, (None, {}))
    if fingerprint is not None and known == fingerprint and key in cache:
        return cache[key]
    centres = cell_centres(grid, size)
    try:
        with torch.enable_grad():
            # A fixed noise clip, not zeros: at zero input a freshly initialised ReLU network sits exactly at its kinks.
            noise = torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(0), dtype=torch.float32)
            clip = noise.to(device=device, dtype=dtype).requires_grad_(True)
            features = _features_fn(model)(clip)
            mid = tuple(n // 2 for n in grid)
            if features.requires_grad and tuple(features.shape[2:]) == tuple(grid):
                (grad,) = torch.autograd.grad(features[0, :, mid[0], mid[1], mid[2]].sum(), clip, allow_unused=True)
            else:
                grad = None
    except RuntimeError:  # e.g. an operation without a derivative
        grad = None
    if grad is not None:
        magnitude = grad[0].detach().abs().sum(0).double().cpu()  # [T, H, W]
        if magnitude.sum() > 0:
            measured = []
            for axis, (n, length) in enumerate(zip(grid, size)):
                profile = magnitude.sum(dim=tuple(d for d in range(3) if d != axis))
                centre = float((profile * torch.arange(length, dtype=torch.float64)).sum() / profile.sum())
                measured.append(centre + (length / n) * (torch.arange(n, dtype=torch.float64) - mid[axis]))
            centres = tuple(measured)  # type: ignore[assignment]
    if fingerprint is not None:
        if known != fingerprint:
            cache = {}
        cache[key] = centres
        _CACHE[model] = (fingerprint, cache)
    return centres


def _interpolation_matrix(centres: torch.Tensor, length: int) -> torch.Tensor:
    """``[length, n]``: linear interpolation between ``centres`` (increasing), edge values held outside."""
    n = centres.numel()
    x = torch.arange(length, dtype=torch.float64)
    matrix = torch.zeros(length, n, dtype=torch.float64)
    if n == 1:
        return matrix.add_(1.0)
    right = torch.searchsorted(centres.contiguous(), x, right=True).clamp(1, n - 1)  # first centre > x (clamped)
    left = right - 1
    span = (centres[right] - centres[left]).clamp_min(1e-12)
    frac = ((x - centres[left]) / span).clamp(0.0, 1.0)
    rows = torch.arange(length)
    matrix[rows, left] = 1 - frac
    matrix[rows, right] += frac
    return matrix


def upsample(maps: torch.Tensor, centres: TokenCentres, size: tuple[int, int, int]) -> torch.Tensor:
    """``[..., T', H', W'] -> [..., T, H, W]``: trilinear interpolation between the token centres (float32)."""
    mt, mh, mw = (_interpolation_matrix(c, length).float() for c, length in zip(centres, size))
    return torch.einsum("...ijk,ti,hj,wk->...thw", maps.float(), mt, mh, mw)
