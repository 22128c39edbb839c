"""``VideoClassifier``: a feature-extracting backbone joined to a head."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
from torch import nn

from ..config import DataConfig
from ..hub import HubMixin

__all__ = ["VideoClassifier"]


class VideoClassifier(nn.Module, HubMixin):
    """``video -> backbone -> feature map [B, C, T, H, W] -> head -> logits``.

    Built by :func:`taghead.wrap_backbone` and :func:`taghead.create_model`; rarely by hand.

    Attributes:
        backbone: the feature extractor (returns the last spatio-temporal feature map).
        head: a head (``TAGHead``, ``MeanPoolHead``, ...).
        data_config: the :class:`~taghead.DataConfig` the backbone expects.
        spec: the recipe that rebuilds this model (backbone name and arguments, adapter arguments,
            head name and config; format in :mod:`taghead.models.wrap`); ``spec["backbone"]`` is
            ``None`` for a user-supplied backbone module, which must then be passed again when
            loading saved weights.
        label_names: class names, when known.
        architecture: the registered model name (:func:`taghead.create_model`), when built by name.
        pretrained_cfg: provenance of the weights (:class:`~taghead.models.pretrained.PretrainedCfg`),
            when loaded from pretrained weights; written to ``config.json`` and the model card.

    Hub I/O (:mod:`taghead.hub`): ``save_pretrained(dir)``, ``push_to_hub(repo_id, ...)`` and the
    class method ``VideoClassifier.from_pretrained(repo_id_or_dir, ...)``.
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
        self.label_names = list(label_names) if label_names is not None else None
        self.architecture: str | None = None
        self.pretrained_cfg: Any = None

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

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
        self.head.reset_classifier(num_classes)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"got {len(label_names)} label names for {num_classes} classes")
        self.label_names = list(label_names) if label_names is not None else None

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


def _no_weight_decay_patterns(model: nn.Module) -> set[str]:
    """Full names (``fnmatch`` patterns) of what the submodules of ``model`` list in their ``no_weight_decay()``
    (timm's convention: names relative to the module), prefixed with the module's path."""
    patterns: set[str] = set()
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if module is not model and callable(fn):
            patterns.update(f"{prefix}.{name}" for name in fn())
    return patterns
