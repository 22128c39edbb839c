"""The built-in registered models: TAG-Head on the reference R(2+1)D-34 and on common video backbones.

=========================  ==================================  =======  =====  ===================
model name                 backbone                            frames   crop   weights
=========================  ==================================  =======  =====  ===================
``tag_r2plus1d_34_haa500``  ``taghead/r2plus1d_34`` (IG-65M)     32       112    reference (convert)
``tag_r2plus1d_34_gym99``   ``taghead/r2plus1d_34``              64       112    reference (convert)
``tag_r2plus1d_34_gym288``  ``taghead/r2plus1d_34``              64       112    reference (convert)
``tag_r2plus1d_18``         ``torchvision/r2plus1d_18``          16       112    none
``tag_r3d_18``              ``torchvision/r3d_18``               16       112    none
``tag_slowfast_r50``        ``pytorchvideo/slowfast_r50``        32       224    none
``tag_x3d_m``               ``pytorchvideo/x3d_m``               16       224    none
``tag_i3d_r50``             ``pytorchvideo/i3d_r50``             8        224    none
=========================  ==================================  =======  =====  ===================

The reference presets use the exact heads of the paper (2 post-norm layers, 8 heads, dropout 0.5,
feed-forward 512 / 1024 / 2048, APPNP K=2, alpha=0.1); the others use the same head defaults.
``create_model(name, pretrained_backbone=True)`` starts the backbone from its default published weights
(IG-65M, 32-frame clips, for the reference presets, as the reference does; Kinetics-400 for the others)
and the head from random ones; the data config stays the registered one (for the reference presets the
reference's mean 0.45 and std 0.225).
"""

from __future__ import annotations

from typing import Any

from ..heads.tag import TAG_PRESETS
from .classifier import VideoClassifier
from .pretrained import PRETRAINED_CFGS, PretrainedCfg
from .registry import register_model
from .wrap import wrap_backbone

__all__: list[str] = []


def _tag_model(backbone: str, num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on the registered ``backbone``, for the input described by ``pretrained_cfg``."""
    num_frames = kwargs.pop("num_frames", pretrained_cfg.num_frames)
    crop_size = kwargs.pop("crop_size", pretrained_cfg.crop_size)
    model = wrap_backbone(backbone, num_classes, head="tag", num_frames=num_frames, crop_size=crop_size, **kwargs)
    # The weights' resize and normalisation; another crop scales the resize with it, as wrap_backbone does.
    model.data_config = pretrained_cfg.data_config().with_clip(num_frames, crop_size)
    return model


def _reference(preset: str, num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    kwargs.setdefault("mlp_dim", TAG_PRESETS[preset]["mlp_dim"])
    return _tag_model("taghead/r2plus1d_34", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_r2plus1d_34_haa500"])
def tag_r2plus1d_34_haa500(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """Reference TAG-Head for HAA500: R(2+1)D-34, 32 frames (4x7x7 tokens), feed-forward 512, 500 classes."""
    return _reference("haa500", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_r2plus1d_34_gym99"])
def tag_r2plus1d_34_gym99(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """Reference TAG-Head for FineGym99: R(2+1)D-34, 64 frames (8x7x7 tokens), feed-forward 1024, 99 classes."""
    return _reference("gym99", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_r2plus1d_34_gym288"])
def tag_r2plus1d_34_gym288(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """Reference TAG-Head for FineGym288: R(2+1)D-34, 64 frames (8x7x7 tokens), feed-forward 2048, 288 classes."""
    return _reference("gym288", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_r2plus1d_18"])
def tag_r2plus1d_18(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on torchvision's R(2+1)D-18 (16 frames, 112x112)."""
    return _tag_model("torchvision/r2plus1d_18", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_r3d_18"])
def tag_r3d_18(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on torchvision's R3D-18 (16 frames, 112x112)."""
    return _tag_model("torchvision/r3d_18", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_slowfast_r50"])
def tag_slowfast_r50(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on pytorchvideo's SlowFast-R50 (32 fast / 8 slow frames, 224x224)."""
    return _tag_model("pytorchvideo/slowfast_r50", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_x3d_m"])
def tag_x3d_m(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on pytorchvideo's X3D-M (16 frames, 224x224)."""
    return _tag_model("pytorchvideo/x3d_m", num_classes, pretrained_cfg, **kwargs)


@register_model(pretrained_cfg=PRETRAINED_CFGS["tag_i3d_r50"])
def tag_i3d_r50(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs: Any) -> VideoClassifier:
    """TAG-Head on pytorchvideo's I3D-R50 (8 frames, 224x224)."""
    return _tag_model("pytorchvideo/i3d_r50", num_classes, pretrained_cfg, **kwargs)
