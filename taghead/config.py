"""Plain configurations: the clip a backbone expects (``DataConfig``) and where a model's weights come from
(``PretrainedCfg``, which reads as timm's ``pretrained_cfg`` mapping too)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .limits import check_clip_size

__all__ = ["DataConfig", "PretrainedCfg"]


def _check_positive_int(name: str, value: Any, expected: str = "an int >= 1") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DataConfig.{name} must be {expected}, got {value!r} ({type(value).__name__})")


def _rgb(name: str, values: Any, *, positive: bool) -> tuple[float, float, float]:
    """``values`` as 3 floats (one per RGB channel); strings, booleans and other types are refused, not converted."""
    expected = f"3 finite real numbers (RGB){' > 0' if positive else ''}"
    ok = isinstance(values, (tuple, list)) and len(values) == 3 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    if not ok or (positive and any(v <= 0 for v in values)):
        raise ValueError(f"DataConfig.{name} must be {expected}, got {values!r} ({type(values).__name__})")
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass
class DataConfig:
    """What the data pipeline must feed a model.

    A clip may hold at most :data:`~taghead.limits.MAX_CLIP_ELEMENTS` values per channel
    (``num_frames * max(crop_size, resize_size)**2``; 64 frames at 2048 px).

    Attributes:
        num_frames: frames per clip, sampled uniformly over the whole video.
        crop_size: side of the square crop, in pixels.
        resize_size: shorter side the frames are resized to before cropping (``None``: no resize).
        mean: per-channel mean subtracted from pixel values scaled to ``[0, 1]``.
        std: per-channel standard deviation the centred values are divided by.
    """

    num_frames: int = 16
    crop_size: int = 112
    resize_size: int | None = 128
    mean: tuple[float, float, float] = field(default=(0.45, 0.45, 0.45))
    std: tuple[float, float, float] = field(default=(0.225, 0.225, 0.225))

    def __post_init__(self) -> None:
        _check_positive_int("num_frames", self.num_frames)
        _check_positive_int("crop_size", self.crop_size)
        if self.resize_size is not None:
            _check_positive_int("resize_size", self.resize_size, "None or an int >= 1")
        check_clip_size(self.num_frames, max(self.crop_size, self.resize_size or 0))
        self.mean = _rgb("mean", self.mean, positive=False)
        self.std = _rgb("std", self.std, positive=True)

    def with_clip(self, num_frames: int | None = None, crop_size: int | None = None) -> DataConfig:
        """A copy for another clip; a new crop keeps the resize-to-crop ratio (``resize_size`` scaled with it).

        Args:
            num_frames: frames per clip (``None``: unchanged).
            crop_size: crop side in pixels (``None``: unchanged).
        """
        changes: dict[str, Any] = {}
        if num_frames is not None:
            changes["num_frames"] = num_frames
        if crop_size is not None and crop_size != self.crop_size:
            _check_positive_int("crop_size", crop_size)
            changes["crop_size"] = crop_size
            if self.resize_size is not None:
                changes["resize_size"] = round(crop_size * self.resize_size / self.crop_size)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``config.json`` stores under ``data_config``)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """The config :meth:`to_dict` wrote (read from ``config.json``); unknown fields and bad values are errors.

        Args:
            d: the fields, as :meth:`to_dict` wrote them.
        """
        if not isinstance(d, dict):
            raise TypeError(f"a DataConfig dict must be a dict, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DataConfig fields {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


#: The keys of timm's ``pretrained_cfg`` that a :class:`PretrainedCfg` computes from its fields, and ``num_frames``.
TIMM_KEYS = ("input_size", "num_frames", "interpolation", "mean", "std", "crop_pct", "crop_mode", "num_classes",
             "classifier")


@dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """What a registered model's weights are and where they come from (timm's ``pretrained_cfg``).

    Also a read-only mapping in timm's format, so that timm's utilities can read it as they read a timm
    model's ``pretrained_cfg`` (``timm.data.resolve_data_config``, ``auto_group_layers``): ``cfg["input_size"]``
    is ``(3, crop_size, crop_size)`` (one frame, timm's ``(C, H, W)``); ``cfg["num_frames"]`` the frames per
    clip (the video axis timm has no key for); ``cfg["crop_pct"]`` is ``crop_size / resize_size`` (timm resizes
    the shorter side to ``crop_size / crop_pct``; ``1.0`` without resize); ``cfg["interpolation"]`` is
    ``"bilinear"`` and ``cfg["crop_mode"]`` ``"center"`` (what :mod:`taghead.data` does); ``mean``, ``std``,
    ``num_classes`` and ``classifier`` are the fields. The other fields are keys too (:data:`TIMM_KEYS` come
    first when iterating).

    Attributes:
        num_classes: classifier width of the weights (and the model's default).
        num_frames: frames per clip the weights expect (see :class:`~taghead.DataConfig`).
        crop_size: crop side the weights expect, in pixels.
        resize_size: shorter side frames are resized to before cropping (``None``: no resize).
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        label_names: class names in classifier order, when published.
        hf_hub_id: Hugging Face Hub repository holding a taghead folder (``save_pretrained`` layout).
        file: local weights: a taghead folder, a ``.safetensors`` file, or a reference ``.pth``
            (converted on the fly, see :mod:`taghead.convert`).
        source: where the weights come from, in words (shown when none are available).
        license: licence identifier of the weights.
        citation: BibTeX to cite for the weights.
        dataset: dataset the weights were trained on.
        metrics: results reported for the weights (paper numbers, or what ``taghead train`` measured; in percent).
        split: the split of ``dataset`` the metrics were measured on (``"validation"`` for a training run's
            ``best/``), when known.
        epoch: the training epoch after which the weights were saved (a training run's ``best/``), when known.
        preset: the reference TAG-Head preset (``"haa500"``, ``"gym99"``, ``"gym288"``), if any.
        source_file: name of the reference file the weights were converted from, if any.
        classifier: module path of the final classifier in the model (timm's key; ``"head.fc"`` for taghead's
            heads).
    """

    num_classes: int
    num_frames: int
    crop_size: int
    resize_size: int | None = None
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    label_names: tuple[str, ...] | None = None
    hf_hub_id: str | None = None
    file: str | None = None
    source: str = ""
    license: str | None = None
    citation: str | None = None
    dataset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    split: str | None = None
    epoch: int | None = None
    preset: str | None = None
    source_file: str | None = None
    classifier: str | None = "head.fc"

    @property
    def has_weights(self) -> bool:
        """Whether the config points at weights that can be loaded (a Hub repo or a local file)."""
        return bool(self.hf_hub_id or self.file)

    def __post_init__(self) -> None:
        self.data_config()  # the input fields follow DataConfig's rules (config.json content is untrusted)
        metrics = self.metrics
        if not isinstance(metrics, dict) or not all(
                isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool) for k, v in metrics.items()):
            raise ValueError(f"PretrainedCfg.metrics must be a dict of metric name -> number (e.g. "
                             f"{{'top1_accuracy': 86.1}}), got {metrics!r}")
        if self.epoch is not None and (isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or self.epoch < 0):
            raise ValueError(f"PretrainedCfg.epoch must be None or an int >= 0, got {self.epoch!r}")
        if self.split is not None and not isinstance(self.split, str):
            raise ValueError(f"PretrainedCfg.split must be None or a str, got {self.split!r}")

    # -- timm's mapping -----------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key == "input_size":
            return (3, self.crop_size, self.crop_size)
        if key == "interpolation":
            return "bilinear"
        if key == "crop_pct":
            return self.crop_size / self.resize_size if self.resize_size else 1.0
        if key == "crop_mode":
            return "center"
        if key in self._field_names():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from TIMM_KEYS
        yield from (name for name in self._field_names() if name not in TIMM_KEYS)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def data_config(self) -> DataConfig:
        """The :class:`DataConfig` of the input the weights expect."""
        return DataConfig(num_frames=self.num_frames, crop_size=self.crop_size, resize_size=self.resize_size,
                          mean=self.mean, std=self.std)

    def with_overlay(self, overlay: dict[str, Any] | None) -> PretrainedCfg:
        """A copy with the fields in ``overlay`` replaced; unknown fields are an error.

        Args:
            overlay: field names and their new values (``None``: no change).
        """
        if not overlay:
            return self
        if not isinstance(overlay, dict):
            raise TypeError(f"pretrained_cfg_overlay must be a dict, got {type(overlay).__name__}")
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overlay) - names)
        if unknown:
            raise ValueError(f"unknown pretrained_cfg_overlay fields {unknown}; expected some of {sorted(names)}")
        values = dict(overlay)
        if "file" in values and values["file"] is not None:
            values["file"] = str(values["file"])
        if values.get("label_names") is not None:
            values["label_names"] = tuple(values["label_names"])
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what ``config.json`` stores under ``pretrained_cfg``).

        ``file`` is left out: a local path means nothing elsewhere and would leak the saving machine's
        folders into a shared or pushed ``config.json``.
        """
        d = dataclasses.asdict(self)
        del d["file"]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["label_names"] = list(self.label_names) if self.label_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainedCfg:
        """The config :meth:`to_dict` wrote (read from ``config.json``); unknown fields are an error.

        Args:
            d: the fields, as :meth:`to_dict` wrote them.
        """
        if not isinstance(d, dict):
            raise TypeError(f"a pretrained_cfg dict must be a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown pretrained_cfg fields {unknown}")
        values = dict(d)
        for key in ("mean", "std", "label_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
