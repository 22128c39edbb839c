"""The model spec: the JSON recipe that rebuilds a wrapped model's architecture (random weights).

::

    {"backbone": "torchvision/r2plus1d_18" | None,   # registered name; None = a module taghead does not know
     "backbone_kwargs": {...},                       # builder arguments (JSON)
     "adapter": "torchvision_video_resnet",          # adapter name (taghead.list_adapters())
     "adapter_kwargs": {...},                        # e.g. {"feature_layer": "layer4", "prune": true}
     "head": "tag" | None,                           # registered head name; None = custom factory
     "head_config": {...} | None,                    # head.get_config(): rebuilds the head
     "freeze_backbone": false}

:func:`build_parts` turns a spec into the feature extractor and the head; :class:`~taghead.VideoClassifier`
joins them (``VideoClassifier.from_spec``, :func:`taghead.models.wrap.build_from_spec`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..adapters import FeatureExtractor, adapt
from ..backbones.registry import create_backbone
from ..config import DataConfig
from ..heads.registry import get_head_class

__all__ = ["SPEC_KEYS", "build_parts", "build_feature_extractor"]

SPEC_KEYS = ("backbone", "backbone_kwargs", "adapter", "adapter_kwargs", "head", "head_config", "freeze_backbone")


def build_feature_extractor(spec: dict[str, Any], backbone: nn.Module | None = None) -> FeatureExtractor:
    """The feature extractor a spec describes (its ``backbone``, ``backbone_kwargs``, ``adapter`` and
    ``adapter_kwargs``), with random weights; ``backbone`` as in :func:`build_parts`."""
    if spec["backbone"] is None:
        if backbone is None:
            raise ValueError("this spec has a user-supplied backbone (spec['backbone'] is None): pass backbone=, "
                             "a freshly built module of the same architecture")
        model = backbone
    else:
        if backbone is not None:
            raise ValueError(f"the spec builds its backbone {spec['backbone']!r} by name; do not pass backbone=")
        model = create_backbone(spec["backbone"], **dict(spec["backbone_kwargs"] or {}))

    adapter_kwargs = dict(spec["adapter_kwargs"] or {})
    callable_name = adapter_kwargs.pop("callable", None)
    if isinstance(model, FeatureExtractor):
        if spec["adapter"] not in (None, model.adapter_name):
            raise ValueError(f"the spec's adapter is {spec['adapter']!r}, the given extractor is {model.adapter_name!r}")
        return model
    if callable_name is not None:
        raise ValueError(
            f"this model's features came from the callable {callable_name!r}, which a spec cannot store; pass "
            f"backbone=taghead.adapters.adapt(model, feature_layer={callable_name.rsplit('.', 1)[-1]})"
        )
    return adapt(model, adapter=spec["adapter"], **adapter_kwargs)


def build_parts(
    spec: dict[str, Any],
    data_config: DataConfig | dict[str, Any],
    backbone: nn.Module | None = None,
    head: nn.Module | None = None,
) -> tuple[FeatureExtractor, nn.Module, DataConfig]:
    """The feature extractor, the head and the data config a spec describes, with random weights.

    Args:
        spec: a :attr:`VideoClassifier.spec` (possibly read back from JSON).
        data_config: the model's :class:`DataConfig` (or its dict).
        backbone: the backbone module when ``spec["backbone"]`` is ``None`` (a fresh instance of the
            same architecture), or a ready :class:`~taghead.adapters.FeatureExtractor` (needed when the
            spec's features came from a callable ``feature_layer``).
        head: the head module when ``spec["head"]`` is ``None`` (a custom head factory was used).
    """
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}; expected the keys {list(SPEC_KEYS)}")
    if isinstance(data_config, dict):
        data_config = DataConfig.from_dict(data_config)
    if not isinstance(data_config, DataConfig):
        raise TypeError(f"data_config must be a DataConfig or a dict, got {type(data_config).__name__}")

    extractor = build_feature_extractor(spec, backbone)
    if spec["head"] is None or spec["head_config"] is None:
        if head is None:
            why = ("spec['head'] is None: a custom head factory" if spec["head"] is None
                   else f"spec['head'] is {spec['head']!r} but spec['head_config'] is None")
            raise ValueError(f"this spec cannot rebuild its head ({why}): pass head=, a module of the same "
                             "architecture")
        head_module = head
    else:
        if head is not None:
            raise ValueError(f"the spec builds its head {spec['head']!r} by name; do not pass head=")
        head_module = get_head_class(spec["head"])(**spec["head_config"])

    in_channels, grid = getattr(head_module, "in_channels", None), getattr(head_module, "grid", None)
    if in_channels is not None and grid is not None:
        shape = extractor.feature_shape(data_config.num_frames, data_config.crop_size)
        if shape[0] != in_channels or (tuple(shape[1:]) != tuple(grid) and not getattr(head_module, "dynamic_size", True)):
            raise ValueError(
                f"the backbone gives feature maps [B, {shape[0]}, {shape[1]}, {shape[2]}, {shape[3]}] for "
                f"{data_config.num_frames} frames at {data_config.crop_size}px, but the head expects "
                f"[B, {in_channels}, {grid[0]}, {grid[1]}, {grid[2]}]: spec and data config disagree"
            )
    extractor.clip = (data_config.num_frames, data_config.crop_size)
    if spec["freeze_backbone"]:
        extractor.freeze()
    return extractor, head_module, data_config
