"""``wrap_backbone``: any video backbone + a taghead head -> a :class:`VideoClassifier`; and its inverse
``build_from_spec``, which rebuilds the same architecture from the JSON spec a model carries (format:
:mod:`taghead.models.spec`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..adapters import adapt
from ..backbones.recognize import recognize_backbone
from ..backbones.registry import Pretrained, build_backbone, get_backbone_data_config, get_backbone_entry
from ..config import DataConfig
from ..heads.registry import create_head, registered_head_name
from ..hub import json_ready
from .classifier import VideoClassifier
from .spec import SPEC_KEYS, apply_batchnorm_spec, batchnorm_spec

__all__ = ["wrap_backbone", "build_from_spec", "SPEC_KEYS"]


def build_head(head: str | Callable[..., nn.Module], shape: tuple[int, int, int, int], num_classes: int,
               head_kwargs: dict[str, Any], backbone_name: str) -> nn.Module:
    """``create_head`` for the feature map ``shape = (C, t, h, w)`` of ``backbone_name``; its errors say so."""
    channels, t, h, w = shape
    try:
        return create_head(head, channels, t, h, w, num_classes=num_classes, **head_kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"cannot build head {head!r} for the feature map [B, {channels}, {t}, {h}, {w}] of "
                        f"{backbone_name}: {err}") from err


def _recorded_kwargs(name: str, model: nn.Module, given: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments the spec records for a backbone built by name: those given, or for entries that
    record their defaults too (``records_defaults``, e.g. a transformers config), all that shape the module."""
    if name.startswith("timm/"):
        return given
    entry = get_backbone_entry(name)
    if entry.records_defaults and entry.kwargs_from_module is not None:
        return entry.kwargs_from_module(model)
    return given


