"""Gradient (activation) checkpointing of a sequence of layers: timm's ``set_grad_checkpointing``.

A checkpointed layer keeps only its input during the forward pass and runs again in the backward pass to
rebuild its activations: less activation memory for about one more forward pass of compute. Outputs and
gradients are the same (dropout masks too: the random state is restored for the second run), and so are
BatchNorm running statistics: the second run would update them once more, so they are put back after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from .tracing import is_tracing

__all__ = ["run_checkpointed", "checkpoint_call"]


def _active(enabled: bool) -> bool:
    """Checkpoint only when it saves something: gradients are being recorded (not under ``no_grad``), and not
    while ``torch.fx`` traces (a traced graph records the layers themselves)."""
    return enabled and torch.is_grad_enabled() and not is_tracing()


@contextlib.contextmanager
def _statistics_kept(layers: list[_BatchNorm]) -> Iterator[None]:
    """Put the running statistics of ``layers`` back as they were when the block ends (the re-run's update)."""
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
             for m in layers]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, values in zip(layers, saved):
                for buffer, value in zip([b for b in (m.running_mean, m.running_var, m.num_batches_tracked)
                                          if b is not None], values):
                    buffer.copy_(value)


def _updating_batchnorms(module: Any) -> list[_BatchNorm]:
    """The BatchNorm layers of ``module`` that a forward pass updates (training mode, tracking statistics)."""
    if not isinstance(module, nn.Module):
        return []
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]


def checkpoint_call(fn: Callable[..., Any], *args: Any, enabled: bool = True, owner: nn.Module | None = None) -> Any:
    """``fn(*args)``, checkpointed (non-reentrant) when ``enabled`` and gradients are being recorded.

    ``owner`` is the module ``fn`` runs (default: ``fn`` itself when it is one); its BatchNorm running statistics
    are restored after the backward pass re-runs it, so they are updated once per step as without checkpointing.

    Args:
        fn: the function or module to run.
        *args: its inputs.
        enabled: checkpoint at all (``False`` simply calls ``fn``).
        owner: the module whose BatchNorm statistics to keep (default: ``fn`` when it is a module).
    """
    if not _active(enabled):
        return fn(*args)
    batchnorms = _updating_batchnorms(owner if owner is not None else fn)
    if not batchnorms:
        return checkpoint(fn, *args, use_reentrant=False)
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _statistics_kept(batchnorms)))


def run_checkpointed(layers: Iterable[Callable[..., Any]], x: Any, *args: Any, enabled: bool = True) -> Any:
    """``x = layer(x, *args)`` for every layer in turn, each checkpointed when ``enabled`` (see
    :func:`checkpoint_call`).

    Args:
        layers: the layers, in order.
        x: the input of the first layer.
        *args: further inputs of every layer (e.g. the memory of a Transformer decoder).
        enabled: checkpoint each layer (``False`` runs them plainly).
    """
    for layer in layers:
        x = checkpoint_call(layer, x, *args, enabled=enabled)
    return x
