"""Run a module on the ``meta`` device: output shapes (and FLOP counts) without arithmetic or memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["to_meta", "meta_call", "shape_call", "build_on_meta", "parameter_bytes"]


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

    Call it under ``torch.no_grad()`` and with the module in eval mode. Inputs may be ``meta`` tensors (no
    memory): the fake-tensor attempt then uses fake inputs on the module's device. The fallback (usually a
    real forward pass) also decides the error raised when the module cannot run the input at all.
    """
    try:
        return meta_call(module, *inputs)
    except Exception:  # an op without a meta kernel, or the input does not fit the model
        pass
    from torch._subclasses.fake_tensor import FakeTensorMode

    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # expected failures are reported by the fallback instead
    ref = next(iter((*module.parameters(), *module.buffers())), None)
    device = ref.device if ref is not None else torch.device("cpu")

    def fake(mode: FakeTensorMode, v: torch.Tensor) -> torch.Tensor:
        if v.device.type == "meta" and device.type != "meta":  # an input with no data: a fake one on the module's device
            return torch.empty(v.shape, dtype=v.dtype, device=device)
        return mode.from_tensor(v)

    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fakes = [fake(mode, v) if isinstance(v, torch.Tensor) else
                     [fake(mode, u) for u in v] if isinstance(v, (list, tuple)) else v for v in inputs]
            return module(*fakes)
    except Exception:
        if fallback is None:
            raise
    finally:
        logger.setLevel(level)
    return fallback()


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module | None:
    """``factory()`` with every tensor it creates on the ``meta`` device: the module's architecture, parameter
    names, shapes and dtypes, with no memory for its values and no initialisation arithmetic.

    Returns ``None`` when the factory cannot run there (code that reads a tensor's value while building, such
    as ``tensor.item()``); the caller then builds for real, without the shortcut. Tensors the factory puts
    on an explicit device are real.
    """
    try:
        with torch.device("meta"):
            module = factory()
    except Exception:
        return None
    return module if isinstance(module, nn.Module) else None


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors once); works on ``meta`` modules."""
    seen: set[int] = set()
    total = 0
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total
