"""ART's region maps: where each region query looks in each frame, read from the head's own decoder.

ART's decoder answers every region query of a frame with cross-attention over that frame's tokens
(``head.decoder.layers[i].multihead_attn``; queries ``[B*T', N, D]``, keys the ``H'*W'`` tokens). The
attention weights of the **last** decoder layer, averaged over the attention heads, are query ``n``'s
region in frame ``t``: a distribution over the frame's tokens (it sums to one over ``H' x W'``).
They are read with hooks during an ordinary forward (the decoder asks for no weights, so a
pre-hook asks the attention module for them); nothing of the head changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["has_regions", "capture_regions"]


def _cross_attention(head: nn.Module) -> nn.MultiheadAttention | None:
    decoder = getattr(head, "decoder", None)
    layers = getattr(decoder, "layers", None)
    if getattr(head, "head_name", None) != "art" or not layers:
        return None
    attn = getattr(layers[-1], "multihead_attn", None)
    return attn if isinstance(attn, nn.MultiheadAttention) else None


def has_regions(head: nn.Module) -> bool:
    """Whether ``head`` is an ART head whose region maps :func:`capture_regions` can read."""
    return _cross_attention(head) is not None


@contextmanager
def capture_regions(head: nn.Module, grid: tuple[int, int, int]) -> Iterator[dict[str, Any]]:
    """While active, every forward of ART ``head`` on a map with token grid ``grid = (T', H', W')`` stores its
    region maps ``[B, num_queries, T', H', W']`` under ``"regions"`` in the yielded dict (float32, on the CPU)."""
    attn = _cross_attention(head)
    if attn is None:
        raise TypeError(f"{type(head).__name__} has no region queries (only ART heads do)")
    t, h, w = grid
    captured: dict[str, Any] = {}

    def ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": True}

    def keep_weights(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        weights = output[1]  # [B*T', num_queries, H'*W'], averaged over heads
        bt, n, hw = weights.shape
        if hw != h * w or bt % t:
            raise RuntimeError(f"ART cross-attention weights {tuple(weights.shape)} do not fit the grid {grid}")
        captured["regions"] = weights.detach().float().reshape(bt // t, t, n, h, w).transpose(1, 2).cpu()

    handles = [attn.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
               attn.register_forward_hook(keep_weights, with_kwargs=True)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
