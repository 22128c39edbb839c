"""Pretrained configurations: where a registered model's weights come from and what data they expect."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig

__all__ = ["PretrainedCfg", "PRETRAINED_CFGS", "TAG_HEAD_CITATION", "REFERENCE_LICENSE", "reference_cfg"]

#: BibTeX of the TAG-Head paper (ICPR 2026, arXiv 2604.11498).
TAG_HEAD_CITATION = """@inproceedings{taghead2026,
  title     = {TAG-Head: Time-Aligned Graph Head for Fine-Grained Action Recognition},
  booktitle = {International Conference on Pattern Recognition (ICPR)},
  year      = {2026},
  note      = {arXiv:2604.11498}
}"""

#: Licence of the authors' reference implementation and its released checkpoints.
REFERENCE_LICENSE = "mit"

_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
_KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class PretrainedCfg:
    """What a registered model's weights are and where they come from (timm's ``pretrained_cfg``).

    Attributes:
        num_classes: classifier width of the weights (and the model's default).
        num_frames, crop_size, resize_size, mean, std: the input the weights expect
            (see :class:`~taghead.DataConfig`).
        label_names: class names in classifier order, when published.
        hf_hub_id: Hugging Face Hub repository holding a taghead folder (``save_pretrained`` layout).
        file: local weights: a taghead folder, a ``.safetensors`` file, or a reference ``.pth``
            (converted on the fly, see :mod:`taghead.convert`).
        source: where the weights come from, in words (shown when none are available).
        license, citation: licence identifier and BibTeX of the weights.
        dataset: dataset the weights were trained on.
        metrics: results reported for the weights (paper numbers, in percent).
        preset: the reference TAG-Head preset (``"haa500"``, ``"gym99"``, ``"gym288"``), if any.
        source_file: name of the reference file the weights were converted from, if any.
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
    preset: str | None = None
    source_file: str | None = None

    @property
    def has_weights(self) -> bool:
        """Whether the config points at weights that can be loaded (a Hub repo or a local file)."""
        return bool(self.hf_hub_id or self.file)

    def data_config(self) -> DataConfig:
        return DataConfig(num_frames=self.num_frames, crop_size=self.crop_size, resize_size=self.resize_size,
                          mean=self.mean, std=self.std)

    def with_overlay(self, overlay: dict[str, Any] | None) -> PretrainedCfg:
        """A copy with the fields in ``overlay`` replaced; unknown fields are an error."""
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
        """JSON-serialisable form (what ``config.json`` stores under ``pretrained_cfg``)."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["label_names"] = list(self.label_names) if self.label_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainedCfg:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown pretrained_cfg fields {unknown}")
        values = dict(d)
        for key in ("mean", "std", "label_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _reference_source(preset: str, filename: str) -> str:
    return (
        f"The TAG-Head authors released `{filename}` (a PyTorch state dict of their reference model, MIT "
        f"licence) with their public reference implementation. Download it from there, convert it with "
        f"`taghead convert {filename} --preset {preset} --out tag_r2plus1d_34_{preset}`, then load the folder "
        f"with `taghead.from_pretrained('tag_r2plus1d_34_{preset}')`, or pass "
        f"`pretrained_cfg_overlay=dict(file='{filename}')` (the .pth itself or the converted folder) to "
        "`taghead.create_model`. No Hugging Face Hub repository hosts these weights."
    )


_REFERENCE_FILES = {"haa500": "haa500_best.pth", "gym99": "gym99_best.pth", "gym288": "gym288_last.pth"}
_REFERENCE_DATA = {
    # preset: (num_classes, num_frames, dataset, reported metrics in percent)
    "haa500": (500, 32, "haa500", {"top1_accuracy": 86.1}),
    "gym99": (99, 64, "finegym", {"top1_accuracy": 95.6, "mean_class_accuracy": 93.8}),
    "gym288": (288, 64, "finegym", {"top1_accuracy": 92.2, "mean_class_accuracy": 68.6}),
}


def reference_cfg(preset: str) -> PretrainedCfg:
    """The pretrained config of the reference TAG-Head (R(2+1)D-34 backbone) for ``preset``."""
    if preset not in _REFERENCE_DATA:
        raise ValueError(f"unknown reference preset {preset!r}; choose one of {sorted(_REFERENCE_DATA)}")
    num_classes, num_frames, dataset, metrics = _REFERENCE_DATA[preset]
    filename = _REFERENCE_FILES[preset]
    return PretrainedCfg(
        num_classes=num_classes, num_frames=num_frames, crop_size=112, resize_size=128,
        source=_reference_source(preset, filename), license=REFERENCE_LICENSE, citation=TAG_HEAD_CITATION,
        dataset=dataset, metrics=metrics, preset=preset,
    )


def _no_tag_weights(backbone_weights: str) -> str:
    return (
        "No TAG-Head weights have been released for this architecture: train the head on your data "
        f"(`taghead train`). The backbone alone has public Kinetics-400 weights ({backbone_weights}); the "
        "input settings here are the ones those weights expect, and the default classifier width is the "
        "Kinetics-400 label space."
    )


#: Pretrained configs of the built-in registered models, by model name.
PRETRAINED_CFGS: dict[str, PretrainedCfg] = {
    "tag_r2plus1d_34_haa500": reference_cfg("haa500"),
    "tag_r2plus1d_34_gym99": reference_cfg("gym99"),
    "tag_r2plus1d_34_gym288": reference_cfg("gym288"),
    "tag_r2plus1d_18": PretrainedCfg(
        num_classes=400, num_frames=16, crop_size=112, resize_size=128, mean=_KINETICS_MEAN, std=_KINETICS_STD,
        source=_no_tag_weights("torchvision `R2Plus1D_18_Weights.KINETICS400_V1`"), citation=TAG_HEAD_CITATION,
    ),
    "tag_r3d_18": PretrainedCfg(
        num_classes=400, num_frames=16, crop_size=112, resize_size=128, mean=_KINETICS_MEAN, std=_KINETICS_STD,
        source=_no_tag_weights("torchvision `R3D_18_Weights.KINETICS400_V1`"), citation=TAG_HEAD_CITATION,
    ),
    "tag_slowfast_r50": PretrainedCfg(
        num_classes=400, num_frames=32, crop_size=224, resize_size=256,
        source=_no_tag_weights("pytorchvideo model zoo `slowfast_r50`, 8x8 slow / 32 fast frames"),
        citation=TAG_HEAD_CITATION,
    ),
    "tag_x3d_m": PretrainedCfg(
        num_classes=400, num_frames=16, crop_size=224, resize_size=256,
        source=_no_tag_weights("pytorchvideo model zoo `x3d_m`, 16 frames"), citation=TAG_HEAD_CITATION,
    ),
    "tag_i3d_r50": PretrainedCfg(
        num_classes=400, num_frames=8, crop_size=224, resize_size=256,
        source=_no_tag_weights("pytorchvideo model zoo `i3d_r50`, 8 frames"), citation=TAG_HEAD_CITATION,
    ),
}
