"""The feature cache on disk: what a cache folder holds, its identity, and the checks that keep it honest.

A cache is a folder with one backbone and one or more splits::

    DIR/
      cache.json                # the backbone: model spec, data config, weights provenance and fingerprint,
                                # feature-map shape [C, T, H, W]
      backbone.safetensors      # the backbone's own weights (its FeatureExtractor state dict)
      train/
        index.json              # the split: settings, source files, the shards written so far, skipped videos
        r0-0000000.safetensors  # a shard: features [n, V, C, T, H, W], labels [n], indices [n]
        r1-0000001.safetensors  # (rank in the name: each torchrun process writes its own shards)
      val/
        ...

Every file is written atomically (:mod:`taghead.weights`: a temporary file, ``fsync``, ``os.replace``).
``backbone.safetensors`` is written before ``cache.json`` names it; a shard is written completely before
``index.json`` registers it, and ``index.json`` is rewritten after every round of shards; so a killed
extraction leaves only registered complete shards (and perhaps an unregistered one or a ``.tmp`` file,
never read) and resumes where it stopped. A split is readable once its index says ``complete``.

The **fingerprint** of a backbone is the SHA-256 of its state dict (every entry's name, dtype, shape and
bytes, in name order), written ``"sha256:<hex>"``: two backbones with the same fingerprint compute the
same features. :func:`check_model` compares a model with a cache (the guard rails).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DataConfig
from ..limits import check_no_local_paths
from ..weights import atomic_write_json

__all__ = [
    "FeatureCacheError",
    "CACHE_FORMAT",
    "SPLIT_FORMAT",
    "CACHE_VERSION",
    "CACHE_JSON",
    "INDEX_JSON",
    "BACKBONE_WEIGHTS",
    "FEATURE_DTYPES",
    "IDENTITY_KEYS",
    "backbone_fingerprint",
    "read_cache_info",
    "read_split_index",
    "write_split_index",
    "split_folder",
    "check_model",
    "cache_differences",
    "as_json",
]

CACHE_FORMAT = "taghead-feature-cache"
"""The ``format`` of ``cache.json``."""
SPLIT_FORMAT = "taghead-feature-split"
"""The ``format`` of a split's ``index.json``."""
CACHE_VERSION = 1
"""The layout version this taghead writes and reads."""
CACHE_JSON = "cache.json"
"""The cache's description (backbone spec, data config, weights fingerprint), at its root."""
INDEX_JSON = "index.json"
"""A split's settings, source files, shards written so far and skipped videos, in the split's folder."""
BACKBONE_WEIGHTS = "backbone.safetensors"
"""The weights the maps were extracted with, at the cache's root."""
FEATURE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
"""``--dtype`` names of the stored feature maps."""
IDENTITY_KEYS = ("backbone", "backbone_kwargs", "adapter", "adapter_kwargs")
"""The spec entries that decide what a backbone computes (with the data config and the weights)."""
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class FeatureCacheError(ValueError):
    """A feature cache that cannot be used: missing, incomplete, corrupt, or made with another backbone."""


