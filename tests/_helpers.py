"""Shared helper of the adapter oracle tests: a model's features next to what its original computed."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from taghead.adapters import adapt


def adapt_and_capture(original: nn.Module, hooked: str, video: torch.Tensor) -> tuple[nn.Module, torch.Tensor, Any]:
    """Adapt a deep copy of ``original`` (eval mode) and run both on ``video`` without gradients.

    Returns the extractor, its features and the output of ``original``'s submodule ``hooked`` (the
    oracle), caught by a forward hook that is removed afterwards.
    """
    extractor = adapt(copy.deepcopy(original)).eval()  # before the hook: a deep copy would copy it
    captured = {}
    handle = original.get_submodule(hooked).register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        with torch.no_grad():
            original(video)
            features = extractor(video)
    finally:
        handle.remove()
    return extractor, features, captured["out"]
