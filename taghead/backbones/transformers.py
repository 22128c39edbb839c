"""Hugging Face Transformers video models as registered backbones, built from a config (random weights, no download).

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

Pretrained weights: each name lists the published checkpoints of its family by tag (``transformers/videomae.base``
is the Hub repository ``MCG-NJU/videomae-base``), and takes any Hub repository of the family
(``pretrained="hf-hub:<owner>/<repo>"``) or a local folder of one; ``"hf-hub:<owner>/<repo>"`` is also a backbone
name (:mod:`taghead.backbones.transformers_hub`). A checkpoint's config, weights and preprocessing replace the
defaults above.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from torch import nn

from ..config import DataConfig
from .registry import import_extra, register_backbone, register_name_prefix
from .transformers_hub import HUB_PREFIX, HubFamily, HubNames, TransformersRepos
from .weights import BackboneWeights

__all__ = ["TRANSFORMERS_BACKBONES", "HUB_FAMILIES", "config_dict"]

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
    #: registered-name suffix -> (model class, the parts the adapter replaces: loaded from a checkpoint where they fit)
    models: dict[str, tuple[str, tuple[str, ...]]]
    hub: HubFamily


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_CLIP_PIXELS = ("num_frames", "image_size")
# The processor defaults are the transformers processor classes' own (X-CLIP's published checkpoints name
# VideoMAEImageProcessor); a checkpoint's preprocessor config overrides them (transformers_hub).
_FAMILIES = {
    "videomae": _Family("videomae", {"": ("VideoMAEModel", ()),
                                     "_for_video_classification": ("VideoMAEForVideoClassification",
                                                                   ("fc_norm", "classifier"))},
                        HubFamily("videomae", "VideoMAE", "VideoMAEConfig", ("videomae",), None, ("videomae",),
                                  _CLIP_PIXELS, "VideoMAEVideoProcessor", ((224, 224), *_STANDARD))),
    "timesformer": _Family("timesformer", {"": ("TimesformerModel", ()),
                                           "_for_video_classification": ("TimesformerForVideoClassification",
                                                                         ("classifier",))},
                           HubFamily("timesformer", "TimeSformer", "TimesformerConfig", ("timesformer",), None,
                                     ("timesformer",), _CLIP_PIXELS, "TimesformerVideoProcessor", ((224, 224), *_IMAGENET))),
    "vivit": _Family("vivit", {"": ("VivitModel", ("pooler",)),
                               "_for_video_classification": ("VivitForVideoClassification", ("classifier",))},
                     HubFamily("vivit", "ViViT", "VivitConfig", ("vivit",), None, ("vivit",), _CLIP_PIXELS,
                               "VivitVideoProcessor", ((256, 224), *_STANDARD), rescale=(1 / 127.5, True))),
    "vjepa2": _Family("vjepa2", {"": ("VJEPA2Model", ("predictor",)),
                                 "_for_video_classification": ("VJEPA2ForVideoClassification",
                                                               ("vjepa2.predictor", "pooler", "classifier"))},
                      HubFamily("vjepa2", "V-JEPA 2", "VJEPA2Config", ("vjepa2",), None, ("vjepa2",),
                                ("frames_per_clip", "crop_size"), "VJEPA2VideoProcessor", ((292, 256), *_IMAGENET),
                                resize_from_crop=True)),
    "xclip_vision": _Family("x_clip", {"": ("XCLIPVisionModel", ())},
                            HubFamily("xclip_vision", "X-CLIP vision tower", "XCLIPVisionConfig",
                                      ("xclip", "xclip_vision_model"), "vision_config", ("vision_model",),
                                      _CLIP_PIXELS, "VideoMAEImageProcessor", ((224, 224), *_STANDARD))),
}
HUB_FAMILIES: dict[str, HubFamily] = {key: fam.hub for key, fam in _FAMILIES.items()}
"""The families' checkpoint facts (:class:`~taghead.backbones.transformers_hub.HubFamily`), by family key
(``"videomae"``, ``"timesformer"``, ``"vivit"``, ``"vjepa2"``, ``"xclip_vision"``)."""

TRANSFORMERS_BACKBONES: dict[str, str] = {
    f"{_PREFIX}{key}{suffix}": f"transformers.models.{fam.module}.modeling_{fam.module}:{cls}"
    for key, fam in _FAMILIES.items() for suffix, (cls, _) in fam.models.items()
}
"""Registered name -> ``"module:ClassName"`` of the model it builds
(``"transformers/videomae"`` -> ``"transformers.models.videomae.modeling_videomae:VideoMAEModel"``)."""

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
    models never read them) are left out.

    Args:
        config: a transformers config object of one of the families (``VideoMAEConfig``, ...); not modified.
    """
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


