"""🤗 Transformers video models as registered backbones, built from a config (random weights, no download).

Registered names (``create_backbone(name, config={...})``; the config is a plain dict of the family's config
class, default: the class defaults, which are the family's base published configuration):

=========================================================  ===========================================
name                                                       model (``transformers.``)
=========================================================  ===========================================
``transformers/videomae``                                  ``VideoMAEModel`` (``VideoMAEConfig``)
``transformers/videomae_for_video_classification``         ``VideoMAEForVideoClassification``
``transformers/timesformer``                               ``TimesformerModel`` (``TimesformerConfig``)
``transformers/timesformer_for_video_classification``      ``TimesformerForVideoClassification``
``transformers/vivit``                                     ``VivitModel`` (``VivitConfig``)
``transformers/vivit_for_video_classification``            ``VivitForVideoClassification``
``transformers/vjepa2``                                    ``VJEPA2Model`` (``VJEPA2Config``)
``transformers/vjepa2_for_video_classification``           ``VJEPA2ForVideoClassification``
``transformers/xclip_vision``                              ``XCLIPVisionModel`` (``XCLIPVisionConfig``)
=========================================================  ===========================================

A module of one of these classes passed to :func:`taghead.wrap_backbone` is recognised by its class and its
config (:func:`taghead.recognize_backbone`), and the spec records the config itself as ``backbone_kwargs =
{"config": {...}}`` (:func:`config_dict`: every field of ``config.to_dict()`` but provenance and label
names, plus ``num_labels``), also when it equals the defaults, so a saved ``config.json`` rebuilds the model
without the original object, without network and whatever defaults another transformers version has.
The data config and the token maps are the adapters' (:mod:`taghead.adapters.transformers`).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from torch import nn

from .registry import import_extra, register_backbone

__all__ = ["TRANSFORMERS_BACKBONES", "config_dict"]

_PREFIX = "transformers/"
#: Fields of ``config.to_dict()`` that say where and when a config was made, or name the labels: not recorded
#: (the class count is, as ``num_labels``).
_NOT_ARCHITECTURE = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "id2label",
                     "label2id")
#: What a config class accepts besides its dataclass fields (they appear in its ``to_dict()``).
_ALSO_ACCEPTED = ("num_labels", "model_type", "_name_or_path", "output_attentions")


@dataclasses.dataclass(frozen=True)
class _Family:
    module: str  # transformers.models.<module>.modeling_<module>
    config_class: str
    title: str
    #: registered-name suffix -> model class
    models: dict[str, str]


_FAMILIES = {
    "videomae": _Family("videomae", "VideoMAEConfig", "VideoMAE",
                        {"": "VideoMAEModel", "_for_video_classification": "VideoMAEForVideoClassification"}),
    "timesformer": _Family("timesformer", "TimesformerConfig", "TimeSformer",
                           {"": "TimesformerModel", "_for_video_classification": "TimesformerForVideoClassification"}),
    "vivit": _Family("vivit", "VivitConfig", "ViViT",
                     {"": "VivitModel", "_for_video_classification": "VivitForVideoClassification"}),
    "vjepa2": _Family("vjepa2", "VJEPA2Config", "V-JEPA 2",
                      {"": "VJEPA2Model", "_for_video_classification": "VJEPA2ForVideoClassification"}),
    "xclip_vision": _Family("x_clip", "XCLIPVisionConfig", "X-CLIP vision tower", {"": "XCLIPVisionModel"}),
}

#: Registered name -> ``"module:ClassName"`` of the model it builds.
TRANSFORMERS_BACKBONES: dict[str, str] = {
    f"{_PREFIX}{key}{suffix}": f"transformers.models.{fam.module}.modeling_{fam.module}:{cls}"
    for key, fam in _FAMILIES.items() for suffix, cls in fam.models.items()
}

#: Extra constructor arguments (besides the config) of some model classes, and how to read them back.
_MODEL_KWARGS = {"VivitModel": {"add_pooling_layer": lambda module: module.pooler is not None}}


def _known_fields(config_class: type) -> set[str]:
    """What ``config_class(**values)`` takes: its dataclass fields and :data:`_ALSO_ACCEPTED`."""
    return {f.name for f in dataclasses.fields(config_class)} | set(_ALSO_ACCEPTED)


def config_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready architecture of a transformers config: the fields of ``config.to_dict()`` without provenance
    (``transformers_version``, ``_name_or_path``, ``architectures``, ``dtype``) and label names, with
    ``num_labels`` (the width of a ``...ForVideoClassification`` classifier). Attributes that are no field of the
    config class (transformers keeps any keyword it is given, e.g. ``VivitConfig(patch_size=...)``, and its
    models never read them) are left out."""
    known = _known_fields(type(config))
    values = {k: v for k, v in config.to_dict().items() if k in known and k not in _NOT_ARCHITECTURE}
    values["num_labels"] = int(config.num_labels)
    return values


def _make_config(config_class: type, config: Any, name: str) -> Any:
    """``config_class(**config)`` after checking that ``config`` is a dict of that class's fields."""
    if config is None:
        return config_class()
    if not isinstance(config, dict):
        hint = " Pass config.to_dict() (a plain dict), which a saved spec can store." if hasattr(config, "to_dict") else ""
        raise TypeError(f"backbone {name!r}: config must be a dict of {config_class.__name__} fields, "
                        f"got {type(config).__name__}.{hint}")
    known = _known_fields(config_class)
    unknown = sorted(set(config) - known)
    if unknown:
        close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hints = "".join(f" {k!r}: did you mean {c[0]!r}?" for k, c in close.items() if c)
        raise ValueError(f"backbone {name!r}: unknown {config_class.__name__} field(s) {unknown}.{hints}")
    model_type = config.get("model_type", config_class.model_type)
    if model_type != config_class.model_type:
        raise ValueError(f"backbone {name!r} takes a {config_class.__name__} (model_type "
                         f"{config_class.model_type!r}); the config given is of model_type {model_type!r}")
    return config_class(**{k: v for k, v in config.items() if k != "model_type"})


def _register(name: str, fam: _Family, class_name: str) -> None:
    extra = _MODEL_KWARGS.get(class_name, {})

    def build(config: dict[str, Any] | None = None, **model_kwargs: Any) -> nn.Module:
        transformers = import_extra("transformers", f"backbone {name!r}", extra="hf")
        unknown = sorted(set(model_kwargs) - set(extra))
        if unknown:
            raise TypeError(f"backbone {name!r} takes config= (a dict of {fam.config_class} fields)"
                            f"{''.join(f', {k}=' for k in extra)}; got {unknown}")
        model_class = getattr(transformers, class_name)
        return model_class(_make_config(getattr(transformers, fam.config_class), config, name), **model_kwargs)

    def read_kwargs(module: nn.Module) -> dict[str, Any]:
        return {"config": config_dict(module.config), **{k: bool(read(module)) for k, read in extra.items()}}

    build.__name__ = name.replace("/", "_")
    build.__doc__ = f"{class_name} from a {fam.config_class} dict (random weights; default: the class defaults)."
    register_backbone(name, data_config=None, description=f"{fam.title}: transformers {class_name} from a config",
                      model_class=TRANSFORMERS_BACKBONES[name], kwargs_from_module=read_kwargs,
                      records_defaults=True)(build)


for _key, _fam in _FAMILIES.items():
    for _suffix, _cls in _fam.models.items():
        _register(f"{_PREFIX}{_key}{_suffix}", _fam, _cls)
