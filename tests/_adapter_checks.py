"""Shared checks for the adapter tests (forward, backward, no dead weights) and a faster random init."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

# A small TAG-Head, so that the backbone dominates and the tests stay fast.
SMALL_HEAD = dict(embed_dim=32, num_heads=4, mlp_dim=64)


def reachable_parameters(output: torch.Tensor) -> set[int]:
    """``id``s of the leaf tensors ``output`` depends on (walks the autograd graph, computes nothing)."""
    seen, found, stack = set(), set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def check_forward_backward(model: nn.Module, video: Any, feature_shape: tuple[int, ...], num_classes: int,
                           first_layer: str, dropped: tuple[str, ...] = ()) -> None:
    """Feature map and logits shapes; every backbone weight on the path to the logits; gradients
    reaching the backbone's first layer (through the whole backbone) and the head's classifier.

    ``torch.autograd.grad`` with just those two tensors skips the weight gradients of every other
    layer, which dominate the cost of a full ``backward()`` on a CPU.
    """
    features = model.forward_features(video)
    assert tuple(features.shape) == feature_shape
    logits = model.forward_head(features)
    assert logits.shape == (feature_shape[0], num_classes)
    reached = reachable_parameters(logits)
    named = dict(model.backbone.named_parameters())
    dead = [n for n, p in named.items() if id(p) not in reached]
    assert not dead, f"backbone weights outside the feature path (should have been removed): {dead[:5]}"
    assert all(id(p) in reached for p in model.head.parameters())
    g_first, g_fc = torch.autograd.grad(logits.square().sum(), [named[first_layer], model.head.fc.weight])
    for g in (g_first, g_fc):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    keys = list(model.state_dict())
    assert all(k.startswith(("backbone.model.", "head.")) for k in keys)
    leftovers = [k for k in keys if k.startswith(tuple(f"backbone.model.{d}" for d in dropped))]
    assert not leftovers, f"pooling/classifier weights kept: {leftovers}"


@contextlib.contextmanager
def fast_trunc_normal() -> Iterator[None]:
    """Build models with a clamped normal instead of ``nn.init.trunc_normal_`` (several times faster on a
    CPU; the weights stay random with the same scale). Only the tests use it."""
    original = nn.init.trunc_normal_

    def quick(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
              generator: Any = None) -> torch.Tensor:
        with torch.no_grad():
            return tensor.normal_(mean, std).clamp_(a, b)

    nn.init.trunc_normal_ = quick
    try:
        yield
    finally:
        nn.init.trunc_normal_ = original
