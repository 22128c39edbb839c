"""``VideoClassifier``: a feature-extracting backbone joined to a head, and its saved form (``config.json``)."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..adapters.base import FeatureExtractor, children_group_matcher
from ..config import DataConfig, PretrainedCfg
from ..heads.base import check_global_pool, check_number
from ..heads.io import HEAD_PREFIX, check_on_meta, head_from_config, load_saved_state, pretrained_cfg_dict
from ..heads.registry import registered_head_name
from ..hub import (
    HubDownloadKwargs,
    HubMixin,
    check_label_names,
    read_config,
    read_weights,
    read_weights_header,
    resolve_pretrained_folder,
)
from ..limits import without_local_builder_arguments
from ..version import __version__
from .grouping import Ordinal, compile_matcher
from .spec import OPTIONAL_SPEC_KEYS, SPEC_KEYS, build_parts

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["VideoClassifier"]


class VideoClassifier(nn.Module, HubMixin):
    """``video -> backbone -> feature map [B, C, T, H, W] -> head -> logits``.

    Built by :func:`taghead.wrap_backbone` and :func:`taghead.create_model`; rarely by hand.

    Args:
        backbone: the feature extractor.
        head: the head, built for the extractor's feature map.
        data_config: the input the backbone expects.
        spec: the recipe that rebuilds the model (``None``: empty, the model cannot be rebuilt from its
            config).
        label_names: class names in classifier order.

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
        pretrained_cfg: timm's ``pretrained_cfg`` (also ``default_cfg``): a
            :class:`~taghead.models.pretrained.PretrainedCfg` describing the model as it is now (its input from
            ``data_config``, its classifier) with the provenance of its weights when known; a read-only
            mapping in timm's format for timm's utilities. Assigning a ``PretrainedCfg`` sets the provenance.
        weights_cfg: the provenance alone, as loaded (``None`` for random weights); written to
            ``config.json`` and the model card.

    timm's model contract, adapted to video: ``forward_features`` (the backbone's map ``[B, C, T, H, W]``),
    ``forward_head(x, pre_logits)``, ``num_features`` (``C``), ``head_hidden_size``, ``get_classifier``,
    ``reset_classifier(num_classes, global_pool=None)``, ``no_weight_decay()``, ``group_matcher(coarse)``,
    ``set_grad_checkpointing(enable)``; see ``docs/guides/timm.md``.

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
        self.weights_cfg: PretrainedCfg | None = None

    @property
    def num_classes(self) -> int:
        """Classifier outputs (the head's)."""
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
        """Channels ``C`` of what :meth:`forward_features` returns (the backbone's map ``[B, C, T, H, W]``), as
        in timm; the head's width before its classifier is :attr:`head_hidden_size`."""
        channels = getattr(self.head, "in_channels", None)
        return int(channels) if channels is not None else int(self.backbone.out_channels)

    @property
    def head_hidden_size(self) -> int:
        """Width of the pre-logits features (``forward_head(x, pre_logits=True)``): what the classifier sees."""
        size = getattr(self.head, "head_hidden_size", None)
        return int(size if size is not None else self.head.num_features)

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        """timm's ``pretrained_cfg`` for this model: the provenance of the weights (:attr:`weights_cfg`; for
        random weights only the class count) with the input the model takes now (:attr:`data_config`) and
        the path of its classifier. A read-only mapping in timm's format (:class:`~taghead.config.PretrainedCfg`);
        assign a ``PretrainedCfg`` (or ``None``) to set the provenance."""
        dc = self.data_config
        live = dict(num_frames=dc.num_frames, crop_size=dc.crop_size, resize_size=dc.resize_size, mean=dc.mean,
                    std=dc.std, classifier=self._classifier_path())
        if self.weights_cfg is None:
            return PretrainedCfg(num_classes=int(getattr(self.head, "num_classes", 0)), **live)
        return dataclasses.replace(self.weights_cfg, **live)

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: PretrainedCfg | None) -> None:
        if cfg is not None and not isinstance(cfg, PretrainedCfg):
            raise TypeError(f"pretrained_cfg must be a taghead PretrainedCfg (or None), got {type(cfg).__name__}")
        self.weights_cfg = cfg

    @property
    def default_cfg(self) -> PretrainedCfg:
        """timm's older name of :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

    def _classifier_path(self) -> str | None:
        get_classifier = getattr(self.head, "get_classifier", None)
        if not callable(get_classifier):
            return None
        classifier = get_classifier()
        return next((name for name, m in self.named_modules() if m is classifier), None)

    def forward_features(self, video: Any) -> torch.Tensor:
        """The feature map ``[B, C, T, H, W]`` the head sees.

        Args:
            video: a clip batch ``[B, 3, T, H, W]`` (or the backbone's own input format).
        """
        return self.backbone(video)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The head on a feature map (timm's ``forward_head``).

        Args:
            features: the feature map ``[B, C, T, H, W]`` (:meth:`forward_features`).
            pre_logits: return the head's pooled representation instead of logits.
        """
        return self.head.forward_head(self.head.forward_features(features), pre_logits=pre_logits)

    def forward(self, video: Any) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of a clip batch.

        Args:
            video: a clip batch ``[B, 3, T, H, W]`` (or the backbone's own input format).
        """
        return self.head(self.backbone(video))

    def get_classifier(self) -> nn.Module:
        """The final classifier (timm's ``get_classifier``): the head's."""
        return self.head.get_classifier()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None, *,
                         label_names: list[str] | None = None) -> None:
        """New classifier with ``num_classes`` outputs (``0``: none), on the model's device and in its dtype; the
        labels are dropped unless new ones are given.

        Args:
            num_classes: outputs of the new classifier.
            global_pool: timm's pooling switch, accepted only as ``None``: a taghead head's pooling is part of
                its design (see :func:`taghead.heads.base.check_global_pool`).
            label_names: class names for the new classifier (keyword only).
        """
        if isinstance(global_pool, (list, tuple)):
            raise TypeError("reset_classifier(num_classes, global_pool=None, *, label_names=None): the second "
                            "positional argument is timm's global_pool; pass class names as label_names=[...]")
        check_global_pool(global_pool, "VideoClassifier.reset_classifier")
        self._checked_labels(label_names, num_classes)
        self.head.reset_classifier(num_classes)
        self.label_names = label_names

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Gradient checkpointing (timm's ``--grad-checkpointing``): the head's Transformer layers and, where the
        backbone allows (:attr:`FeatureExtractor.supports_grad_checkpointing`: timm models, the residual blocks of
        torchvision and pytorchvideo models, ...), the backbone's blocks keep only their inputs and are run again
        in the backward pass. Same outputs and gradients, less activation memory, about one more forward pass of
        compute. A backbone that cannot is left as it is, with a warning (a frozen one needs nothing).

        Args:
            enable: turn checkpointing on (``True``) or off.
        """
        head_fn = getattr(self.head, "set_grad_checkpointing", None)
        if callable(head_fn):
            head_fn(enable)
        backbone = self.backbone
        if getattr(backbone, "supports_grad_checkpointing", False):
            backbone.set_grad_checkpointing(enable)
        elif enable and not getattr(backbone, "frozen", False):
            what = f"{type(backbone).__name__} ({type(getattr(backbone, 'model', backbone)).__qualname__})"
            warnings.warn(f"set_grad_checkpointing: the backbone {what} cannot be checkpointed; only the head is. "
                          "The backbone keeps its activations (their memory) as before.", UserWarning, stacklevel=2)

    def no_weight_decay(self) -> set[str]:
        """Full names (``fnmatch`` patterns) of the parameters exempt from weight decay besides the 1-D ones: what
        the submodules' ``no_weight_decay()`` name (the head's positional embedding, ART's query prompts and text
        agent, a timm backbone's own list). timm's optimizer factory asks only the model itself for this."""
        return _no_weight_decay_patterns(self)

    def group_matcher(self, coarse: bool = False) -> Callable[[str], Ordinal]:
        """timm's ``group_matcher`` (layer-wise learning-rate decay, ``create_optimizer_v2(..., layer_decay=)``):
        the backbone's groups in order (its stages when ``coarse``, else its blocks; the adapter's
        :meth:`~taghead.adapters.FeatureExtractor.group_matcher`), then the whole head as the last group, so that
        the head keeps the full learning rate and earlier backbone layers get smaller ones.

        Args:
            coarse: group the backbone by stage instead of by block.
        """
        backbone = self.backbone
        if isinstance(backbone, FeatureExtractor):
            prefix, inner = "backbone.model.", compile_matcher(backbone.group_matcher(coarse))
        else:
            own = getattr(backbone, "group_matcher", None)
            prefix = "backbone."
            inner = compile_matcher(own(coarse=coarse) if callable(own) else children_group_matcher(backbone, coarse))

        def ordinal(name: str) -> Ordinal:
            if name.startswith(prefix):
                return (0.0, *inner(name[len(prefix):]))
            if name.startswith("backbone."):
                return (0.0, math.inf)
            return (1.0,)

        return ordinal

    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Auxiliary training losses of the head, by name (``{}`` for heads without any).

        Add them to your own criterion: ``loss = ce(logits, y) + sum(model.losses(logits, y).values())``.

        Args:
            logits: the model's output ``[B, num_classes]`` of the last forward.
            target: the int64 class indices ``[B]``.
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

    def param_groups(self, lr: float | None = None, backbone_lr_scale: float = 0.1,
                     weight_decay: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the backbone's learning rate ``backbone_lr_scale`` times the head's.

        Two ways to carry the learning rates:

        - ``lr=None`` (timm's convention): every group has ``lr_scale`` (``backbone_lr_scale`` for the
          backbone, ``1.0`` for the head) and no ``lr``; the optimizer's ``lr`` is the base and timm's
          schedulers set ``lr * lr_scale`` on every step, so warm-up and decay keep the ratio exactly.
          Use with ``timm.optim.create_optimizer_v2(model.param_groups(), "adamw", lr=...)`` and
          ``timm.scheduler.create_scheduler_v2``. A plain PyTorch optimizer ignores ``lr_scale``.
        - ``lr=<float>`` (PyTorch's convention): the groups have ``lr`` (``lr * backbone_lr_scale`` and ``lr``)
          and no ``lr_scale``, for ``torch.optim`` optimizers and ``torch.optim.lr_scheduler`` schedules (which
          scale every group alike). Not for timm's schedulers, whose warm-up would move the ratio.

        Weight decay follows timm's ``param_groups_weight_decay``: each part is split into ``"backbone"`` /
        ``"head"`` and ``"backbone_no_decay"`` / ``"head_no_decay"`` (weight decay ``0.0``), the latter holding
        the 1-D parameters (norms, biases) and what :meth:`no_weight_decay` names. ``weight_decay=None``
        (default) leaves the decaying groups without a ``weight_decay`` entry, so the optimizer's own default
        applies (``torch.optim.AdamW``: 0.01, ``Adam``: 0); a number sets it (``0.0``: one group per part,
        nothing to exempt). Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped.

        Args:
            lr: the head's learning rate (``None``: timm's ``lr_scale`` convention).
            backbone_lr_scale: the backbone's learning rate as a fraction of the head's.
            weight_decay: weight decay of the decaying groups (``None``: the optimizer's default).

        Raises:
            ValueError: ``lr`` not > 0, ``backbone_lr_scale`` < 0 or ``weight_decay`` < 0.
        """
        if lr is not None:
            check_number("param_groups: lr", lr, 0.0, math.inf, lo_open=True)
        check_number("param_groups: backbone_lr_scale", backbone_lr_scale, 0.0, math.inf)
        if weight_decay is not None:
            check_number("param_groups: weight_decay", weight_decay, 0.0, math.inf)
        split = weight_decay is None or weight_decay > 0
        exempt = _no_weight_decay_patterns(self) if split else set()
        groups = []
        for part, scale in (("backbone", backbone_lr_scale), ("head", 1.0)):
            rate = dict(lr_scale=scale) if lr is None else dict(lr=lr * scale)
            decay, no_decay = [], []
            for name, p in getattr(self, part).named_parameters(prefix=part):
                if not p.requires_grad:
                    continue
                skip = p.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatchcase(name, e) for e in exempt)
                (no_decay if split and skip else decay).append(p)
            decayed = {} if weight_decay is None else dict(weight_decay=weight_decay)
            groups.append(dict(name=part, params=decay, **rate, **decayed))
            groups.append(dict(name=f"{part}_no_decay", params=no_decay, **rate, weight_decay=0.0))
        return [g for g in groups if g["params"]]

    # -- saved form ---------------------------------------------------------------------------------
    def _saved_spec(self) -> dict[str, Any]:
        """The spec, completed for a hand-assembled model; its head part always describes the live head (its
        registered name and config, which follow ``reset_classifier`` and ``model.head = ...``).

        Builder arguments that name local files (timm's ``checkpoint_path``, any absolute path) are left out,
        with a warning: a saved config must not make loading read a file of the machine it is loaded on, and
        the weights they loaded are in the saved weights anyway.
        """
        spec, dropped = without_local_builder_arguments(
            {key: self.spec.get(key) for key in (*SPEC_KEYS, *OPTIONAL_SPEC_KEYS)})
        if dropped:
            warnings.warn(f"the saved config leaves out the builder arguments that name local files ({', '.join(dropped)}); "
                          "the model is rebuilt without them and its weights come from the saved weights",
                          UserWarning, stacklevel=3)
        spec["freeze_backbone"] = bool(spec["freeze_backbone"])
        name = registered_head_name(self.head)
        get_config = getattr(self.head, "get_config", None)
        spec["head"] = name
        spec["head_config"] = get_config() if name is not None and callable(get_config) else None
        return spec

    def hub_config(self, *, label_names: list[str] | None = None,
                   data_config: DataConfig | None = None) -> dict[str, Any]:
        """The content of ``config.json`` (``kind="model"``): the spec, the data config, the labels, the class
        count, the registered model name and the provenance of the weights, when known.

        Args:
            label_names: class names that replace the model's own.
            data_config: the input description that replaces the model's own.
        """
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
        """The architecture a spec describes, with random weights (arguments: :func:`taghead.models.spec.build_parts`).

        Args:
            spec: the recipe (:attr:`spec`, possibly read back from JSON).
            data_config: the model's data config (or its dict).
            label_names: class names in classifier order.
            backbone: the backbone module when ``spec["backbone"]`` is ``None``.
            head: the head module when ``spec["head"]`` is ``None``.
        """
        extractor, head_module, data_config = build_parts(spec, data_config, backbone=backbone, head=head)
        return cls(extractor, head_module, data_config, spec=dict(spec), label_names=label_names)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, backbone: nn.Module | None = None,
                    source: str = "the model") -> VideoClassifier:
        """The model a ``config.json`` describes (``kind="model"``), with random weights.

        Args:
            config: the ``config.json`` content.
            backbone: the module to use when the model was saved around a backbone that taghead did not
                recognise (``spec["backbone"] is None``).
            source: the checkpoint, as error messages name it.
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
        """A saved model from a folder or a Hub repository, in eval mode (see :func:`taghead.from_pretrained`).

        Args:
            repo_id_or_path: a saved folder or a Hub repository id.
            backbone: the backbone module, for a model saved around one taghead did not recognise.
            num_classes: re-initialise the classifier for this class count.
            **hub_kwargs: passed to :func:`taghead.hub.resolve_pretrained_folder`.
        """
        folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
        return cls.from_folder(folder, read_config(folder), source=repr(os.fspath(repo_id_or_path)),
                               backbone=backbone, num_classes=num_classes)

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any], *, source: str, backbone: nn.Module | None = None,
                    num_classes: int | None = None) -> VideoClassifier:
        """The model saved in a local ``folder`` whose ``config.json`` is ``config`` (already read).

        The architecture is first built on the ``meta`` device and compared with the weights' header (names,
        shapes, dtypes), so a config that does not fit its weights fails before anything is allocated; with
        a user-supplied ``backbone`` (used as it is) only the head is compared this way.

        Args:
            folder: the saved folder.
            config: its ``config.json`` content.
            source: the folder or repository, as errors name it.
            backbone: the backbone module, for a model saved around one taghead did not recognise.
            num_classes: re-initialise the classifier for this class count.
        """
        header = read_weights_header(folder, config)
        spec = config["spec"]
        if backbone is None:
            check_on_meta(lambda: cls.from_config(config, source=source), header, source=source)
        elif isinstance(spec, dict) and spec.get("head") is not None and spec.get("head_config") is not None:
            check_on_meta(lambda: head_from_config(spec["head"], spec["head_config"], source),
                          {k[len(HEAD_PREFIX):]: v for k, v in header.items() if k.startswith(HEAD_PREFIX)},
                          source=source)
        model = cls.from_config(config, backbone=backbone, source=source)
        return load_saved_state(model, read_weights(folder, config), config, source=source, num_classes=num_classes)


def _no_weight_decay_patterns(model: nn.Module) -> set[str]:
    """Full names (``fnmatch`` patterns) of what the submodules of ``model`` list in their ``no_weight_decay()``
    (timm's convention: names relative to the module), prefixed with the module's path."""
    patterns: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if module is not model and callable(fn):
            patterns.update(f"{prefix}.{name}" for name in fn())
    return patterns
