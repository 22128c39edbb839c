"""``VideoClassifier``: a feature-extracting backbone joined to a head, and its saved form (``config.json``)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import DataConfig
from ..heads.io import head_from_config, load_saved_state, pretrained_cfg_dict
from ..heads.registry import registered_head_name
from ..hub import (
    HubDownloadKwargs,
    HubMixin,
    check_label_names,
    read_config,
    read_weights,
    resolve_pretrained_folder,
)
from ..version import __version__
from .spec import OPTIONAL_SPEC_KEYS, SPEC_KEYS, build_parts

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["VideoClassifier"]


class VideoClassifier(nn.Module, HubMixin):
    """``video -> backbone -> feature map [B, C, T, H, W] -> head -> logits``.

    Built by :func:`taghead.wrap_backbone` and :func:`taghead.create_model`; rarely by hand.

    Attributes:
        backbone: the feature extractor (returns the last spatio-temporal feature map).
        head: a head (``TAGHead``, ``MeanPoolHead``, ...).
        data_config: the :class:`~taghead.DataConfig` the backbone expects.
        spec: the recipe that rebuilds this model (backbone name and arguments, adapter arguments,
            head name and config, the backbone's BatchNorm settings, and the provenance of its
            pretrained weights; format in :mod:`taghead.models.spec`); ``spec["backbone"]`` is
            ``None`` for a user-supplied backbone module, which must then be passed again when
            loading saved weights.
        label_names: class names, when known.
        architecture: the registered model name (:func:`taghead.create_model`), when built by name.
        pretrained_cfg: provenance of the weights (:class:`~taghead.models.pretrained.PretrainedCfg`),
            when loaded from pretrained weights; written to ``config.json`` and the model card.

    Saving and loading: ``save_pretrained(dir)``, ``push_to_hub(repo_id, ...)`` (the folder layout is
    :mod:`taghead.hub`'s), the class methods ``from_pretrained(repo_id_or_dir, ...)``, ``from_config``
    (the content of ``config.json``) and ``from_spec`` (the architecture alone); all but
    ``from_pretrained`` give random weights.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        data_config: DataConfig,
        spec: dict[str, Any] | None = None,
        label_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.data_config = data_config
        self.spec = dict(spec or {})
        self.label_names = label_names
        self.architecture: str | None = None
        self.pretrained_cfg: Any = None

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def label_names(self) -> list[str] | None:
        """Class names in classifier order (``None`` when unknown); one per class, checked on assignment."""
        return self._label_names

    @label_names.setter
    def label_names(self, names: list[str] | None) -> None:
        self._label_names = self._checked_labels(names)

    def _checked_labels(self, names: Any, num_classes: int | None = None) -> list[str] | None:
        """``names`` as a list, one ``str`` per class of the head (or ``num_classes``)."""
        if names is None:
            return None
        if num_classes is None:
            num_classes = getattr(self.head, "num_classes", None)
            if num_classes is None:
                raise TypeError(f"label_names need a head with num_classes, and {type(self.head).__name__} has no "
                                "num_classes attribute; give the head one (the width of its output) or leave "
                                "label_names unset")
        return check_label_names(names, num_classes)

    @property
    def num_features(self) -> int:
        return self.head.num_features

    def forward_features(self, video: Any) -> torch.Tensor:
        """The feature map ``[B, C, T, H, W]`` the head sees."""
        return self.backbone(video)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head.forward_head(self.head.forward_features(features), pre_logits=pre_logits)

    def forward(self, video: Any) -> torch.Tensor:
        return self.head(self.backbone(video))

    def get_classifier(self) -> nn.Module:
        return self.head.get_classifier()

    def reset_classifier(self, num_classes: int, label_names: list[str] | None = None) -> None:
        """New classifier with ``num_classes`` outputs (labels dropped unless new ones are given)."""
        self._checked_labels(label_names, num_classes)
        self.head.reset_classifier(num_classes)
        self.label_names = label_names

    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Auxiliary training losses of the head, by name (``{}`` for heads without any).

        Add them to your own criterion: ``loss = ce(logits, y) + sum(model.losses(logits, y).values())``.
        """
        fn = getattr(self.head, "losses", None)
        return fn(logits, target) if fn is not None else {}

    def update_ema(self) -> None:
        """Update the head's moving averages (ART's text bank) once per optimiser step; a no-op for other heads.

        The :class:`~taghead.engine.Trainer` calls it; an own loop adds ``model.update_ema()`` right after
        ``optimizer.step()``.
        """
        fn = getattr(self.head, "update_ema", None)
        if callable(fn):
            fn()

    def param_groups(self, lr: float, backbone_lr_scale: float = 0.1, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the backbone at ``lr * backbone_lr_scale``, the head at ``lr``.

        With ``weight_decay > 0`` each part is split as timm's ``param_groups_weight_decay`` does:
        ``"backbone"`` and ``"head"`` get the decay, ``"backbone_no_decay"`` and ``"head_no_decay"``
        (weight decay 0) hold the 1-D parameters (norms, biases) and those that a submodule's
        ``no_weight_decay()`` names (the head's: positional embeddings, ART's query prompts and text agent;
        a timm backbone's own list). With ``weight_decay = 0`` there is nothing to exempt: one group per
        part. Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped.
        """
        exempt = _no_weight_decay_patterns(self) if weight_decay else set()
        groups = []
        for part, part_lr in (("backbone", lr * backbone_lr_scale), ("head", lr)):
            decay, no_decay = [], []
            for name, p in getattr(self, part).named_parameters(prefix=part):
                if not p.requires_grad:
                    continue
                skip = p.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatchcase(name, e) for e in exempt)
                (no_decay if weight_decay and skip else decay).append(p)
            groups.append(dict(name=part, params=decay, lr=part_lr, weight_decay=weight_decay))
            groups.append(dict(name=f"{part}_no_decay", params=no_decay, lr=part_lr, weight_decay=0.0))
        return [g for g in groups if g["params"]]

    # -- saved form ---------------------------------------------------------------------------------
    def _saved_spec(self) -> dict[str, Any]:
        """The spec, completed for a hand-assembled model; its head part always describes the live head (its
        registered name and config, which follow ``reset_classifier`` and ``model.head = ...``)."""
        spec = {key: self.spec.get(key) for key in (*SPEC_KEYS, *OPTIONAL_SPEC_KEYS)}
        for key in ("backbone_kwargs", "adapter_kwargs"):
            spec[key] = spec[key] or {}
        spec["freeze_backbone"] = bool(spec["freeze_backbone"])
        name = registered_head_name(self.head)
        get_config = getattr(self.head, "get_config", None)
        spec["head"] = name
        spec["head_config"] = get_config() if name is not None and callable(get_config) else None
        return spec

    def hub_config(self, *, label_names: list[str] | None = None,
                   data_config: DataConfig | None = None) -> dict[str, Any]:
        """The content of ``config.json`` (``kind="model"``): the spec, the data config, the labels, the class
        count, the registered model name and the provenance of the weights, when known."""
        labels = self.label_names if label_names is None else self._checked_labels(label_names)
        data = self.data_config if data_config is None else data_config
        if not isinstance(data, DataConfig):
            raise TypeError(f"data_config must be a DataConfig, got {type(data).__name__}")
        return dict(kind="model", taghead_version=__version__, architecture=self.architecture,
                    num_classes=getattr(self.head, "num_classes", None), label_names=labels,
                    data_config=data.to_dict(), spec=self._saved_spec(), pretrained_cfg=pretrained_cfg_dict(self))

    @classmethod
    def from_spec(cls, spec: dict[str, Any], data_config: DataConfig | dict[str, Any],
                  label_names: list[str] | None = None, backbone: nn.Module | None = None,
                  head: nn.Module | None = None) -> VideoClassifier:
        """The architecture a spec describes, with random weights (arguments: :func:`taghead.models.spec.build_parts`)."""
        extractor, head_module, data_config = build_parts(spec, data_config, backbone=backbone, head=head)
        return cls(extractor, head_module, data_config, spec=dict(spec), label_names=label_names)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, backbone: nn.Module | None = None,
                    source: str = "the model") -> VideoClassifier:
        """The model a ``config.json`` describes (``kind="model"``), with random weights.

        ``backbone`` is the module to use when the model was saved around a backbone that taghead did not
        recognise (``spec["backbone"] is None``); ``source`` names the checkpoint in error messages.
        """
        if config.get("kind") != "model":
            raise ValueError(
                f"{source} is a head-only checkpoint, not a full model. Load the head (TAGHead.from_pretrained or "
                "taghead.from_pretrained) and attach it: taghead.VideoClassifier(backbone, head, data_config)."
            )
        spec = config["spec"]
        if spec.get("head") is None or spec.get("head_config") is None:
            head_from_config(None, None, source)  # raises: says how to load a custom head
        data_config = DataConfig.from_dict(config["data_config"])
        labels = config.get("label_names")
        if spec.get("backbone") is None and backbone is None:
            raise ValueError(
                f"{source} was saved with a user-supplied backbone (spec['backbone'] is None: a module that is not "
                "a registered architecture, see taghead.recognize_backbone), which cannot be rebuilt by name: pass "
                "the same backbone module, from_pretrained(path, backbone=my_backbone). Its weights are then "
                "loaded from the checkpoint."
            )
        if spec.get("backbone") is not None and backbone is not None:
            raise ValueError(
                f"{source} rebuilds its own backbone ({spec['backbone']!r}); do not pass backbone=. To put the "
                "saved head on another backbone, load the head alone: taghead.TAGHead.from_pretrained(path)."
            )
        if spec.get("adapter") is None and spec.get("backbone") is None:
            # Assembled by hand: the supplied module is the feature extractor itself.
            head = head_from_config(spec["head"], spec["head_config"], source)
            return cls(backbone, head, data_config, spec=spec, label_names=labels)  # type: ignore[arg-type]
        return cls.from_spec(spec, data_config, label_names=labels, backbone=backbone)

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, *, backbone: nn.Module | None = None,
                        num_classes: int | None = None, **hub_kwargs: Unpack[HubDownloadKwargs]) -> VideoClassifier:
        """A saved model from a folder or a Hub repository, in eval mode (see :func:`taghead.from_pretrained`)."""
        folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
        return cls.from_folder(folder, read_config(folder), source=repr(os.fspath(repo_id_or_path)),
                               backbone=backbone, num_classes=num_classes)

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any], *, source: str, backbone: nn.Module | None = None,
                    num_classes: int | None = None) -> VideoClassifier:
        """The model saved in a local ``folder`` whose ``config.json`` is ``config`` (already read)."""
        model = cls.from_config(config, backbone=backbone, source=source)
        return load_saved_state(model, read_weights(folder), config, source=source, num_classes=num_classes)


def _no_weight_decay_patterns(model: nn.Module) -> set[str]:
    """Full names (``fnmatch`` patterns) of what the submodules of ``model`` list in their ``no_weight_decay()``
    (timm's convention: names relative to the module), prefixed with the module's path."""
    patterns: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if module is not model and callable(fn):
            patterns.update(f"{prefix}.{name}" for name in fn())
    return patterns
