r"""Optimisers and the learning-rate schedule.

- :func:`build_optimizer`: Adam (the reference: Adam, lr 1e-5, no weight decay) or AdamW, with the
  backbone's parameters at ``lr * backbone_lr_scale`` and no weight decay on norms, biases, positional
  embeddings, prompts and ART's text agent, through :meth:`taghead.VideoClassifier.param_groups`.
- :class:`WarmupCosine` / :func:`build_scheduler`: a per-step multiplier of the base learning rates,

  .. math::
     f(s) = \begin{cases} (s + 1) / W & s < W \\
     r + (1 - r)\,\tfrac12\left(1 + \cos\left(\pi \frac{s - W}{S - W}\right)\right) & W \le s < S \\
     r & s \ge S \end{cases}

  with ``W`` warm-up steps, ``S`` total steps and ``r = min_lr_ratio`` (0: annealed to 0 as the
  reference's cosine schedule).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "build_optimizer", "WarmupCosine", "build_scheduler"]

OPTIMIZERS = ("adam", "adamw")


def build_optimizer(
    model: nn.Module,
    name: str = "adam",
    lr: float = 1e-5,
    weight_decay: float = 0.0,
    backbone_lr_scale: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters.

    A model with ``param_groups(lr, backbone_lr_scale, weight_decay)`` (a :class:`~taghead.VideoClassifier`)
    gets a ``"backbone"`` group at ``lr * backbone_lr_scale`` and a ``"head"`` group at ``lr``, and with
    ``weight_decay > 0`` their ``"_no_decay"`` twins (1-D parameters, positional embeddings, prompts,
    ART's text agent; timm's convention); any other module gets one group. Frozen parameters are left out.

    Args:
        model: the model to train.
        name: ``"adam"`` or ``"adamw"``.
        lr: the head's learning rate.
        weight_decay: weight decay (not applied to norms, biases, embeddings and prompts).
        backbone_lr_scale: the backbone's learning rate as a fraction of ``lr``.
        betas: Adam's moment coefficients.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if backbone_lr_scale < 0:
        raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    groups_fn = getattr(model, "param_groups", None)
    if callable(groups_fn):
        groups: list[dict[str, Any]] = groups_fn(lr, backbone_lr_scale=backbone_lr_scale, weight_decay=weight_decay)
        groups = [g for g in groups if g["lr"] > 0]  # a scale of 0 freezes the backbone in effect
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [dict(name="all", params=params, lr=lr, weight_decay=weight_decay)] if params else []
    if not groups:
        raise ValueError("the model has no trainable parameters (all frozen, or backbone_lr_scale=0 with a frozen head)")
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, betas=betas, weight_decay=weight_decay)


class WarmupCosine:
    """Linear warm-up then cosine decay, as a multiplier of the base learning rate (see the module docstring).

    A plain object whose attributes are numbers, so ``LambdaLR.state_dict()`` stays weights-only safe.

    Args:
        total_steps: optimiser steps of the whole run.
        warmup_steps: steps of linear warm-up.
        min_lr_ratio: the final learning rate as a fraction of the base one.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps, self.warmup_steps, self.min_lr_ratio = int(total_steps), int(warmup_steps), float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr_ratio
        span = max(1, self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step - self.warmup_steps) / span))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`WarmupCosine` schedule (call ``scheduler.step()`` after every optimiser step).

    Args:
        optimizer: the optimiser whose learning rates to schedule.
        total_steps: optimiser steps of the whole run.
        warmup_steps: steps of linear warm-up.
        min_lr_ratio: the final learning rate as a fraction of the base one.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio))