# The published checkpoints registered by tag, with the ids of the transformers docs and docstrings (the
# `@auto_docstring(checkpoint=...)` of the config classes and the `from_pretrained` examples of the model classes).
# Frames and crop are the checkpoints' config.json values; resize, mean and std those of their preprocessor configs
# (for ViViT: mean 0.5, std 0.5 after x / 127.5 - 1, i.e. 0.75 and 0.25 on pixels in [0, 1]; V-JEPA 2's
# processor resizes to int(crop * 256 / 224)); licences and datasets as the model cards state them (V-JEPA 2
# ViT-L: MIT, as its model card and the facebookresearch/vjepa2 project state). Loading reads the repository's own
# files, so what a download holds wins over these values, which are for listing.
_K400, _K600 = "Kinetics-400", "Kinetics-600"
_HUB_WEIGHTS: dict[str, list[tuple[str, str, int, DataConfig, str, str, str]]] = {  # name suffix -> tags
    "videomae": [
        ("base", "MCG-NJU/videomae-base", 0, DataConfig(16, 224, 224, *_IMAGENET), "cc-by-nc-4.0",
         f"{_K400} (self-supervised, 1600 epochs)", "VideoMAE-Base pre-trained by masked autoencoding"),
        ("base_kinetics400", "MCG-NJU/videomae-base-finetuned-kinetics", 400, DataConfig(16, 224, 224, *_IMAGENET),
         "cc-by-nc-4.0", _K400, "VideoMAE-Base fine-tuned on Kinetics-400"),
    ],
    "timesformer": [
        ("base_kinetics400", "facebook/timesformer-base-finetuned-k400", 400,
         DataConfig(8, 224, 224, (0.45,) * 3, (0.225,) * 3), "cc-by-nc-4.0", _K400, "TimeSformer-Base, Kinetics-400"),
        ("base_kinetics600", "facebook/timesformer-base-finetuned-k600", 600,
         DataConfig(8, 224, 224, (0.45,) * 3, (0.225,) * 3), "cc-by-nc-4.0", _K600, "TimeSformer-Base, Kinetics-600"),
    ],
    "vivit": [
        ("b16x2_kinetics400", "google/vivit-b-16x2-kinetics400", 400, DataConfig(32, 224, 224, (0.75,) * 3, (0.25,) * 3),
         "mit", _K400, "ViViT-B/16x2 (factorised encoder), Kinetics-400"),
    ],
    "vjepa2": [
        ("vitl_fpc64_256", "facebook/vjepa2-vitl-fpc64-256", 0, DataConfig(64, 256, 292, *_IMAGENET), "mit",
         "VideoMix22M (self-supervised)", "V-JEPA 2 ViT-L, 64-frame clips at 256 px (encoder and predictor)"),
        ("vitl_fpc16_256_ssv2", "facebook/vjepa2-vitl-fpc16-256-ssv2", 174, DataConfig(16, 256, 292, *_IMAGENET), "mit",
         "Something-Something v2 (attentive probe on the frozen encoder)", "V-JEPA 2 ViT-L with its SSv2 probe"),
    ],
    "xclip_vision": [
        ("base_patch32", "microsoft/xclip-base-patch32", 0, DataConfig(8, 224, 224, *_IMAGENET), "mit",
         f"{_K400} (video-text)", "X-CLIP ViT-B/32, 8 frames: its vision tower"),
    ],
}
#: The tags of the ...ForVideoClassification models: the checkpoints with a classifier.
_CLASSIFIER_TAGS = {"base_kinetics400", "base_kinetics600", "b16x2_kinetics400", "vitl_fpc16_256_ssv2"}


def _hub_weights(key: str, suffix: str) -> list[BackboneWeights]:
    return [BackboneWeights(tag, "model.safetensors", classes, clip, hf_hub_id=repo, license=license_, dataset=data,
                            description=description)
            for tag, repo, classes, clip, license_, data, description in _HUB_WEIGHTS[key]
            if not suffix or tag in _CLASSIFIER_TAGS]


def _register(name: str, fam: _Family, class_name: str, replaced: tuple[str, ...], weights: list[BackboneWeights],
              loader: TransformersRepos) -> None:
    extra = _MODEL_KWARGS.get(class_name, {})
    config_class = fam.hub.config_class

    def build(config: dict[str, Any] | None = None, **model_kwargs: Any) -> nn.Module:
        transformers = import_extra("transformers", f"backbone {name!r}", extra="hf")
        unknown = sorted(set(model_kwargs) - set(extra))
        if unknown:
            raise TypeError(f"backbone {name!r} takes config= (a dict of {config_class} fields)"
                            f"{''.join(f', {k}=' for k in extra)}; got {unknown}")
        model_class = getattr(transformers, class_name)
        return model_class(_make_config(getattr(transformers, config_class), config, name), **model_kwargs)

    def read_kwargs(module: nn.Module) -> dict[str, Any]:
        return {"config": config_dict(module.config), **{k: bool(read(module)) for k, read in extra.items()}}

    build.__name__ = name.replace("/", "_")
    build.__doc__ = f"{class_name} from a {config_class} dict (random weights; default: the class defaults)."
    register_backbone(name, data_config=None, description=f"{fam.hub.title}: transformers {class_name} from a config",
                      model_class=TRANSFORMERS_BACKBONES[name], kwargs_from_module=read_kwargs,
                      records_defaults=True, weights=weights, classifier=replaced, repo_loader=loader)(build)


for _key, _fam in _FAMILIES.items():
    _loader = TransformersRepos(_fam.hub, config_dict)
    for _suffix, (_cls, _replaced) in _fam.models.items():
        _register(f"{_PREFIX}{_key}{_suffix}", _fam, _cls, _replaced, _hub_weights(_key, _suffix), _loader)
register_name_prefix(HUB_PREFIX, HubNames(list(HUB_FAMILIES.values())))