def backbone_fingerprint(state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` of a module's state dict (or of a state dict): names, dtypes, shapes and bytes in name order.

    Equal fingerprints mean equal weights, bit for bit (BatchNorm statistics included).

    Args:
        state: a module or a state dict.
    """
    if isinstance(state, nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(tensor).__name__}, expected a tensor")
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def as_json(value: Any, what: str = "value") -> Any:
    """``value`` as JSON gives it back (tuples become lists): what a spec read from ``cache.json`` looks like.

    Args:
        value: a JSON-serialisable value.
        what: what it is, named in the error.

    Raises:
        TypeError: naming ``what`` when ``value`` is not JSON-serialisable (:func:`taghead.hub.json_ready`).
    """
    from ..hub import json_ready

    return json_ready(value, what, "a feature cache")


def split_folder(root: str | os.PathLike, split: str) -> Path:
    """``root/split``, for a split name of letters, digits, ``_``, ``.`` and ``-`` (not starting with a dot).

    Args:
        root: the cache folder.
        split: the split's name.
    """
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ValueError(f"split must be a name of letters, digits, '_', '.' and '-' (e.g. 'train'), got {split!r}")
    return Path(root) / split


def _read_json(path: Path, what: str, *, bounded: bool = False) -> dict[str, Any]:
    """A JSON object from ``path``; ``bounded``: read as an untrusted config (:func:`taghead.limits.parse_json`:
    size, depth, finite numbers), for ``cache.json``, whose spec builds a backbone."""
    from ..limits import parse_json

    try:
        text = path.read_text(encoding="utf-8")
        data = parse_json(text, repr(str(path))) if bounded else json.loads(text)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise FeatureCacheError(f"could not read the {what} {str(path)!r} ({err}); the file is corrupt") from None
    if not isinstance(data, dict):
        raise FeatureCacheError(f"the {what} {str(path)!r} holds a {type(data).__name__}, expected a JSON object")
    return data


def _check_format(data: dict[str, Any], expected: str, path: Path) -> None:
    if data.get("format") != expected:
        raise FeatureCacheError(f"{str(path)!r} is not a taghead feature cache file (format {data.get('format')!r}, "
                                f"expected {expected!r})")
    version = data.get("version")
    if not isinstance(version, int) or version > CACHE_VERSION:
        raise FeatureCacheError(f"{str(path)!r} has cache version {version!r}; this taghead reads versions <= "
                                f"{CACHE_VERSION}. Upgrade taghead.")


def read_cache_info(root: str | os.PathLike) -> dict[str, Any]:
    """The content of ``root/cache.json`` (checked format and version).

    Args:
        root: the cache folder.
    """
    path = Path(root) / CACHE_JSON
    if not path.is_file():
        hint = ""
        if (Path(root) / INDEX_JSON).is_file():
            hint = f" ({str(root)!r} looks like one split of a cache: pass its parent folder and split={Path(root).name!r})"
        raise FeatureCacheError(f"{str(root)!r} is not a feature cache: it has no {CACHE_JSON}. Write one with "
                                f"taghead extract-features (or taghead.features.extract_features).{hint}")
    info = _read_json(path, "feature cache description", bounded=True)
    _check_format(info, CACHE_FORMAT, path)
    if not isinstance(info.get("spec"), dict):
        raise FeatureCacheError(f"{str(path)!r}: spec must be a JSON object (the backbone's model spec), got "
                                f"{type(info.get('spec')).__name__}")
    check_no_local_paths(info["spec"], repr(str(path)))  # the spec rebuilds a backbone: it may not read local files
    return info


def read_split_index(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The content of ``folder/index.json`` (checked format and version), ``None`` when there is none yet.

    Args:
        folder: the split's folder.
    """
    path = Path(folder) / INDEX_JSON
    if not path.is_file():
        return None
    index = _read_json(path, "feature split index")
    _check_format(index, SPLIT_FORMAT, path)
    return index


def write_split_index(folder: str | os.PathLike, index: dict[str, Any]) -> None:
    """Write ``folder/index.json`` atomically.

    Args:
        folder: the split's folder.
        index: the content.
    """
    atomic_write_json(Path(folder) / INDEX_JSON, index)


def cache_differences(info: dict[str, Any], model: nn.Module) -> list[str]:
    """What differs between the backbone a cache was made with and ``model`` (spec identity, data config,
    named weights), one line each; the weights' fingerprint is :func:`check_model`'s business.

    Args:
        info: the content of ``cache.json``.
        model: the model to compare.
    """
    spec, cached = getattr(model, "spec", None) or {}, info.get("spec") or {}
    lines = []
    for key in IDENTITY_KEYS:
        mine, theirs = as_json(spec.get(key)), as_json(cached.get(key))
        if key.endswith("_kwargs"):
            mine, theirs = mine or {}, theirs or {}
        if mine != theirs:
            lines.append(f"{key}: the cache has {theirs!r}, the model {mine!r}")
    data_config = getattr(model, "data_config", None)
    if isinstance(data_config, DataConfig):
        ours, theirs = data_config.to_dict(), info.get("data_config") or {}
        changed = [f"{k} {theirs.get(k)!r} vs {v!r}" for k, v in ours.items() if as_json(v) != as_json(theirs.get(k))]
        if changed:
            lines.append(f"data config (cache vs model): {', '.join(changed)}")
    mine, theirs = spec.get("backbone_weights"), cached.get("backbone_weights")
    if mine is not None and theirs is not None and as_json(mine) != as_json(theirs):
        lines.append(f"backbone weights: the cache was made with {theirs!r}, the model claims {mine!r}")
    return lines


def _head_difference(info: dict[str, Any], model: nn.Module) -> str | None:
    """Why the model's head cannot take the cached maps (``None`` when it can or cannot tell)."""
    head = getattr(model, "head", model)
    channels, grid = getattr(head, "in_channels", None), getattr(head, "grid", None)
    c, t, h, w = info["feature_shape"]
    if channels is None or grid is None:
        return None
    if channels != c or (tuple(grid) != (t, h, w) and not getattr(head, "dynamic_size", False)):
        return (f"the head {type(head).__name__} takes feature maps [B, {channels}, {grid[0]}, {grid[1]}, {grid[2]}] "
                f"(C, t, h, w), the cache holds [N, {c}, {t}, {h}, {w}]; build the head for the cache's shape "
                f"(FeatureDataset.build_model does)")
    return None


def check_model(info: dict[str, Any], model: nn.Module, source: str = "the cache", *, weights: bool = True) -> None:
    """Refuse a model that the cached feature maps do not belong to.

    Checks, in this order: the head takes maps of the cached ``(C, t, h, w)``; the model's backbone has the
    cache's spec identity (:data:`IDENTITY_KEYS`) and data config, and claims the same named weights when
    both name them; and (``weights=True``) its weights have the cache's fingerprint.

    Args:
        info: the content of ``cache.json``.
        model: the model to check.
        source: the cache, as errors name it.
        weights: also compare the backbone's weights with the cache's fingerprint.

    Raises:
        FeatureCacheError: naming every difference found.
    """
    head = _head_difference(info, model)
    if head is not None:
        raise FeatureCacheError(f"{source} does not fit this model: {head}")
    lines = cache_differences(info, model)
    if lines:
        raise FeatureCacheError(
            f"{source} was made with another backbone or data config than the model claims:\n  "
            + "\n  ".join(lines) + "\nExtract the features again with this model, or build the model from the "
            "cache (FeatureDataset.build_model; taghead train --features without --backbone/--model)."
        )
    backbone = getattr(model, "backbone", None)
    fingerprint = backbone_fingerprint(backbone) if weights and isinstance(backbone, nn.Module) else None
    if fingerprint is not None and fingerprint != info.get("weights_sha256"):
        raise FeatureCacheError(
            f"{source} was made with other backbone weights than the model's (fingerprint {info.get('weights_sha256')} "
            f"vs {fingerprint}): the cached maps are not what this backbone computes. Build the model from the "
            "cache (FeatureDataset.build_model), which loads the weights the maps were extracted with."
        )
