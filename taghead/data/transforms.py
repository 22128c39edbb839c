"""Clip transforms as tensor ops: ``uint8 [T, H, W, 3]`` frames in, normalised ``float [3, T, H, W]`` out.

The pipelines follow the reference (sizes, mean and std come from a :class:`~taghead.DataConfig`):

- both: pixel values scaled to ``[0, 1]``; the shorter side resized to ``resize_size`` when it is set
  (antialiased bilinear; the reference resizes while decoding, and so does
  :func:`~taghead.data.load_clip` / :class:`~taghead.data.VideoClipDataset`, which decode the frames
  already shrunk to ``resize_size`` with :func:`~taghead.data.read_clip`'s ``shrink_to``: frames
  whose shorter side already equals ``resize_size`` are not resized again);
- :class:`TrainTransform`: random horizontal flip (p = 0.5), random resized crop to ``crop_size``
  with area scale in ``(0.5, 1.0)`` and aspect ratio exactly 1 (bilinear), normalisation;
- :class:`EvalTransform`: centre crop to ``crop_size``, normalisation.

Normalisation is ``(x - mean) / std`` per channel. It commutes with flips, crops and bilinear
resizing (an affine map per channel versus convex combinations of pixels), so applying it last
gives the reference's result. The same random crop and flip apply to every frame of a clip.
Randomness comes from an optional ``torch.Generator`` (deterministic tests) or torch's global RNG
(which the DataLoader seeds differently in each worker).

Cost: frames that arrive with their shorter side at ``resize_size`` (as the dataset decodes them)
stay ``uint8`` through the crop and the flip, and only the cropped window is converted to float:
at most ``resize_size^2`` pixels per frame, ``crop_size^2`` for evaluation. Frames of another size
are converted to float whole for the resize first.

Building blocks on ``[3, T, H, W]`` clips: :func:`to_float_clip`, :func:`resize_shorter_side`,
:func:`resized_crop` (float clips); :func:`center_crop` and :func:`normalize` (``uint8`` or float);
:func:`sample_crop_box`; and :func:`shorter_side_size`, the frame size after a shorter-side resize.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig

__all__ = [
    "TrainTransform",
    "EvalTransform",
    "build_transform",
    "to_float_clip",
    "resize_shorter_side",
    "center_crop",
    "resized_crop",
    "sample_crop_box",
    "normalize",
    "shorter_side_size",
]


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` with ``min(h, w) == size`` and the aspect ratio of ``height x width`` (longer side rounded)."""
    if height <= width:
        return size, max(1, int(round(width * size / height)))
    return max(1, int(round(height * size / width))), size


def _uint8_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` (numpy or torch) -> the ``uint8 [3, T, H, W]`` view of the same memory."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"expected uint8 frames [T, H, W, 3] (RGB), got {got}")
    return frames.permute(3, 0, 1, 2)


def _unit_float(clip: torch.Tensor) -> torch.Tensor:
    """A ``uint8`` clip scaled to ``float32`` in ``[0, 1]`` (contiguous); a float clip as it is."""
    return clip.contiguous().float().div_(255.0) if clip.dtype == torch.uint8 else clip


def to_float_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` (numpy or torch) -> ``float32 [3, T, H, W]`` in ``[0, 1]``."""
    return _uint8_clip(frames).float().div_(255.0)


def _resized_to_shorter_side(clip: torch.Tensor, size: int | None) -> torch.Tensor:
    """``[3, T, H, W]`` (uint8 or float) with its shorter side at ``size``: unchanged when it already is
    (or ``size`` is ``None``), else scaled to float and resized (antialiased bilinear)."""
    if size is None or shorter_side_size(*clip.shape[-2:], size) == tuple(clip.shape[-2:]):
        return clip
    return resize_shorter_side(_unit_float(clip), size)


def _check_clip(clip: torch.Tensor, uint8: bool = False) -> None:
    """A ``[3, T, H, W]`` tensor of floats (or of ``uint8`` where ``uint8`` allows it); else a ``ValueError``."""
    if (not isinstance(clip, torch.Tensor) or clip.dim() != 4 or clip.shape[0] != 3
            or not (clip.is_floating_point() or (uint8 and clip.dtype == torch.uint8))):
        got = f"{type(clip).__name__} {getattr(clip, 'dtype', '')} {tuple(getattr(clip, 'shape', ()))}"
        raise ValueError(f"expected a {'uint8 or ' if uint8 else ''}float clip [3, T, H, W], got {got}")


def _resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of every frame of ``[3, T, H, W]`` to ``size = (h, w)`` (antialiased when shrinking)."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    frames = clip.transpose(0, 1)  # [T, 3, H, W]: the frames are the batch
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
    return frames.transpose(0, 1)


def resize_shorter_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[3, T, H, W]`` so that ``min(H, W) == size``, keeping the aspect ratio (bilinear)."""
    _check_clip(clip)
    return _resize(clip, shorter_side_size(*clip.shape[-2:], size))


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (a view) of ``uint8`` or float ``[3, T, H, W]`` frames at least that large."""
    _check_clip(clip, uint8=True)
    h, w = clip.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from frames of {h}x{w}; set resize_size >= crop_size")
    top, left = (h - size) // 2, (w - size) // 2
    return clip[..., top:top + size, left:left + size]


def sample_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.5, 1.0),
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> tuple[int, int, int]:
    """A random square ``(top, left, side)`` covering a fraction in ``scale`` of the frame's area.

    The area fraction is drawn uniformly from ``scale`` and the square side is
    ``round(sqrt(fraction * H * W))``; a draw whose square does not fit in the frame is redrawn
    (``attempts`` times, as torchvision's ``RandomResizedCrop``), after which the largest centred
    square is used. The position is uniform over the valid positions.
    """
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    for _ in range(attempts):
        fraction = lo + (hi - lo) * torch.rand((), generator=generator).item()
        side = int(round(math.sqrt(fraction * height * width)))
        if 0 < side <= min(height, width):
            top = int(torch.randint(0, height - side + 1, (), generator=generator))
            left = int(torch.randint(0, width - side + 1, (), generator=generator))
            return top, left, side
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def resized_crop(clip: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """Crop the square ``(top, left, side)`` from every frame of ``[3, T, H, W]`` and resize it to ``size``."""
    _check_clip(clip)
    return _resize(clip[..., top:top + side, left:left + side], (size, size))


def normalize(clip: torch.Tensor, mean: tuple[float, float, float], std: tuple[float, float, float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of ``[3, T, H, W]``, as a new contiguous tensor.

    ``x`` is the clip, or ``clip / 255`` for ``uint8`` (the result is then ``float32``; a float clip keeps
    its dtype). One allocation and two in-place passes: ``x * (1 / (u std)) - mean / std`` with ``u``
    255 or 1.
    """
    _check_clip(clip, uint8=True)
    dtype = clip.dtype if clip.is_floating_point() else torch.float32
    out = torch.empty(clip.shape, dtype=dtype)
    out.copy_(clip)
    unit = 255.0 if clip.dtype == torch.uint8 else 1.0
    std64 = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (unit * std64)).to(dtype).view(3, 1, 1, 1)
    shift = (torch.tensor(mean, dtype=torch.float64) / std64).to(dtype).view(3, 1, 1, 1)
    return out.mul_(scale).sub_(shift)


