"""Backbones by name (``"torchvision/r2plus1d_18"``, ``"timm/resnet50"``, ...), always randomly initialised.

Pretrained weights are the model registry's business (:func:`taghead.create_model`); this registry
only builds architectures, so that a saved model's spec can rebuild its backbone anywhere. An entry
may also say which class its builder makes and how to read the builder's arguments back from a
module (``model_class``, ``kwargs_from_module``), so that a module of that architecture is recognised
(:mod:`taghead.backbones.recognize`).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from ..config import DataConfig

__all__ = ["register_backbone", "create_backbone", "list_backbones", "get_backbone_data_config", "get_backbone_entry",
           "BackboneEntry", "KwargsReader", "import_extra"]


#: Reads the builder arguments that shape a module (e.g. ``{"num_classes": 10}``) back from a built module.
KwargsReader = Callable[[nn.Module], dict[str, Any]]


@dataclass(frozen=True)
class BackboneEntry:
    """A named backbone: its builder (random weights), default data config, a one-line description, and
    for recognition the class the builder makes (``"package.module:QualName"``) and a reader of the
    builder arguments that change the module's shapes. ``records_defaults``: a spec records every argument
    the reader returns, also those equal to the builder's defaults (a transformers config is recorded whole)."""

    name: str
    builder: Callable[..., nn.Module]
    data_config: DataConfig | None
    description: str
    model_class: str | None = None
    kwargs_from_module: KwargsReader | None = None
    records_defaults: bool = False


_BACKBONES: dict[str, BackboneEntry] = {}
_TIMM_PREFIX = "timm/"


