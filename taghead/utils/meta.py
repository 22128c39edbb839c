"""Run a module on the ``meta`` device: output shapes (and FLOP counts) without arithmetic or memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["to_meta", "meta_call", "shape_call"]


def to_meta(obj: Any) -> Any:
    """Tensors (also inside lists, tuples and dicts) -> empty ``meta`` tensors of the same shape and dtype."""
    if isinstance(obj, torch.Tensor):
        return torch.empty_like(obj, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_meta(v) for v in obj)
    if isinstance(obj, dict):
        return {k: to_meta(v) for k, v in obj.items()}
    return obj


def meta_call(module: nn.Module, *inputs: Any) -> Any:
    """``module(*inputs)`` with its parameters, buffers and the inputs swapped for ``meta`` tensors.

    The module itself is not modified (``torch.func.functional_call``). Fails (raises) on models that
    create real tensors of their own during the forward pass or read tensor values.
    """
    state = {name: torch.empty_like(t, device="meta")
             for name, t in (*module.named_parameters(), *module.named_buffers())}
    return functional_call(module, state, to_meta(inputs), strict=False)


def shape_call(module: nn.Module, *inputs: Any, fallback: Callable[[], Any] | None = None) -> Any:
    """Run ``module`` for its output's shape: on ``meta`` tensors, else on fake tensors, else ``fallback()``.

    Call it under ``torch.no_grad()`` and with the module in eval mode. The fallback (usually a real
    forward pass) also decides the error raised when the module cannot run the input at all.
    """
    try:
        return meta_call(module, *inputs)
    except Exception:  # an op without a meta kernel, or the input does not fit the model
        pass
    from torch._subclasses.fake_tensor import FakeTensorMode

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # expected failures are reported by the fallback instead
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fake = [mode.from_tensor(v) if isinstance(v, torch.Tensor) else
                    [mode.from_tensor(u) for u in v] if isinstance(v, (list, tuple)) else v for v in inputs]
            return module(*fake)
    except Exception:
        if fallback is None:
            raise
    finally:
        logger.setLevel(level)
    return fallback()
