"""BatchNorm settings of a built model (timm's ``bn_momentum`` / ``bn_eps``)."""

from __future__ import annotations

import math

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["configure_batchnorm"]


def _check(name: str, value: float | None, low_open: float, high: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
            low_open < value <= high):
        raise ValueError(f"{name} must be a number in ({low_open}, {high}], got {value!r}")


def configure_batchnorm(module: nn.Module, *, momentum: float | None = None, eps: float | None = None) -> int:
    """Set ``momentum`` and/or ``eps`` on every BatchNorm layer (``torch.nn`` ``_BatchNorm``) in ``module``.

    Args:
        module: the model (changed in place).
        momentum: running-statistics momentum in ``(0, 1]`` (PyTorch's convention: weight of the new batch);
            ``None`` leaves it.
        eps: the variance epsilon, ``> 0``; ``None`` leaves it.

    Returns:
        how many BatchNorm layers were changed (0 when both are ``None`` or the module has none).

    Raises:
        ValueError: a value out of range.
    """
    _check("momentum", momentum, 0.0, 1.0)
    _check("eps", eps, 0.0, math.inf)
    if momentum is None and eps is None:
        return 0
    changed = 0
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            if momentum is not None:
                layer.momentum = float(momentum)
            if eps is not None:
                layer.eps = float(eps)
            changed += 1
    return changed
