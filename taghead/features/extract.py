"""``extract_features``: run a frozen backbone once over a dataset and store its feature maps (resumable, sharded).

Each clip goes through ``model.backbone`` in eval mode without gradients, and its map ``[C, T, H, W]`` is
stored with the label and the dataset index in a shard of the split folder (layout in
:mod:`taghead.features.cache`). With ``views=V`` every clip is transformed ``V`` times (``dataset.decode``
once and ``dataset.transform`` ``V`` times for a :class:`~taghead.data.VideoClipDataset`, else ``V`` calls
of ``dataset[i]``): with a training dataset (random crops and flips) the cache keeps ``V`` augmentations
per clip, of which training draws one per epoch. The randomness of clip ``i`` comes from a generator
seeded with ``(seed, i)``, so the views do not depend on the workers, the processes or a resume.

Resuming: the split's ``index.json`` lists the shards written so far; an extraction started again with
the same model, dataset and settings skips the clips those shards hold. Under ``torchrun`` process ``r``
of ``W`` takes every ``W``-th clip left and writes its own shards (``r<rank>-<first index>``); after every
round of shards the processes exchange what they wrote and rank 0 rewrites the index, so a killed run
loses at most one round (``shard_size`` clips per process).

Unreadable videos are skipped (a :class:`~taghead.data.CorruptVideoWarning` names each), counted and
listed in the index with the reason; they are not retried on resume.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..engine.distributed import DistributedContext, all_gather_objects, barrier
from ..limits import without_local_builder_arguments
from ..models.spec import SPEC_KEYS
from ..version import __version__
from ..weights import atomic_write_json, save_safetensors
from .cache import (
    BACKBONE_WEIGHTS,
    CACHE_FORMAT,
    CACHE_JSON,
    CACHE_VERSION,
    FEATURE_DTYPES,
    SPLIT_FORMAT,
    FeatureCacheError,
    as_json,
    backbone_fingerprint,
    cache_differences,
    read_cache_info,
    read_split_index,
    split_folder,
    write_split_index,
)

__all__ = ["extract_features", "DEFAULT_SHARD_CLIPS", "SHARD_BYTES"]

DEFAULT_SHARD_CLIPS = 256
"""Clips per shard (per process) unless ``shard_size`` is given: the most a killed extraction loses."""
SHARD_BYTES = 256 * 2**20
"""The most bytes of features per shard (held in memory until the shard is written); with
:data:`DEFAULT_SHARD_CLIPS`, the smaller limit decides."""
#: Index settings that must match when an extraction resumes.
_SETTINGS = ("views", "dtype", "amp", "num_items", "sources", "class_names", "transform", "seed", "feature_shape")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SHARD_NAME = re.compile(r"^r\d+-\d+\.safetensors$")
_SHARD_TEMP = re.compile(r"^\.r\d+-\d+\.safetensors\..*\.tmp$")  # atomic_output's temporary files


def _item_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index)) % 2**63


class _ExtractionItems(Dataset):
    """``(index, views [V, 3, T, H, W] or None, label, reason)`` for the dataset indices ``indices``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], views: int, seed: int) -> None:
        self.dataset, self.indices, self.views, self.seed = dataset, list(indices), views, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor | None, int, str | None]:
        from ..data import VideoDecodeError

        index = self.indices[k]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_item_seed(self.seed, index))
            try:
                clips, label = self._views(index)
            except VideoDecodeError as err:
                return index, None, -1, err.reason
        if not all(isinstance(c, torch.Tensor) for c in clips):
            raise TypeError(f"extract_features needs items (video tensor [3, T, H, W], label); item {index} of "
                            f"{type(self.dataset).__name__} gives a {type(clips[0]).__name__}")
        return index, torch.stack(clips), int(label), None

    def _views(self, index: int) -> tuple[list[Any], int]:
        decode, transform = getattr(self.dataset, "decode", None), getattr(self.dataset, "transform", None)
        if callable(decode) and callable(transform):  # a VideoClipDataset: decode once, transform V times
            frames = decode(index)
            return [transform(frames) for _ in range(self.views)], self.dataset.samples[index].label
        items = [self.dataset[index] for _ in range(self.views)]
        return [video for video, _ in items], int(items[0][1])


def _keep_items(batch: list[Any]) -> list[Any]:
    return batch


def _sources(dataset: Dataset) -> list[str]:
    samples = getattr(dataset, "samples", None)
    if samples is not None and all(hasattr(s, "path") for s in samples):
        return [str(s.path) for s in samples]
    return [f"{type(dataset).__name__}[{i}]" for i in range(len(dataset))]


def _transform_name(dataset: Dataset) -> str | None:
    """The dataset's transform in words (``repr``), ``None`` when it has none."""
    transform = getattr(dataset, "transform", None)
    return repr(transform) if transform is not None else None


