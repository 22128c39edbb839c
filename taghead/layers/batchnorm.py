"""BatchNorm settings for fine-tuning: momentum and epsilon of every BatchNorm layer, and frozen statistics.

PyTorch's BatchNorm updates its running statistics in training mode as
``running = (1 - momentum) * running + momentum * batch``; PyTorch's default is ``momentum = 0.1``.
Caffe2 writes the same rule the other way round (``running = momentum * running + (1 - momentum) *
batch``), so weights converted from Caffe2 sometimes carry ``momentum = 0.9`` in PyTorch's sense, where
the running statistics are almost those of the last batch (the IG-65M R(2+1)D-34 is such a case).
"""

from __future__ import annotations

import math
import numbers

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_layers", "configure_batchnorm", "set_batchnorm_eval", "check_batchnorm_options"]


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer inside ``module`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ...), in module order.

    Args:
        module: any module; itself included when it is a BatchNorm layer.
    """
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def check_batchnorm_options(momentum: float | None = None, eps: float | None = None) -> None:
    """Raise a ``ValueError`` unless ``momentum`` is ``None`` or in ``[0, 1]`` and ``eps`` is ``None`` or ``> 0``.

    Args:
        momentum: a BatchNorm momentum in PyTorch's sense, or ``None`` (keep the layer's).
        eps: a BatchNorm eps, or ``None`` (keep the layer's).

    Raises:
        ValueError: naming the option, what it must be and the value given (booleans and non-finite numbers
            are refused too).
    """
    for name, value, ok, expected in (
        ("momentum", momentum, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]"),
        ("eps", eps, lambda v: v > 0.0, "a number > 0"),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
            raise ValueError(f"BatchNorm {name} must be None (keep the layer's) or {expected}, got {value!r}")


def configure_batchnorm(module: nn.Module, *, momentum: float | None = None, eps: float | None = None) -> int:
    """Set ``momentum`` and/or ``eps`` on every BatchNorm layer inside ``module``; ``None`` leaves that setting.

    Args:
        module: any module (a backbone, a whole model).
        momentum: PyTorch's sense: the weight of the current batch in the running statistics,
            ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's default 0.1).
        eps: the constant added to the variance before the square root (changes the layer's output).

    Returns:
        the number of BatchNorm layers found (all of them are set).

    Raises:
        ValueError: ``momentum`` outside ``[0, 1]`` or ``eps <= 0``.
    """
    check_batchnorm_options(momentum, eps)
    layers = batchnorm_layers(module)
    for layer in layers:
        if momentum is not None:
            layer.momentum = float(momentum)
        if eps is not None:
            layer.eps = float(eps)
    return len(layers)


def set_batchnorm_eval(module: nn.Module) -> int:
    """Put every BatchNorm layer inside ``module`` in eval mode: it normalises with its running statistics and
    no longer updates them (its affine weight and bias still train).

    ``module.train()`` switches them back; :meth:`taghead.adapters.FeatureExtractor.freeze_bn_stats` keeps
    a backbone's layers in eval mode across ``train()`` calls.

    Args:
        module: any module (a backbone, a whole model).

    Returns:
        the number of BatchNorm layers set.
    """
    layers = batchnorm_layers(module)
    for layer in layers:
        layer.eval()
    return len(layers)