class EvalTransform:
    """Validation / test pipeline: scale to [0, 1], resize the shorter side, centre crop, normalise.

    Args:
        data_config: sizes, mean and std.
    """

    def __init__(self, data_config: DataConfig) -> None:
        if not isinstance(data_config, DataConfig):
            raise TypeError(f"data_config must be a taghead.DataConfig, got {type(data_config).__name__}")
        self.data_config = data_config

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        cfg = self.data_config
        clip = _resized_to_shorter_side(_uint8_clip(frames), cfg.resize_size)
        return normalize(center_crop(clip, cfg.crop_size), cfg.mean, cfg.std)

    def __repr__(self) -> str:
        return f"EvalTransform({self.data_config})"


class TrainTransform:
    """Training pipeline: scale to [0, 1], resize the shorter side, random flip, random resized crop, normalise.

    Args:
        data_config: sizes, mean and std.
        hflip_p: probability of a horizontal flip (0.5 in the reference; set 0 when left and right
            carry the label, as in the synthetic dataset).
        scale: range of the crop's fraction of the frame area ((0.5, 1.0) in the reference;
            ``(1.0, 1.0)`` keeps the whole frame, resized to the crop size when it is square).
        generator: source of randomness (``None``: torch's global RNG).
    """

    def __init__(
        self,
        data_config: DataConfig,
        hflip_p: float = 0.5,
        scale: tuple[float, float] = (0.5, 1.0),
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(data_config, DataConfig):
            raise TypeError(f"data_config must be a taghead.DataConfig, got {type(data_config).__name__}")
        if not 0.0 <= hflip_p <= 1.0:
            raise ValueError(f"hflip_p must be in [0, 1], got {hflip_p}")
        lo, hi = scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.data_config, self.hflip_p, self.scale, self.generator = data_config, float(hflip_p), (lo, hi), generator

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        cfg = self.data_config
        clip = _resized_to_shorter_side(_uint8_clip(frames), cfg.resize_size)
        flip = torch.rand((), generator=self.generator).item() < self.hflip_p
        height, width = clip.shape[-2:]
        top, left, side = sample_crop_box(height, width, self.scale, self.generator)
        if flip:  # the box drawn on the mirrored clip is the mirrored box of the clip: crop, then mirror the crop
            left = width - left - side
        window = clip[..., top:top + side, left:left + side]
        if flip:
            window = window.flip(-1)
        if side != cfg.crop_size:
            window = _resize(_unit_float(window), (cfg.crop_size, cfg.crop_size))
        return normalize(window, cfg.mean, cfg.std)

    def __repr__(self) -> str:
        return f"TrainTransform({self.data_config}, hflip_p={self.hflip_p}, scale={self.scale})"


def build_transform(
    data_config: DataConfig,
    train: bool,
    *,
    hflip_p: float = 0.5,
    scale: tuple[float, float] = (0.5, 1.0),
    generator: torch.Generator | None = None,
) -> TrainTransform | EvalTransform:
    """:class:`TrainTransform` when ``train`` else :class:`EvalTransform`.

    Args:
        data_config: sizes, mean and std.
        train: the training transform (random crop and flip).
        hflip_p: probability of a horizontal flip (training only).
        scale: range of the crop's fraction of the frame area (training only).
        generator: source of randomness (``None``: torch's global RNG).
    """
    if train:
        return TrainTransform(data_config, hflip_p=hflip_p, scale=scale, generator=generator)
    return EvalTransform(data_config)
