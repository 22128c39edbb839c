"""Pretrained configurations: where a registered model's weights come from and what data they expect."""

from __future__ import annotations

from ..config import PretrainedCfg

__all__ = ["PretrainedCfg", "PRETRAINED_CFGS", "TAG_HEAD_CITATION", "REFERENCE_LICENSE", "reference_cfg"]

TAG_HEAD_CITATION = """@inproceedings{taghead2026,
  title     = {TAG-Head: Time-Aligned Graph Head for Fine-Grained Action Recognition},
  booktitle = {International Conference on Pattern Recognition (ICPR)},
  year      = {2026},
  note      = {arXiv:2604.11498}
}"""
"""BibTeX of the TAG-Head paper (ICPR 2026, arXiv 2604.11498)."""

REFERENCE_LICENSE = "mit"
"""Licence of the authors' reference implementation (and so of the checkpoints it trains)."""

_KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
_KINETICS_STD = (0.22803, 0.22145, 0.216989)


def _reference_source(preset: str, filename: str) -> str:
    return (
        f"`{filename}` is the checkpoint the TAG-Head authors train and name for this preset (a PyTorch state "
        "dict of their reference model; their reference implementation is MIT-licensed). Their repository's "
        "weights page lists it with its scores, but its download link is still \"to be added\": no public copy "
        f"exists yet. If you have the file, convert it with `taghead convert {filename} --preset {preset} --out "
        f"tag_r2plus1d_34_{preset}` and load the folder with `taghead.from_pretrained('tag_r2plus1d_34_{preset}')`, "
        f"or pass `pretrained_cfg_overlay=dict(file='{filename}')` (the .pth itself or the converted folder) to "
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
    """The pretrained config of the reference TAG-Head (R(2+1)D-34 backbone) for ``preset``.

    Args:
        preset: ``"haa500"``, ``"gym99"`` or ``"gym288"``.
    """
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
        "No TAG-Head weights exist for this architecture: train the head on your data "
        f"(`taghead train`). The backbone alone has public Kinetics-400 weights ({backbone_weights}); the "
        "input settings here are the ones those weights expect, and the default classifier width is the "
        "Kinetics-400 label space."
    )


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
"""Pretrained configs of the built-in registered models, by model name."""
