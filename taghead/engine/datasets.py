"""In-memory clip sets for the CPU demo, the ablations and ``taghead train --data synthetic``.

Rendering a synthetic clip takes longer than the tiny demo model needs to train on it, so the clips
are rendered once into a ``uint8`` tensor (a quarter of the float32 size) and normalised on access:
``(x / 255 - mean) / std``, as the video pipeline does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..config import DataConfig

__all__ = ["RenderedClips"]


class RenderedClips(Dataset):
    """``uint8`` clips ``[N, T, H, W, 3]`` and labels, served as ``(float [3, T, H, W] normalised, label)``.

    Args:
        frames: ``uint8 [N, T, H, W, 3]`` RGB clips.
        labels: ``N`` class indices.
        class_names: names of the classes.
        data_config: mean and std for the normalisation (its ``num_frames`` and ``crop_size`` must
            match the clips).

    Attributes:
        source: the dataset :meth:`render` rendered the clips from (``None`` otherwise), e.g. for the
            synthetic benchmark's ``events(i)``.
    """

    def __init__(self, frames: torch.Tensor, labels: Sequence[int] | torch.Tensor, class_names: Sequence[str],
                 data_config: DataConfig) -> None:
        if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[-1] != 3:
            got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
            raise ValueError(f"frames must be uint8 [N, T, H, W, 3], got {got}")
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.shape != (frames.shape[0],):
            raise ValueError(f"labels must be [N={frames.shape[0]}], got shape {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise ValueError(f"labels must lie in [0, {len(class_names)}) for {len(class_names)} class names")
        t, h, w = frames.shape[1:4]
        if (data_config.num_frames, data_config.crop_size) != (t, h) or h != w:
            raise ValueError(f"data_config expects {data_config.num_frames} frames of {data_config.crop_size}px, the "
                             f"clips have {t} frames of {h}x{w}")
        self.frames, self.labels = frames, labels
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.data_config = data_config
        self.source: Dataset | None = None
        self._mean = torch.tensor(data_config.mean, dtype=torch.float32).view(3, 1, 1, 1)
        self._std = torch.tensor(data_config.std, dtype=torch.float32).view(3, 1, 1, 1)

    @classmethod
    def render(cls, dataset: Dataset, data_config: DataConfig | None = None, progress: bool = False,
               desc: str = "rendering clips") -> RenderedClips:
        """Render every clip of a dataset with ``render(i) -> (uint8 [T, H, W, 3], label)`` (e.g.
        :class:`taghead.data.SyntheticFineGrainedDataset`) into memory."""
        from tqdm.auto import tqdm

        render = getattr(dataset, "render", None)
        if not callable(render):
            raise TypeError(f"{type(dataset).__name__} has no render(i) -> (uint8 frames [T, H, W, 3], label) method")
        clips, labels = [], []
        for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False):
            frames, label = render(i)
            clips.append(torch.as_tensor(frames))
            labels.append(int(label))
        config = data_config or getattr(dataset, "data_config", None)
        if config is None:
            raise ValueError("pass data_config: the dataset has none")
        rendered = cls(torch.stack(clips), labels, dataset.class_names, config)
        rendered.source = dataset
        return rendered

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.frames[index].permute(3, 0, 1, 2).float().div_(255.0)
        return (clip - self._mean) / self._std, int(self.labels[index])

    def __repr__(self) -> str:
        n, t, h, w, _ = self.frames.shape
        return f"RenderedClips({n} clips of {t}x{h}x{w}, {self.num_classes} classes)"