def _cache_spec(model: nn.Module) -> dict[str, Any]:
    """The model's spec with every spec key present (``None`` where unknown) and its extra entries (e.g. the
    backbone weights' provenance); the head entries are left empty: the head is chosen when training."""
    spec = dict(getattr(model, "spec", None) or {})
    full = {key: spec.get(key) for key in SPEC_KEYS}
    full.update({k: v for k, v in spec.items() if k not in full}, head=None, head_config=None, freeze_backbone=True)
    full, dropped = without_local_builder_arguments(full)  # as a saved model's config: no local file named
    if dropped:
        warnings.warn(f"the cache's description leaves out the builder arguments that name local files "
                      f"({', '.join(dropped)}); the cached backbone weights are the ones used", UserWarning, stacklevel=4)
    return as_json(full, "the model spec")


def _describe_backbone(model: nn.Module, feature_shape: tuple[int, ...], fingerprint: str) -> dict[str, Any]:
    from ..heads.io import pretrained_cfg_dict

    spec = _cache_spec(model)
    return dict(format=CACHE_FORMAT, version=CACHE_VERSION, taghead_version=__version__, spec=spec,
                data_config=model.data_config.to_dict(), backbone_weights=spec.get("backbone_weights"),
                architecture=getattr(model, "architecture", None), pretrained_cfg=pretrained_cfg_dict(model),
                weights_file=BACKBONE_WEIGHTS, weights_sha256=fingerprint, feature_shape=list(feature_shape))


def _prepare_cache(root: Path, model: nn.Module, feature_shape: tuple[int, ...]) -> dict[str, Any]:
    """Rank 0: ``cache.json`` and ``backbone.safetensors`` (written, or checked against the model when present)."""
    fingerprint = backbone_fingerprint(model.backbone)
    if (root / CACHE_JSON).is_file():
        info = read_cache_info(root)
        lines = cache_differences(info, model)
        if info.get("weights_sha256") != fingerprint:
            lines.append(f"backbone weights: fingerprint {info.get('weights_sha256')} in the cache, {fingerprint} "
                         "in the model")
        if list(info.get("feature_shape") or []) != list(feature_shape):
            lines.append(f"feature shape: {info.get('feature_shape')} in the cache, {list(feature_shape)} for the model")
        if lines:
            raise FeatureCacheError(f"{str(root)!r} already holds features of another backbone:\n  " + "\n  ".join(lines)
                                    + "\nExtract into another folder (a cache holds the maps of one backbone).")
        if not (root / BACKBONE_WEIGHTS).is_file():
            save_safetensors(model.backbone.state_dict(), root / BACKBONE_WEIGHTS)
        return info
    save_safetensors(model.backbone.state_dict(), root / BACKBONE_WEIGHTS)
    info = _describe_backbone(model, feature_shape, fingerprint)
    atomic_write_json(root / CACHE_JSON, info)  # last: it names the weights file written before it
    return info


