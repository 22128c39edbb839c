"""The TAG-Head reference checkpoints' layout: reading their state dicts and renaming them to taghead's keys.

The reference files are state dicts of the authors' ``TAGHead`` module:

==========================================  ===============================================
reference key                               taghead key
==========================================  ===============================================
``backbone.0.*`` .. ``backbone.4.*``        the R(2+1)D-34 ``stem``, ``layer1`` .. ``layer4``
``pos_embedding`` ``[1, N, 512]``           ``head.pos_embed.weight``
``transformer.layers.{i}.*``                ``head.transformer.layers.{i}.*``
``classifier.0.*`` (LayerNorm)              ``head.norm.*``
``classifier.1.*`` (Linear)                 ``head.fc.*``
``edge_index`` ``[2, E]``                   checked to be the time-aligned graph, then dropped
==========================================  ===============================================

The reference runs torch_geometric's ``APPNP`` on that explicit edge list; taghead's head computes
the same propagation without it (:func:`taghead.ops.time_aligned_appnp`), so the converted model
gives the reference logits. Files are read with ``torch.load(weights_only=True)`` only. Loading a
whole checkpoint as a model is :func:`taghead.convert.load_official`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..heads.tag import TAG_PRESETS
from ..ops import time_aligned_edge_index
from ..weights import CheckpointError, check_state_dict, load_torch_checkpoint, unwrap_state_dict

__all__ = ["read_official_state_dict", "unwrap_official_state_dict", "infer_preset", "convert_official_state_dict",
           "is_official_state_dict"]

_HEAD_RENAMES = (("pos_embedding", "pos_embed.weight"), ("transformer.", "transformer."),
                 ("classifier.0.", "norm."), ("classifier.1.", "fc."))
_REQUIRED = ("pos_embedding", "classifier.0.weight", "classifier.1.weight", "transformer.layers.0.linear1.weight")


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The reference state dict in ``path``: bare, or under ``model_state_dict`` (``module.`` prefixes removed).

    Args:
        path: a reference ``.pth`` checkpoint.
    """
    return unwrap_official_state_dict(load_torch_checkpoint(path), repr(os.fspath(path)))


def unwrap_official_state_dict(obj: dict[str, Any], source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The reference state dict inside a loaded checkpoint ``obj`` (see :func:`~taghead.weights.unwrap_state_dict`),
    checked to have the reference layout.

    Args:
        obj: the loaded checkpoint.
        source: where it came from, named in errors.
    """
    if "model_state_dict" in obj and not isinstance(obj["model_state_dict"], dict):
        raise CheckpointError(f"{source}: 'model_state_dict' holds a {type(obj['model_state_dict']).__name__}, "
                              "not a dict")
    obj = unwrap_state_dict(obj, source)
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries {bad[:5]} are not tensors; expected a state dict")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing or not any(k.startswith("backbone.0.") for k in obj):
        raise CheckpointError(
            f"{source} is not a reference TAG-Head state dict: missing "
            f"{missing or ['backbone.0.*']} (found keys such as {sorted(obj)[:5]})"
        )
    return obj


def infer_preset(state: dict[str, torch.Tensor]) -> str:
    """The reference preset (``haa500``, ``gym99``, ``gym288``) whose shapes the state dict has.

    Args:
        state: a reference state dict.
    """
    found = dict(num_classes=int(state["classifier.1.weight"].shape[0]), tokens=int(state["pos_embedding"].shape[1]),
                 mlp_dim=int(state["transformer.layers.0.linear1.weight"].shape[0]))
    for name, p in TAG_PRESETS.items():
        if (p["num_classes"], p["t"] * p["h"] * p["w"], p["mlp_dim"]) == tuple(found.values()):
            return name
    known = {n: dict(num_classes=p["num_classes"], tokens=p["t"] * p["h"] * p["w"], mlp_dim=p["mlp_dim"])
             for n, p in TAG_PRESETS.items()}
    raise ValueError(f"the checkpoint ({found}) matches no reference preset {known}; pass preset= explicitly")


def _resnet_stages(backbone: nn.Module) -> list[nn.Module]:
    """The ``stem, layer1, .., layer4`` modules of the R(2+1)D-34 inside ``backbone``."""
    names = ("stem", "layer1", "layer2", "layer3", "layer4")
    for module in backbone.modules():
        if all(isinstance(getattr(module, n, None), nn.Module) for n in names):
            return [getattr(module, n) for n in names]
    children = list(backbone.children())
    if isinstance(backbone, nn.Sequential) and len(children) == 5:
        return children
    raise TypeError(f"cannot find the R(2+1)D stem and layer1..layer4 in {type(backbone).__name__}")


def _check_edge_index(edge_index: torch.Tensor, grid: tuple[int, int, int]) -> None:
    expected = time_aligned_edge_index(*grid)
    n = grid[0] * grid[1] * grid[2]
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise CheckpointError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
    got = torch.unique(edge_index[0].long() * n + edge_index[1].long())
    want = torch.unique(expected[0] * n + expected[1])
    if got.shape != want.shape or not torch.equal(got, want):
        raise CheckpointError(
            f"the checkpoint's edge_index ({edge_index.shape[1]} edges) is not the time-aligned graph of a "
            f"{grid} grid ({expected.shape[1]} edges: all pairs inside each frame, same position in adjacent "
            "frames); taghead's TAG-Head cannot reproduce it"
        )


def convert_official_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, source: str = "the reference checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename a reference state dict to ``model``'s keys (a ``VideoClassifier``: R(2+1)D-34 backbone + ``TAGHead``).

    Keys and shapes are checked against ``model`` (:class:`~taghead.weights.StateDictMismatchError`
    lists what differs), then ``edge_index`` is checked to be the time-aligned graph and dropped.

    Args:
        state: the reference state dict.
        model: the taghead model whose keys to produce.
        source: where the state dict came from, named in errors.
    """
    names = {id(m): name for name, m in model.named_modules()}
    prefixes = [names[id(stage)] for stage in _resnet_stages(model.backbone)]
    head_prefix = names[id(model.head)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "edge_index":
            continue
        new = key  # unknown keys keep their name and are reported as unexpected
        if key.startswith("backbone."):
            index, _, rest = key[len("backbone."):].partition(".")
            if index.isdigit() and int(index) < len(prefixes):
                new = f"{prefixes[int(index)]}.{rest}"
        else:
            for old, repl in _HEAD_RENAMES:
                if key == old or (old.endswith(".") and key.startswith(old)):
                    new = f"{head_prefix}.{repl}{key[len(old):]}"
                    break
        out[new] = value
    check_state_dict(model, out, source=source)
    if "edge_index" in state:
        _check_edge_index(state["edge_index"], model.head.grid)
    return out


def is_official_state_dict(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint looks like the reference layout (bare or under ``model_state_dict``, with or
    without ``nn.DataParallel``'s ``module.`` prefix)."""
    inner = state.get("model_state_dict")
    return any("pos_embedding" in d or "module.pos_embedding" in d for d in (state, inner) if isinstance(d, dict))
