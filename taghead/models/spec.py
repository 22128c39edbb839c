"""The model spec: the JSON recipe that rebuilds a wrapped model's architecture (random weights).

::

    {"backbone": "torchvision/r2plus1d_18" | None,   # registered name; None = a module taghead does not know
     "backbone_kwargs": {...},                       # builder arguments (JSON)
     "adapter": "torchvision_video_resnet",          # adapter name (taghead.list_adapters())
     "adapter_kwargs": {...},                        # e.g. {"feature_layer": "layer4", "prune": true}
     "head": "tag" | None,                           # registered head name; None = custom factory
     "head_config": {...} | None,                    # head.get_config(): rebuilds the head
     "freeze_backbone": false,
     # optional (absent in older configs):
     "backbone_weights": {"tag": ..., "source": ..., "filename": ..., "license": ..., "dataset": ...,
                          "revision": ...  # Hub repositories only: the commit the files came from
                          } | None,
     "batchnorm": {"momentum": 0.1 | None, "eps": 1e-5 | None, "freeze_stats": false} | None}

``backbone_weights`` is provenance only: the published weights (or the base name of the local file) the
backbone started from; rebuilding never downloads them (the saved state dict holds the trained weights).
``batchnorm`` records the backbone's BatchNorm settings when they were changed from the architecture's
(:func:`taghead.layers.configure_batchnorm`; ``freeze_stats``: running statistics kept fixed in training).

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
from ..layers.batchnorm import check_batchnorm_options, configure_batchnorm

__all__ = ["SPEC_KEYS", "OPTIONAL_SPEC_KEYS", "build_parts", "build_feature_extractor", "batchnorm_spec",
           "apply_batchnorm_spec", "check_backbone_weights"]

SPEC_KEYS = ("backbone", "backbone_kwargs", "adapter", "adapter_kwargs", "head", "head_config", "freeze_backbone")
"""The keys every spec holds: how to rebuild the backbone, its adapter and the head."""
OPTIONAL_SPEC_KEYS = ("backbone_weights", "batchnorm")
"""Keys a spec may lack (configs saved before they existed); ``None`` when absent."""
_PROVENANCE_KEYS = ("tag", "source", "filename", "license", "dataset")
#: Provenance keys only some starts have (``revision``: the commit of a Hub repository's files).
_OPTIONAL_PROVENANCE_KEYS = ("revision",)


def batchnorm_spec(momentum: float | None = None, eps: float | None = None,
                   freeze_stats: bool = False) -> dict[str, Any] | None:
    """The spec's ``batchnorm`` entry for these options (``None`` when they change nothing); checked.

    Args:
        momentum: BatchNorm momentum (``None``: the architecture's).
        eps: BatchNorm epsilon (``None``: the architecture's).
        freeze_stats: keep the running statistics fixed during training.
    """
    check_batchnorm_options(momentum, eps)
    if momentum is None and eps is None and not freeze_stats:
        return None
    return {"momentum": None if momentum is None else float(momentum), "eps": None if eps is None else float(eps),
            "freeze_stats": bool(freeze_stats)}


def apply_batchnorm_spec(extractor: FeatureExtractor, settings: dict[str, Any] | None) -> None:
    """Give the backbone's BatchNorm layers the spec's ``batchnorm`` settings (``None``: leave them).

    Args:
        extractor: the feature extractor.
        settings: the spec's ``batchnorm`` entry.
    """
    if settings is None:
        return
    if not isinstance(settings, dict) or set(settings) != {"momentum", "eps", "freeze_stats"}:
        raise ValueError(f"spec['batchnorm'] must be None or a dict with momentum, eps and freeze_stats, got {settings!r}")
    configure_batchnorm(extractor.model, momentum=settings["momentum"], eps=settings["eps"])
    if settings["freeze_stats"]:
        extractor.freeze_bn_stats()


def check_backbone_weights(provenance: Any) -> dict[str, Any] | None:
    """The spec's ``backbone_weights`` entry checked: ``None`` or a dict of the provenance keys (str or None; a
    Hub repository's also ``revision``), whose ``filename`` is a base name (never a path).

    Args:
        provenance: the entry to check.
    """
    if provenance is None:
        return None
    ok = isinstance(provenance, dict) and set(_PROVENANCE_KEYS) <= set(provenance) <= {
        *_PROVENANCE_KEYS, *_OPTIONAL_PROVENANCE_KEYS} and all(v is None or isinstance(v, str) for v in provenance.values())
    if not ok or "/" in str(provenance.get("filename") or "") or "\\" in str(provenance.get("filename") or ""):
        raise ValueError(f"spec['backbone_weights'] must be None or a dict of {list(_PROVENANCE_KEYS)} (strings or "
                         f"null; filename a base name), got {provenance!r}")
    return dict(provenance)


def build_feature_extractor(spec: dict[str, Any], backbone: nn.Module | None = None) -> FeatureExtractor:
    """The feature extractor a spec describes (its ``backbone``, ``backbone_kwargs``, ``adapter`` and
    ``adapter_kwargs``), with random weights; ``backbone`` as in :func:`build_parts`.

    Args:
        spec: the model's spec.
        backbone: the backbone module when ``spec["backbone"]`` is ``None``.
    """
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
    check_backbone_weights(spec.get("backbone_weights"))
    apply_batchnorm_spec(extractor, spec.get("batchnorm"))
    if spec["freeze_backbone"]:
        extractor.freeze()
    return extractor, head_module, data_config