def _prepare_split(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Rank 0: the split's index, new or (to resume) the existing one when its settings are these; what a killed
    run left behind (unregistered shards, temporary files) is removed."""
    index = read_split_index(folder)
    if index is None:
        index = dict(format=SPLIT_FORMAT, version=CACHE_VERSION, split=folder.name, **settings, shards=[], skipped=[],
                     complete=False)
        write_split_index(folder, index)
    changed = [key for key in _SETTINGS if as_json(index.get(key), key) != as_json(settings[key], key)]
    if changed:
        shown = ", ".join(f"{k} (saved {_short(index.get(k))}, now {_short(settings[k])})" for k in changed)
        raise FeatureCacheError(f"{str(folder)!r} holds an extraction with other settings: {shown}. Resume it with "
                                "the same dataset and options, or extract into another split or folder.")
    registered = {shard["file"] for shard in index["shards"]}
    for path in folder.iterdir():
        if (_SHARD_NAME.match(path.name) and path.name not in registered) or _SHARD_TEMP.match(path.name):
            path.unlink()
    return index


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(value)} items)" if isinstance(value, list) else text[:77] + "..."


def _rank0(fn: Callable[[], Any], ctx: DistributedContext) -> Any:
    """``fn()`` on rank 0; its result (or its error, raised everywhere) reaches every process."""
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:  # every rank must hear of it, or they would wait for rank 0 forever
            error = err
    gathered = all_gather_objects((result, None if error is None else f"{type(error).__name__}: {error}"), ctx)[0]
    if error is not None:
        raise error
    if gathered[1] is not None:
        raise FeatureCacheError(f"rank 0 stopped the extraction: {gathered[1]}")
    return gathered[0]


class _ShardWriter:
    """Collects one process's rows; ``flush`` writes them as a shard and, with the other processes, registers it."""

    def __init__(self, folder: Path, index: dict[str, Any], ctx: DistributedContext) -> None:
        self.folder, self.index, self.ctx = folder, index, ctx
        self.rows: list[tuple[int, torch.Tensor, int]] = []
        self.skipped: list[dict[str, Any]] = []
        self.first: int | None = None

    def add(self, index: int, features: torch.Tensor | None, label: int, reason: str | None, source: str) -> None:
        if self.first is None:
            self.first = index
        if features is None:
            from ..data import CorruptVideoWarning

            warnings.warn(f"skipping unreadable video {source!r} ({reason}); it is left out of the feature cache",
                          CorruptVideoWarning, stacklevel=2)
            self.skipped.append(dict(index=index, source=source, reason=reason))
        else:
            self.rows.append((index, features, label))

    def flush(self) -> None:
        """Write the collected rows (if any) as one shard, then register it with every process's (collective)."""
        meta = None
        if self.rows:
            name = f"r{self.ctx.rank}-{self.first:07d}.safetensors"
            tensors = {
                "features": torch.stack([f for _, f, _ in self.rows]),
                "labels": torch.tensor([y for _, _, y in self.rows], dtype=torch.int64),
                "indices": torch.tensor([i for i, _, _ in self.rows], dtype=torch.int64),
            }
            save_safetensors(tensors, self.folder / name, metadata={"split": self.folder.name, "rank": str(self.ctx.rank)})
            meta = dict(file=name, rank=self.ctx.rank, rows=len(self.rows), indices=[i for i, _, _ in self.rows])
        gathered = all_gather_objects((meta, self.skipped), self.ctx)
        if self.ctx.is_main:
            for shard, skipped in gathered:
                if shard is not None:
                    self.index["shards"].append(shard)
                self.index["skipped"].extend(skipped)
            write_split_index(self.folder, self.index)
        self.rows, self.skipped, self.first = [], [], None


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    root: str | os.PathLike,
    *,
    split: str = "train",
    views: int = 1,
    dtype: str = "float16",
    batch_size: int = 8,
    workers: int = 0,
    shard_size: int | None = None,
    seed: int = 0,
    amp: str = "none",
    ctx: DistributedContext | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``model.backbone`` over ``dataset`` once and store the feature maps in the cache ``root``, split ``split``.

    Args:
        model: a :class:`~taghead.VideoClassifier` (its head is not used); the backbone runs in eval mode
            without gradients on ``ctx.device`` (it is moved there).
        dataset: ``(video [3, T, H, W], label)`` items for the model's data config, e.g. a
            :class:`~taghead.data.VideoClipDataset` (its unreadable videos are skipped, not replaced).
        root: the cache folder (created; ``root/cache.json`` and ``root/backbone.safetensors`` describe and
            hold the backbone, ``root/<split>/`` the maps). A cache holds one backbone: a folder made with
            another backbone, data config or weights is refused.
        split: the split's folder name.
        views: transformed copies per clip (use a training dataset, whose transform is random, for ``V > 1``).
        dtype: ``"float16"`` (default; half the disk) or ``"float32"`` (bit-exact maps).
        batch_size: clips per backbone call (``batch_size * views`` clips run together).
        workers: DataLoader worker processes (decoding in parallel).
        shard_size: clips per shard and process (default: :data:`DEFAULT_SHARD_CLIPS`, fewer when a shard
            would exceed :data:`SHARD_BYTES`).
        seed: seeds each clip's random transform (with its index).
        amp: ``"none"``, or ``"bf16"`` / ``"fp16"`` autocast for the backbone (GPU; the maps differ slightly
            from float32 computation; recorded in the index).
        ctx: the process's place under torchrun (default: one process on the model's device).
        progress: a tqdm bar on rank 0.
        log: where rank 0's summary line goes.

    Returns:
        the split's index (``index.json``): settings, ``shards``, ``skipped`` and ``complete``.

    Raises:
        FeatureCacheError: the folder holds another backbone's cache, or an extraction with other settings.
    """
    from tqdm.auto import tqdm

    for name, value in (("views", views), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if shard_size is not None and (isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1):
        raise ValueError(f"shard_size must be a positive int or None, got {shard_size!r}")
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(FEATURE_DTYPES)}, got {dtype!r}")
    if amp not in ("none", *_AMP_DTYPES):
        raise ValueError(f"amp must be one of {('none', *_AMP_DTYPES)}, got {amp!r}")
    backbone = getattr(model, "backbone", None)
    data_config = getattr(model, "data_config", None)
    if not isinstance(backbone, nn.Module) or data_config is None:
        raise TypeError(f"extract_features needs a taghead.VideoClassifier (backbone, data_config, spec), got "
                        f"{type(model).__name__}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    root = Path(root)
    folder = split_folder(root, split)
    if ctx is None:
        ref = next(iter(backbone.parameters()), None)
        ctx = DistributedContext(device=ref.device if ref is not None else torch.device("cpu"))
    torch_dtype = FEATURE_DTYPES[dtype]
    shape = tuple(backbone.feature_shape(data_config.num_frames, data_config.crop_size))
    per_clip = views * math.prod(shape) * torch.empty((), dtype=torch_dtype).element_size()
    shard_size = shard_size or max(1, min(DEFAULT_SHARD_CLIPS, SHARD_BYTES // per_clip))

    def setup() -> dict[str, Any]:
        root.mkdir(parents=True, exist_ok=True)
        _prepare_cache(root, model, shape)
        names = getattr(dataset, "class_names", None) or getattr(model, "label_names", None)
        settings = dict(views=views, dtype=dtype, amp=amp, num_items=len(dataset), sources=_sources(dataset),
                        class_names=list(names) if names else None,
                        transform=_transform_name(dataset), seed=seed, feature_shape=list(shape))
        folder.mkdir(parents=True, exist_ok=True)
        return _prepare_split(folder, settings)

    index = _rank0(setup, ctx)
    done = {i for shard in index["shards"] for i in shard["indices"]} | {s["index"] for s in index["skipped"]}
    remaining = [i for i in range(len(dataset)) if i not in done]
    mine = remaining[ctx.rank::ctx.world_size]
    rounds = math.ceil(len(remaining[0::ctx.world_size]) / shard_size)  # rank 0 has the most clips
    if ctx.is_main and done and remaining:
        log(f"resuming the extraction of {folder}: {len(done)} of {len(dataset)} clips done, {len(remaining)} to go")

    writer = _ShardWriter(folder, index, ctx)
    loader = DataLoader(_ExtractionItems(dataset, mine, views, seed), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_keep_items, pin_memory=ctx.device.type == "cuda")
    sources = index["sources"]
    was_training = backbone.training
    backbone.to(ctx.device).eval()
    t0, flushed, attempted = time.time(), 0, 0
    bar = tqdm(total=len(mine), desc=f"extracting {split}", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    try:
        for batch in loader:
            good = [item for item in batch if item[1] is not None]
            maps: dict[int, torch.Tensor] = {}
            if good:
                video = torch.cat([clips for _, clips, _, _ in good]).to(ctx.device, non_blocking=True)
                with torch.no_grad(), torch.autocast(ctx.device.type, dtype=_AMP_DTYPES.get(amp, torch.float32),
                                                     enabled=amp != "none"):
                    out = backbone(video)
                if tuple(out.shape[1:]) != shape:
                    raise FeatureCacheError(f"the backbone gave feature maps {list(out.shape[1:])}, expected {list(shape)}")
                out = out.to(torch_dtype).cpu().view(len(good), views, *shape)
                if not torch.isfinite(out).all():
                    why = ("the maps exceed float16's range (65504): extract with dtype='float32'" if dtype == "float16"
                           else "the backbone computed them")
                    raise FeatureCacheError(f"non-finite feature values in the {dtype} maps of the clips "
                                            f"{[sources[i] for i, *_ in good]}: {why}")
                maps = {item[0]: out[k] for k, item in enumerate(good)}
            for index_, _, label, reason in batch:
                writer.add(index_, maps.get(index_), label, reason, sources[index_])
                attempted += 1
                if attempted % shard_size == 0 or attempted == len(mine):
                    writer.flush()
                    flushed += 1
            bar.update(len(batch))
        for _ in range(flushed, rounds):  # the rounds other processes still write shards in
            writer.flush()
    finally:
        bar.close()
        backbone.train(was_training)

    if ctx.is_main:
        index["complete"] = True
        write_split_index(folder, index)
        rows = sum(s["rows"] for s in index["shards"])
        size = sum((folder / s["file"]).stat().st_size for s in index["shards"])
        line = (f"{split}: {rows} clips x {views} view(s) in {folder} ({len(index['shards'])} shards, {size / 2**20:.1f} MiB, "
                f"{size / max(rows, 1) / 1024:.1f} KiB per clip; {time.time() - t0:.1f} s)")
        if index["skipped"]:
            shown = ", ".join(f"{os.path.basename(s['source'])} ({s['reason']})" for s in index["skipped"][:5])
            more = f" and {len(index['skipped']) - 5} more" if len(index["skipped"]) > 5 else ""
            line += f"; {len(index['skipped'])} unreadable video(s) of {len(dataset)} skipped: {shown}{more}"
        log(line)
    barrier(ctx)
    return read_split_index(folder) or index
