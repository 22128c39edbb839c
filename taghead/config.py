"""The data configuration a backbone expects: clip length, crop, normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DataConfig"]


@dataclass
class DataConfig:
    """What the data pipeline must feed a model.

    Attributes:
        num_frames: frames per clip, sampled uniformly over the whole video.
        crop_size: side of the square crop, in pixels.
        resize_size: shorter side the frames are resized to before cropping (``None``: no resize).
        mean, std: per-channel normalisation of pixel values scaled to ``[0, 1]``.
    """

    num_frames: int = 16
    crop_size: int = 112
    resize_size: int | None = 128
    mean: tuple[float, float, float] = field(default=(0.45, 0.45, 0.45))
    std: tuple[float, float, float] = field(default=(0.225, 0.225, 0.225))

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.num_frames < 1 or self.crop_size < 1:
            raise ValueError(f"num_frames and crop_size must be positive, got {self.num_frames}, {self.crop_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean}, {self.std}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DataConfig fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**d)
