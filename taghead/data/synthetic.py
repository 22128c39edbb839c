r"""A synthetic fine-grained action dataset, rendered on the fly: *which corner flashes first?*

Every clip shows the same kinds of things on a flat mid-grey background: two static grey discs
(clutter), two small coloured squares moving in straight lines (distractor motion), and two short
flashes of random colour (soft blobs, a few frames long): one in the first quarter of the clip,
one in the last quarter, in two neighbouring quadrants of the frame, with random jitter in
position (+-1/16 of the frame) and time. The class is **where** each flash happens and **in which
order**; consecutive classes are the same two places in opposite orders:

====  ==================================
 id   name
====  ==================================
 0    ``top-left then top-right``
 1    ``top-right then top-left``
 2    ``bottom-left then bottom-right``
 3    ``bottom-right then bottom-left``
 4    ``top-left then bottom-left``
 5    ``bottom-left then top-left``
 6    ``top-right then bottom-right``
 7    ``bottom-right then top-right``
====  ==================================

Why a mean-pooled head cannot tell the classes apart: every clip contains the same local events
(an early flash, a late flash, the same clutter and motion, all colours random), so global
statistics (mean colour, motion energy) and the multiset of local space-time patches are the same
for every class; only their absolute place and time differ. A small 3D CNN
(``taghead.backbones.tiny_video_cnn``: receptive field about 9 frames by 33 pixels) sees each flash
on its own (the flashes are at least 10 frames apart, so no receptive field holds both), and it
cannot see *where* in the frame a patch is: the background equals the normalisation mean, i.e.
exactly 0 after normalisation, which is also what the convolutions' zero padding adds, so the
image border is invisible (a textured or noisy background would reveal the border and with it
absolute positions, which is why there is none). The flash positions have the same phase on the
CNN's stride-8 grid in all quadrants (for sizes that are multiples of 16). Mean pooling then discards where and when, and stays at
chance. A head with positional information over the whole feature map (TAG-Head) reads where and
when each flash is and solves the task. Note: flips swap left and right (``top-left then
top-right`` becomes ``top-right then top-left``), so never train on these clips with flip
augmentation; crops would move or cut the flashes.

Clips are deterministic: item ``i`` of a dataset with a given ``seed`` and ``split`` is always the
same clip, whatever the process, worker or order of access. Labels are ``i % num_classes``
(balanced); ``num_classes < 8`` keeps the first classes of the table.

API:

- :class:`SyntheticFineGrainedDataset` ``(num_samples, num_frames=16, size=64, num_classes=8,
  seed=0, split="train", data_config=None)``: ``dataset[i] -> (video float [3, T, H, W] normalised,
  label)``; ``render(i) -> (uint8 [T, H, W, 3], label)``; ``events(i)``: where and when clip ``i``'s
  two flashes are (:class:`FlashEvent`: frames and pixel box), ``event_mask(i)``: the same as a
  ``bool [T, H, W]`` mask; ``class_names``, ``num_classes``, ``data_config`` (the
  :class:`~taghead.DataConfig` a model for it needs); ``write_videos(root)``.
- :func:`write_videos` ``(root, dataset, ...)``: the clips as mp4 files in the folder-per-class
  layout ``root/<class name>/<split>_<index>.mp4`` plus a reference-style split CSV
  ``root/<split>.csv`` (``FileName, Class, TotalFrames, ClassEncoded``), readable with
  :class:`~taghead.data.VideoClipDataset`.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..weights import atomic_output

__all__ = ["SyntheticFineGrainedDataset", "FlashEvent", "write_videos", "SYNTHETIC_CLASSES"]

# Quadrants: 0 = top-left, 1 = top-right, 2 = bottom-right, 3 = bottom-left.
_QUADRANT_CENTRES = ((0, 0), (0, 1), (1, 1), (1, 0))  # (row, column) in {0, 1}

#: ``(name, (quadrant of the first flash, quadrant of the second flash))``; 0..3 = TL, TR, BR, BL.
#: Consecutive classes are the same two places in opposite orders.
SYNTHETIC_CLASSES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("top-left then top-right", (0, 1)),
    ("top-right then top-left", (1, 0)),
    ("bottom-left then bottom-right", (3, 2)),
    ("bottom-right then bottom-left", (2, 3)),
    ("top-left then bottom-left", (0, 3)),
    ("bottom-left then top-left", (3, 0)),
    ("top-right then bottom-right", (1, 2)),
    ("bottom-right then top-right", (2, 1)),
)
"""The classes of the synthetic benchmark: ``(name, (first corner, second corner))``, corners numbered
clockwise from the top left (0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left).
"""

_SPLITS = ("train", "val", "test")
_QUADRANT_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")
#: Half-width of a flash's box in Gaussian sigmas: the blob's opacity at the box edge is exp(-2) ~ 14% of its peak.
_BOX_SIGMAS = 2.0


@dataclass(frozen=True)
class FlashEvent:
    """One flash of a synthetic clip: when and where it is, in the clip's frame and pixel coordinates.

    Attributes:
        order: 0 for the first (early) flash, 1 for the second (late) one.
        corner: the quadrant, ``"top-left"``, ``"top-right"``, ``"bottom-right"`` or ``"bottom-left"``.
        frames: the frame indices in which the flash is visible (consecutive).
        box: ``(x0, y0, x1, y1)``, half-open pixel ranges: ``frame[y0:y1, x0:x1]`` holds every pixel within
            two Gaussian sigmas of the centre in both axes (clipped to the frame).
        centre: ``(x, y)`` of the blob's centre in pixels (pixel ``(i, j)`` has its centre at ``x=j, y=i``).
    """

    order: int
    corner: str
    frames: tuple[int, ...]
    box: tuple[int, int, int, int]
    centre: tuple[float, float]


def _item_seed(seed: int, split: str, index: int) -> int:
    digest = hashlib.blake2b(f"taghead-synthetic:{seed}:{split}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _hue_colour(hue: float) -> np.ndarray:
    """The fully saturated RGB colour of a hue in [0, 1): ``[3]`` in [0, 1]."""
    k = (hue * 6 + np.array([5.0, 3.0, 1.0])) % 6
    return 1 - np.clip(np.minimum(k, 4 - k), 0, 1)


class SyntheticFineGrainedDataset(Dataset):
    """Which-corner-flashes-first clips (see the module docstring), rendered on the fly.

    Args:
        num_samples: number of clips.
        num_frames: frames per clip (at least 8).
        size: height and width in pixels (at least 32, even).
        num_classes: 2 to 8 (the first classes of :data:`SYNTHETIC_CLASSES`).
        seed: dataset seed; with ``split`` and the index it fixes every clip.
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint streams of clips for the same seed.
        data_config: mean and std used to normalise (default :class:`~taghead.DataConfig`'s); its
            ``num_frames`` and ``crop_size`` must match the clips. The background colour is its mean.
    """

    def __init__(
        self,
        num_samples: int,
        num_frames: int = 16,
        size: int = 64,
        num_classes: int = 8,
        seed: int = 0,
        split: str = "train",
        data_config: DataConfig | None = None,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if not isinstance(num_frames, int) or num_frames < 8:
            raise ValueError(f"num_frames must be an int >= 8 (a flash in the first and in the last quarter), got {num_frames!r}")
        if not isinstance(size, int) or size < 32 or size % 2:
            raise ValueError(f"size must be an even int >= 32, got {size!r}")
        if not isinstance(num_classes, int) or not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"num_classes must be an int in [2, {len(SYNTHETIC_CLASSES)}], got {num_classes!r}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if data_config is None:
            data_config = DataConfig(num_frames=num_frames, crop_size=size, resize_size=None)
        elif not isinstance(data_config, DataConfig):
            raise TypeError(f"data_config must be a taghead.DataConfig or None, got {type(data_config).__name__}")
        elif (data_config.num_frames, data_config.crop_size) != (num_frames, size):
            raise ValueError(
                f"data_config expects {data_config.num_frames} frames of {data_config.crop_size}x{data_config.crop_size}, "
                f"but the synthetic clips have {num_frames} frames of {size}x{size}; build the dataset with "
                f"num_frames={data_config.num_frames}, size={data_config.crop_size} or adjust the config"
            )
        self.num_samples, self.num_frames, self.size = num_samples, num_frames, size
        self.num_classes, self.seed, self.split = num_classes, int(seed), split
        self.data_config = data_config
        self.class_names = [name for name, _ in SYNTHETIC_CLASSES[:num_classes]]
        self.labels = [i % num_classes for i in range(num_samples)]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.render(index)
        cfg = self.data_config
        # (x / 255 - mean) / std in numpy: the same values as taghead.data.transforms.normalize, without
        # torch's intra-op threading, which costs more than it saves on arrays this small.
        scale = np.float32(1 / 255) / np.asarray(cfg.std, dtype=np.float32)
        shift = np.asarray(cfg.mean, dtype=np.float32) / np.asarray(cfg.std, dtype=np.float32)
        video = frames.numpy().astype(np.float32) * scale - shift
        return torch.from_numpy(np.ascontiguousarray(video.transpose(3, 0, 1, 2))), label

    def render(self, index: int) -> tuple[torch.Tensor, int]:
        """Clip ``index`` as ``uint8 [T, H, W, 3]`` RGB frames, and its label.

        Args:
            index: the clip's position in the dataset.
        """
        label, rng = self._item(index)
        video = self._render(label, rng)
        return torch.from_numpy(np.clip(np.rint(video * 255), 0, 255).astype(np.uint8)), label

    def events(self, index: int) -> list[FlashEvent]:
        """Where and when the two flashes of clip ``index`` are: ``[first, second]`` (:class:`FlashEvent`).

        Recorded while the clip is rendered again (the same random draws, a few milliseconds), so they
        always match :meth:`render`.

        Args:
            index: the clip's position in the dataset.
        """
        label, rng = self._item(index)
        events: list[FlashEvent] = []
        self._render(label, rng, events)
        return events

    def event_mask(self, index: int, events: Sequence[FlashEvent] | None = None) -> torch.Tensor:
        """``bool [T, H, W]``: true inside a flash's box during that flash's frames.

        Args:
            index: the clip's position in the dataset.
            events: the clip's :meth:`events` when already at hand (spares rendering the clip again).
        """
        mask = torch.zeros(self.num_frames, self.size, self.size, dtype=torch.bool)
        for event in self.events(index) if events is None else events:
            x0, y0, x1, y1 = event.box
            mask[list(event.frames), y0:y1, x0:x1] = True
        return mask

    def _item(self, index: int) -> tuple[int, np.random.Generator]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} clips")
        index %= self.num_samples
        return self.labels[index], np.random.default_rng(_item_seed(self.seed, self.split, index))

    def _render(self, label: int, rng: np.random.Generator, events: list[FlashEvent] | None = None) -> np.ndarray:
        """``float32 [T, S, S, 3]`` in [0, 1] (numpy: single-threaded, fast for small arrays); appends the
        flashes to ``events`` when given."""
        t_len, s = self.num_frames, self.size
        grid = np.arange(s, dtype=np.float32)
        # The background is the normalisation mean: 0 after normalisation, like the CNN's zero padding.
        background = np.asarray(self.data_config.mean, dtype=np.float32)
        video = np.broadcast_to(background, (t_len, s, s, 3)).copy()

        # Static clutter: two grey discs that stay put for the whole clip.
        for _ in range(2):
            cy, cx = rng.uniform(0.1 * s, 0.9 * s, size=2)
            radius = s * rng.uniform(0.03, 0.06)
            level = background + rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.3)
            disc = (grid[:, None] - cy) ** 2 + (grid[None] - cx) ** 2 <= radius**2
            video[:, disc] = level

        # Distractor motion: two small squares moving in straight lines, bouncing off the borders.
        for _ in range(2):
            half = s * rng.uniform(0.03, 0.05)
            pos = rng.random(2) * (s - 2 * half) + half
            angle = 2 * math.pi * rng.random()
            vel = s * rng.uniform(0.01, 0.03) * np.array([math.cos(angle), math.sin(angle)])
            colour = (0.5 * _hue_colour(rng.random()) + 0.5 * rng.random()).astype(np.float32)
            for f in range(t_len):
                rows = np.abs(grid - pos[0]) <= half
                cols = np.abs(grid - pos[1]) <= half
                video[f][np.ix_(rows, cols)] = colour
                pos = pos + vel
                for axis in range(2):
                    if not half <= pos[axis] <= s - half:
                        vel[axis] = -vel[axis]
                        pos[axis] = min(max(pos[axis], half), s - half)

        # The two flashes: `first` in the first quarter of the clip, `second` in the last quarter.
        first, second = SYNTHETIC_CLASSES[label][1]
        quarter = t_len // 4
        duration = max(2, (3 * quarter) // 4)
        envelope = np.sin(np.linspace(0, math.pi, duration + 2)[1:-1]) ** 0.5
        sigma, jitter = 0.05 * s, s / 16
        for order, (quadrant, window_start) in enumerate(((first, 0), (second, t_len - quarter))):
            row, col = _QUADRANT_CENTRES[quadrant]
            cy = s * (0.25 + 0.5 * row) + rng.uniform(-jitter, jitter)
            cx = s * (0.25 + 0.5 * col) + rng.uniform(-jitter, jitter)
            start = window_start + int(rng.integers(quarter - duration + 1))
            if events is not None:
                r = _BOX_SIGMAS * sigma
                box = (max(0, math.ceil(cx - r)), max(0, math.ceil(cy - r)),
                       min(s, math.floor(cx + r) + 1), min(s, math.floor(cy + r) + 1))
                events.append(FlashEvent(order, _QUADRANT_NAMES[quadrant], tuple(range(start, start + duration)), box,
                                         (float(cx), float(cy))))
            blob = np.exp(-((grid[:, None] - cy) ** 2 + (grid[None] - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
            colour = _hue_colour(rng.random()).astype(np.float32)
            for k in range(duration):
                alpha = (0.95 * envelope[k] * blob)[..., None]
                video[start + k] = video[start + k] * (1 - alpha) + colour * alpha
        return np.clip(video, 0, 1, out=video)

    def write_videos(self, root: str | os.PathLike, **kwargs: Any) -> Path:
        """Write every clip as mp4 under ``root`` (see :func:`write_videos`); returns the CSV path.

        Args:
            root: the output folder.
            **kwargs: ``fps``, ``crf``, ``progress`` (see :func:`write_videos`).
        """
        return write_videos(root, self, **kwargs)

    def __repr__(self) -> str:
        return (f"SyntheticFineGrainedDataset(num_samples={self.num_samples}, num_frames={self.num_frames}, "
                f"size={self.size}, num_classes={self.num_classes}, seed={self.seed}, split={self.split!r})")


def write_videos(
    root: str | os.PathLike,
    dataset: SyntheticFineGrainedDataset,
    *,
    fps: int = 8,
    crf: int = 12,
    progress: bool = False,
) -> Path:
    """Encode every clip of ``dataset`` as ``root/<class name>/<split>_<index:05d>.mp4``.

    Also writes the reference-style split file ``root/<split>.csv`` with the columns
    ``FileName, Class, TotalFrames, ClassEncoded`` (``ClassEncoded`` = the dataset's label), so that
    ``VideoClipDataset.from_csv(root / f"{split}.csv", root, ...)`` reads the clips back with the
    same labels. The folder layout sorts class names alphabetically; pass
    ``class_names=dataset.class_names`` to ``VideoClipDataset.from_folder`` to keep this order.
    ``crf`` is the H.264 quality (lower = closer to the rendered frames). Returns the CSV path.

    Args:
        root: the output folder.
        dataset: the clips to encode.
        fps: frame rate of the files.
        crf: H.264 quality (lower = closer to the rendered frames).
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    from .video import write_video

    if not isinstance(dataset, SyntheticFineGrainedDataset):
        raise TypeError(f"dataset must be a SyntheticFineGrainedDataset, got {type(dataset).__name__}")
    root = Path(root)
    rows = []
    for index in tqdm(range(len(dataset)), desc=f"writing {dataset.split} clips", disable=not progress):
        frames, label = dataset.render(index)
        name = f"{dataset.split}_{index:05d}.mp4"
        class_name = dataset.class_names[label]
        write_video(root / class_name / name, frames, fps=fps, crf=crf)
        rows.append({"FileName": name, "Class": class_name, "TotalFrames": frames.shape[0], "ClassEncoded": label})
    csv_path = root / f"{dataset.split}.csv"
    with atomic_output(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["FileName", "Class", "TotalFrames", "ClassEncoded"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path