def wrap_backbone(
    model_or_name: nn.Module | str,
    num_classes: int,
    *,
    head: str | Callable[..., nn.Module] = "tag",
    num_frames: int | None = None,
    crop_size: int | None = None,
    feature_layer: str | Callable[..., Any] | None = None,
    freeze_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    adapter: str | None = None,
    adapter_kwargs: dict[str, Any] | None = None,
    label_names: list[str] | None = None,
    pretrained_backbone: Pretrained | None = None,
    bn_momentum: float | None = None,
    bn_eps: float | None = None,
    freeze_bn_stats: bool = False,
    **head_kwargs: Any,
) -> VideoClassifier:
    """Put a taghead head on a video backbone: ``video -> features [B, C, T, H, W] -> head -> logits``.

    Args:
        model_or_name: a backbone module (modified in place: its pooling and classifier are removed;
            pass ``copy.deepcopy(model)`` to keep the original), or a registered name
            (:func:`taghead.list_backbones`, or ``"timm/<model>"``, optionally ``"name.tag"``; or a Hugging Face
            Transformers repository ``"hf-hub:<owner>/<repo>"``), built with random weights unless
            ``pretrained_backbone`` says otherwise.
            A module of a registered architecture (:func:`taghead.recognize_backbone`: same classes,
            parameters, buffers and settings as the registered builder makes) is recorded by name in
            the spec, so that ``taghead.from_pretrained`` rebuilds it without the module.
        num_classes: classifier outputs.
        head: a registered head name (``"tag"``, ``"meanpool"``, ...), a head class, or a factory
            ``f(in_channels, t, h, w, *, num_classes, **head_kwargs) -> nn.Module``.
        num_frames: frames of the clip the model will see (default: the backbone's data config).
            The head's grid ``(t, h, w)`` is the backbone's feature map for this clip.
        crop_size: crop side of that clip (default: the backbone's data config).
        feature_layer: for models without an adapter: the submodule whose output is the last
            spatio-temporal map (``"layer4"``), or a callable ``(model, video) -> [B, C, T, H, W]``.
        freeze_backbone: no gradients through the backbone, BatchNorm statistics fixed, and the
            backbone left out of :meth:`VideoClassifier.param_groups`.
        backbone_kwargs: builder arguments when the backbone is given by name.
        adapter: force an adapter by name (default: found from the model's class).
        adapter_kwargs: adapter arguments (e.g. ``{"alpha": 4}`` for SlowFast).
        label_names: class names, stored on the model.
        pretrained_backbone: for a backbone given by name: ``True`` (the name's tag, else the
            backbone's default tag; a ``"hf-hub:"`` name's repository), a tag (``"kinetics400_v1"``), the path
            of a weights file, or for the ``transformers/...`` backbones a ``"hf-hub:<repo>"`` id or a local
            folder (see :func:`taghead.create_backbone`). The weights are loaded into the whole backbone before the
            adapter removes its classifier (never into the new head); the model's data config is then
            the weights' (frames and crop as given). ``None``: random weights.
        bn_momentum: set on every BatchNorm layer of the backbone (``None``: the architecture's).
            Momentum in PyTorch's sense (the weight of the current batch).
        bn_eps: set on every BatchNorm layer of the backbone (``None``: the architecture's).
        freeze_bn_stats: keep the backbone's BatchNorm running statistics fixed during training (the
            layers stay in eval mode; all parameters still train).
        head_kwargs: passed to the head (e.g. ``mlp_dim=2048``, ``embed_dim=256``).

    Returns:
        a :class:`VideoClassifier` with ``.backbone`` (a :class:`~taghead.adapters.FeatureExtractor`),
        ``.head``, ``.data_config`` and ``.spec`` (the JSON recipe :func:`build_from_spec` rebuilds).
    """
    backbone_kwargs = dict(backbone_kwargs or {})
    batchnorm = batchnorm_spec(bn_momentum, bn_eps, freeze_bn_stats)
    provenance = None
    if isinstance(model_or_name, str):
        built = build_backbone(model_or_name, False if pretrained_backbone is None else pretrained_backbone,
                               backbone_kwargs, published_width=False)
        name, model, provenance = built.name, built.module, built.provenance
        base_config = built.data_config or get_backbone_data_config(name)  # the weights' clip, else the default
        backbone_kwargs = _recorded_kwargs(name, model, backbone_kwargs)
    elif isinstance(model_or_name, nn.Module):
        if backbone_kwargs:
            raise ValueError("backbone_kwargs apply to a backbone given by name, not to a module")
        if pretrained_backbone is not None:
            raise ValueError("pretrained_backbone applies to a backbone given by name (the module has its weights "
                             "already); load a file into the module yourself, or pass the registered name: "
                             "wrap_backbone('torchvision/r2plus1d_18', num_classes, pretrained_backbone=...)")
        name, model, base_config = None, model_or_name, None
        if not callable(feature_layer):  # a known architecture is recorded by name, before the adapter changes it
            known = recognize_backbone(model)
            name, backbone_kwargs = known.name, dict(known.kwargs)
    else:
        raise TypeError(f"model_or_name must be an nn.Module or a registered backbone name, "
                        f"got {type(model_or_name).__name__}")
    extractor = adapt(model, adapter=adapter, feature_layer=feature_layer, **dict(adapter_kwargs or {}))
    data_config = base_config or extractor.default_data_config()
    data_config = data_config.with_clip(num_frames, crop_size)
    described = name or type(model).__qualname__
    shape = extractor.feature_shape(data_config.num_frames, data_config.crop_size)
    extractor.clip = (data_config.num_frames, data_config.crop_size)
    head_module = build_head(head, shape, num_classes, head_kwargs, described)
    apply_batchnorm_spec(extractor, batchnorm)
    if freeze_backbone:
        extractor.freeze()
    get_config = getattr(head_module, "get_config", None)
    head_name = registered_head_name(head_module)  # the live head: a factory may return a registered head
    spec = {
        "backbone": name,
        "backbone_kwargs": json_ready(backbone_kwargs, "backbone_kwargs"),
        "adapter": extractor.adapter_name,
        "adapter_kwargs": json_ready(extractor.get_config(), "adapter_kwargs"),
        "head": head_name,
        "head_config": json_ready(get_config(), "head config") if (head_name is not None and callable(get_config)) else None,
        "freeze_backbone": bool(freeze_backbone),
        "backbone_weights": provenance,
        "batchnorm": batchnorm,
    }
    return VideoClassifier(extractor, head_module, data_config, spec=spec, label_names=label_names)


def build_from_spec(
    spec: dict[str, Any],
    data_config: DataConfig | dict[str, Any],
    label_names: list[str] | None = None,
    backbone: nn.Module | None = None,
    head: nn.Module | None = None,
) -> VideoClassifier:
    """Rebuild the architecture a spec describes, with random weights (load a state dict afterwards).

    Args:
        spec: a :attr:`VideoClassifier.spec` (possibly read back from JSON).
        data_config: the model's :class:`DataConfig` (or its dict).
        label_names: class names.
        backbone: the backbone module when ``spec["backbone"]`` is ``None`` (a fresh instance of the
            same architecture), or a ready :class:`~taghead.adapters.FeatureExtractor` (needed when the
            spec's features came from a callable ``feature_layer``).
        head: the head module when ``spec["head"]`` is ``None`` (a custom head factory was used).
    """
    return VideoClassifier.from_spec(spec, data_config, label_names=label_names, backbone=backbone, head=head)