def register_backbone(
    name: str, *, data_config: DataConfig | None = None, description: str = "", model_class: str | None = None,
    kwargs_from_module: KwargsReader | None = None, records_defaults: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``builder(**kwargs) -> nn.Module`` buildable as ``create_backbone(name, **kwargs)``.

    ``data_config`` is the clip the backbone expects by default (used by :func:`taghead.wrap_backbone`
    when the model is given by name); ``None`` leaves it to the adapter. ``model_class``
    (``"package.module:QualName"`` of the class the builder returns) makes modules of that class
    candidates for :func:`taghead.recognize_backbone`; ``kwargs_from_module(module)`` returns the builder
    arguments that shape such a module (say ``{"num_classes": module.fc.out_features}``). With
    ``records_defaults`` a model's spec records all of them, also those equal to the builder's defaults (for
    builders whose defaults live in another library and may change with its version).
    """
    if model_class is not None and (not isinstance(model_class, str) or ":" not in model_class):
        raise ValueError(f"model_class must be a 'package.module:QualName' string, got {model_class!r}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name.startswith(_TIMM_PREFIX):
            raise ValueError(f"names starting with {_TIMM_PREFIX!r} are reserved for timm models")
        if name in _BACKBONES and _BACKBONES[name].builder is not builder:
            raise ValueError(f"a backbone named {name!r} is already registered")
        _BACKBONES[name] = BackboneEntry(name, builder, data_config, description, model_class, kwargs_from_module,
                                         records_defaults)
        return builder

    return decorator


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell pattern (``"pytorchvideo/*"``).

    Every timm model is also available as ``"timm/<timm model name>"`` (not listed here; see
    ``timm.list_models()``).
    """
    names = sorted(_BACKBONES)
    return fnmatch.filter(names, pattern) if pattern else names


def _check_random_init(name: str, kwargs: dict[str, Any]) -> None:
    for key in ("pretrained", "weights"):
        if kwargs.get(key):
            raise ValueError(f"create_backbone({name!r}) builds random weights only; got {key}={kwargs[key]!r}. "
                             "Pretrained models come from taghead.create_model (the model registry).")


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` with random weights (``kwargs`` go to its builder)."""
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a string, got {type(name).__name__}")
    _check_random_init(name, kwargs)
    if name.startswith(_TIMM_PREFIX):
        import timm

        model_name = name[len(_TIMM_PREFIX):]
        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join('timm/' + c for c in close)}?" if close else ""
            raise ValueError(f"unknown timm model {model_name!r}.{hint}")
        kwargs.pop("pretrained", None)
        return timm.create_model(model_name, pretrained=False, **kwargs)
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, list(_BACKBONES), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}.{hint} Registered: {list_backbones()}, plus 'timm/<model>'.")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained", "weights")}
    return _BACKBONES[name].builder(**kwargs)


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of ``name`` (not for ``"timm/..."`` names, which timm builds)."""
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {list_backbones()}")
    return _BACKBONES[name]


def get_backbone_data_config(name: str) -> DataConfig | None:
    """The default data config registered for ``name`` (``None``: the adapter decides)."""
    entry = _BACKBONES.get(name)
    return DataConfig.from_dict(entry.data_config.to_dict()) if entry and entry.data_config else None


# -- built-in backbones ---------------------------------------------------------------------------------

_KINETICS = dict(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
_IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_PTV = dict(mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))


def import_extra(module: str, what: str, extra: str = "video") -> ModuleType:
    """``importlib.import_module(module)``; when its package is missing, a ``ModuleNotFoundError`` that says
    which taghead extra installs it (``pip install 'taghead[video]'``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        package = module.split(".")[0]
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise  # a module that the package itself needs is missing: not ours to explain
        raise ModuleNotFoundError(
            f"{what} needs {package}, which is not installed: pip install 'taghead[{extra}]' (or pip install "
            f"{package})", name=err.name,
        ) from err


def _out_features(path: str, kwarg: str, attribute: str = "out_features") -> KwargsReader:
    """A reader of the classifier width: ``{kwarg: module.<path>.<attribute>}`` (``path`` may index: ``blocks.-1``)."""

    def read(module: nn.Module) -> dict[str, Any]:
        target: Any = module
        for part in path.split("."):
            target = target[int(part)] if part.lstrip("-").isdigit() else getattr(target, part)
        return {kwarg: int(getattr(target, attribute))}

    return read


_TV = "torchvision.models.video."
_TV_CLASSES = {  # class the builder makes, and where its classifier is
    "r3d_18": (_TV + "resnet:VideoResNet", "fc", "out_features"),
    "mc3_18": (_TV + "resnet:VideoResNet", "fc", "out_features"),
    "r2plus1d_18": (_TV + "resnet:VideoResNet", "fc", "out_features"),
    "s3d": (_TV + "s3d:S3D", "classifier.1", "out_channels"),
    "mvit_v1_b": (_TV + "mvit:MViT", "head.1", "out_features"),
    "mvit_v2_s": (_TV + "mvit:MViT", "head.1", "out_features"),
    "swin3d_t": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features"),
    "swin3d_s": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features"),
    "swin3d_b": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features"),
}


def _torchvision(name: str, data_config: DataConfig, description: str) -> None:
    def build(**kwargs: Any) -> nn.Module:
        video = import_extra("torchvision.models.video", f"backbone 'torchvision/{name}'")
        return getattr(video, name)(weights=None, **kwargs)

    build.__name__ = f"torchvision_{name}"
    model_class, path, attribute = _TV_CLASSES[name]
    register_backbone(f"torchvision/{name}", data_config=data_config, description=description,
                      model_class=model_class,
                      kwargs_from_module=_out_features(path, "num_classes", attribute))(build)


def _pytorchvideo(name: str, data_config: DataConfig, description: str) -> None:
    def build(**kwargs: Any) -> nn.Module:
        hub = import_extra("pytorchvideo.models.hub", f"backbone 'pytorchvideo/{name}'")
        return getattr(hub, name)(pretrained=False, **kwargs)

    build.__name__ = f"pytorchvideo_{name}"
    if name.startswith("mvit"):
        model_class = "pytorchvideo.models.vision_transformers:MultiscaleVisionTransformers"
        reader = _out_features("head.proj", "head_num_classes")
    else:
        model_class, reader = "pytorchvideo.models.net:Net", _out_features("blocks.-1.proj", "model_num_class")
    register_backbone(f"pytorchvideo/{name}", data_config=data_config, description=description,
                      model_class=model_class, kwargs_from_module=reader)(build)


# Clip lengths are those the weights are evaluated at (torchvision's docs; pytorchvideo's hub names,
# e.g. 8x8 = 8 frames; SlowFast counts the fast pathway's frames).
for _name in ("r3d_18", "mc3_18", "r2plus1d_18"):
    _torchvision(_name, DataConfig(16, 112, 128, **_KINETICS), f"{_name} (torchvision VideoResNet)")
_torchvision("s3d", DataConfig(128, 224, 256, **_KINETICS), "S3D (torchvision)")
for _name in ("mvit_v1_b", "mvit_v2_s"):
    _torchvision(_name, DataConfig(16, 224, 256, **_PTV), f"{_name} (torchvision MViT)")
for _name in ("swin3d_t", "swin3d_s", "swin3d_b"):
    _torchvision(_name, DataConfig(32, 224, 256, **_IMAGENET), f"{_name} (torchvision Video Swin)")

for _name, _frames in (("slow_r50", 8), ("c2d_r50", 8), ("i3d_r50", 8), ("r2plus1d_r50", 16), ("csn_r101", 32)):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo ResNet family)")
for _name, _frames, _crop in (("x3d_xs", 4, 160), ("x3d_s", 13, 160), ("x3d_m", 16, 224), ("x3d_l", 16, 312)):
    _pytorchvideo(_name, DataConfig(_frames, _crop, int(_crop / 0.875), **_PTV), f"{_name} (pytorchvideo X3D)")
for _name, _frames in (("slowfast_r50", 32), ("slowfast_r101", 32), ("slowfast_16x8_r101_50_50", 64)):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo SlowFast, alpha 4)")
for _name, _frames in (("mvit_base_16x4", 16), ("mvit_base_32x3", 32)):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo MViT)")


@register_backbone(
    "taghead/r2plus1d_34", data_config=DataConfig(32, 112, 128, **_PTV),
    description="R(2+1)D-34 in the IG-65M layout, the TAG-Head reference backbone",
    model_class=_TV + "resnet:VideoResNet", kwargs_from_module=_out_features("fc", "num_classes"),
)
def _r2plus1d_34(**kwargs: Any) -> nn.Module:
    from .r2plus1d import r2plus1d_34

    import_extra("torchvision.models.video.resnet", "backbone 'taghead/r2plus1d_34'")
    return r2plus1d_34(**kwargs)


def _tiny_kwargs(module: nn.Module) -> dict[str, Any]:
    return {"width": int(module.stem[0].out_channels), "num_classes": int(module.fc.out_features)}


@register_backbone("taghead/tiny_video_cnn", data_config=DataConfig(), description="tiny 3D CNN for demos and tests",
                   model_class="taghead.backbones.tiny:TinyVideoCNN", kwargs_from_module=_tiny_kwargs)
def _tiny_video_cnn(**kwargs: Any) -> nn.Module:
    from .tiny import tiny_video_cnn

    return tiny_video_cnn(**kwargs)
