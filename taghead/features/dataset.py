"""``FeatureDataset``: one split of a feature cache as ``(feature map, label)`` items, read lazily from the shards.

Nothing but the index, the labels and the shard headers is read when the dataset is opened; an item is
one map (one view of one clip) read from its shard file at the offset the safetensors header gives (a
plain positioned read of ``C*T*H*W`` values: no memory map, so neither the process's memory nor its
resident file pages grow with the cache; the operating system's page cache does the caching). Memory
therefore stays at the size of the batches, not of the cache, in the main process and in DataLoader
workers alike.

Views: a split extracted with ``V`` augmented views per clip serves, for each clip, one view per epoch,
drawn from a generator seeded with ``(seed, epoch, clip index)``; the :class:`~taghead.engine.Trainer`
calls :meth:`FeatureDataset.set_epoch`. The draw is thus the same with or without workers, processes or a
resume, and does not touch the global random generators.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import DataConfig
from .cache import (
    FEATURE_DTYPES,
    INDEX_JSON,
    FeatureCacheError,
    as_json,
    backbone_fingerprint,
    check_model,
    read_cache_info,
    read_split_index,
    split_folder,
)

__all__ = ["FeatureDataset"]

_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.float32: "F32"}
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32}


def _damaged(path: Path, why: str) -> FeatureCacheError:
    return FeatureCacheError(f"the feature shard {str(path)!r} {why}; extract the split again")


def _read_shard(path: Path, rows: int, views: int, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[int, torch.Tensor,
                                                                                                        torch.Tensor]:
    """``(byte offset of the features, labels, indices)`` of a shard, checked against what the index says."""
    from safetensors import safe_open

    expected = {"features": ([rows, views, *shape], _SAFETENSORS_DTYPES[dtype]), "labels": ([rows], "I64"),
                "indices": ([rows], "I64")}
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            labels, indices = handle.get_tensor("labels"), handle.get_tensor("indices")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise _damaged(path, f"cannot be read ({err})") from None
    except Exception as err:  # safetensors' own error type
        raise _damaged(path, f"is not a valid safetensors file ({err})") from None
    for name, (want_shape, want_dtype) in expected.items():
        entry = header.get(name) or {}
        if entry.get("shape") != want_shape or entry.get("dtype") != want_dtype:
            raise _damaged(path, f"holds {name} {entry.get('dtype')} {entry.get('shape')}, the index says {want_dtype} "
                                 f"{want_shape}")
    start, end = header["features"]["data_offsets"]
    if path.stat().st_size < 8 + size + end:
        raise _damaged(path, "is truncated")
    return 8 + size + start, labels, indices


class FeatureDataset(Dataset):
    """The cached feature maps of one split: ``(float32 [C, T, H, W], label)`` per clip, in dataset order.

    Args:
        root: the cache folder (``taghead extract-features --output``).
        split: the split's name (``"train"``, ``"val"``, ...).
        view: which view of a multi-view split to serve: ``None`` (default) one drawn per clip and epoch,
            or a fixed view index.
        seed: seeds the view draws (with the epoch and the clip index).

    Attributes:
        inputs: ``"features"``: the items are feature maps, not videos (the Trainer then runs the head only).
        info: the cache's ``cache.json`` (backbone spec, data config, weights fingerprint, ...).
        index: the split's ``index.json``.
        data_config: the :class:`~taghead.DataConfig` of the clips the maps come from.
        feature_shape: ``(C, T, H, W)`` of every map.
        views: views per clip in the split.
        class_names, num_classes: the classes (as the extraction's dataset named them).
        labels: ``int64 [N]`` labels; ``indices``: the clips' indices in the extraction's dataset.
        sources: the source file of each item; ``skipped``: the videos the extraction could not read.

    Raises:
        FeatureCacheError: no such cache or split, an incomplete extraction, or damaged shards.
    """

    inputs = "features"

    def __init__(self, root: str | os.PathLike, split: str = "train", *, view: int | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        self.split = split
        self.info = read_cache_info(self.root)
        self.folder = split_folder(self.root, split)
        index = read_split_index(self.folder)
        if index is None:
            found = sorted(p.name for p in self.root.iterdir() if (p / INDEX_JSON).is_file())
            raise FeatureCacheError(f"the feature cache {str(self.root)!r} has no split {split!r} (splits: {found})")
        done = sum(s["rows"] for s in index["shards"]) + len(index["skipped"])
        if not index.get("complete"):
            raise FeatureCacheError(
                f"the extraction of {str(self.folder)!r} is incomplete ({done} of {index['num_items']} clips): run it "
                "again with the same options to resume it (taghead extract-features ... or extract_features(...))")
        self.index = index
        self.views = int(index["views"])
        self.feature_shape = tuple(int(v) for v in index["feature_shape"])
        self.data_config = DataConfig.from_dict(self.info["data_config"])
        self.spec: dict[str, Any] = dict(self.info["spec"])
        if view is not None and not (isinstance(view, int) and 0 <= view < self.views):
            raise ValueError(f"view must be None or an int in [0, {self.views}), got {view!r}")
        self.view, self.seed, self.epoch = view, int(seed), 0
        self._dtype = FEATURE_DTYPES[index["dtype"]]
        self._map_bytes = math.prod(self.feature_shape) * torch.empty((), dtype=self._dtype).element_size()
        self._files: list[Path] = []
        self._offsets: list[int] = []
        shard_of, row_of, labels, indices = [], [], [], []
        for number, shard in enumerate(index["shards"]):
            path = self.folder / shard["file"]
            offset, shard_labels, shard_indices = _read_shard(path, shard["rows"], self.views, self.feature_shape,
                                                              self._dtype)
            if shard_indices.tolist() != shard["indices"]:
                raise _damaged(path, "holds other clips than the index says")
            self._files.append(path)
            self._offsets.append(offset)
            shard_of += [number] * shard["rows"]
            row_of += range(shard["rows"])
            labels.append(shard_labels)
            indices.append(shard_indices)
        if not self._files:
            raise FeatureCacheError(f"{str(self.folder)!r} holds no feature maps (every video was unreadable?)")
        order = torch.argsort(torch.cat(indices))
        self.indices = torch.cat(indices)[order]
        self.labels = torch.cat(labels)[order]
        self._shard_of = torch.tensor(shard_of, dtype=torch.int32)[order]
        self._row_of = torch.tensor(row_of, dtype=torch.int32)[order]
        self.sources = [index["sources"][i] for i in self.indices.tolist()]
        self.skipped: list[dict[str, Any]] = list(index["skipped"])
        names = index.get("class_names")
        self.class_names = list(names) if names else [str(i) for i in range(int(self.labels.max()) + 1)]
        self.num_classes = len(self.class_names)

    # ------------------------------------------------------------------------------------ items
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose views :meth:`view_of` serves (called by the Trainer before each epoch).

        Args:
            epoch: the epoch about to start.
        """
        self.epoch = int(epoch)

    def view_of(self, item: int) -> int:
        """The view served for ``item`` in the current epoch.

        Args:
            item: the item's position in the dataset.
        """
        if self.view is not None:
            return self.view
        if self.views == 1:
            return 0
        return int(np.random.default_rng((self.seed, self.epoch, int(self.indices[item]))).integers(self.views))

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if not -n <= item < n:
            raise IndexError(f"index {item} out of range for a feature split of {n} clips")
        item %= n
        shard = int(self._shard_of[item])
        offset = self._offsets[shard] + (int(self._row_of[item]) * self.views + self.view_of(item)) * self._map_bytes
        buffer = bytearray(self._map_bytes)
        with open(self._files[shard], "rb") as fh:
            fh.seek(offset)
            if fh.readinto(buffer) != self._map_bytes:
                raise _damaged(self._files[shard], "is truncated")
        # numpy converts float16 to float32 in this thread: torch would split a map this size across its threads,
        # which costs more than the conversion (and far more on a busy machine)
        features = np.frombuffer(buffer, dtype=_NUMPY_DTYPES[self._dtype]).astype(np.float32, copy=False)
        return torch.from_numpy(features).view(self.feature_shape), int(self.labels[item])

    # --------------------------------------------------------------------------- the model side
    def check_model(self, model: nn.Module, *, weights: bool = True) -> None:
        """Refuse a model whose backbone, data config, weights (when ``weights``) or head do not fit these maps
        (:func:`taghead.features.cache.check_model`), or whose classes are not the split's.

        Args:
            model: the classifier to train on the maps.
            weights: also compare the backbone's weights with the cache's fingerprint.

        Raises:
            FeatureCacheError: naming every difference.
        """
        check_model(self.info, model, source=f"the feature cache {str(self.root)!r} (split {self.split!r})", weights=weights)
        n = getattr(model, "num_classes", None)
        top = int(self.labels.max())
        if isinstance(n, int) and top >= n:
            raise FeatureCacheError(f"the split {self.split!r} has labels up to {top}, the model {n} classes")
        names = getattr(model, "label_names", None)
        if names and len(names) == self.num_classes and list(names) != self.class_names:
            raise FeatureCacheError(f"the model's classes {list(names)[:5]}... are not the cache's "
                                    f"{self.class_names[:5]}... (another class order?)")

    def load_backbone_weights(self, backbone: nn.Module) -> None:
        """Load the weights the maps were extracted with (``backbone.safetensors``, checked against the
        fingerprint in ``cache.json``) into ``backbone`` (a feature extractor of the cache's spec).

        Args:
            backbone: the feature extractor to load into.
        """
        from ..weights import load_safetensors, load_state_dict_checked

        path = self.root / self.info["weights_file"]
        state = load_safetensors(path)
        fingerprint = backbone_fingerprint(state)
        if fingerprint != self.info["weights_sha256"]:
            raise FeatureCacheError(f"{str(path)!r} does not hold the weights the maps were extracted with (fingerprint "
                                    f"{fingerprint}, cache.json says {self.info['weights_sha256']}): the file was changed "
                                    "or damaged; extract the features again")
        load_state_dict_checked(backbone, state, source=repr(str(path)))

    def build_model(self, head: str = "tag", *, num_classes: int | None = None, label_names: list[str] | None = None,
                    backbone: nn.Module | None = None, **head_kwargs: Any) -> nn.Module:
        """A full :class:`~taghead.VideoClassifier` for these maps: the cache's backbone (rebuilt from its spec,
        with the weights the maps were extracted with, frozen) and a new head for the cached ``(C, t, h, w)``.

        The backbone is built before the head, as :func:`taghead.wrap_backbone` does, so after the same seed
        the head starts from the same weights as in ``wrap_backbone(name, ..., head=head)``.

        Args:
            head: a registered head name (or a head factory, see :func:`taghead.create_head`).
            num_classes: classifier outputs (default: the split's classes).
            label_names: class names (default: the split's).
            backbone: the backbone module when the cache was made around a module taghead cannot rebuild by
                name (``spec["backbone"] is None``).
            head_kwargs: passed to the head.
        """
        from ..heads.registry import registered_head_name
        from ..models.classifier import VideoClassifier
        from ..models.spec import build_feature_extractor
        from ..models.wrap import build_head

        extractor = build_feature_extractor(self.spec, backbone)
        cfg = self.data_config
        extractor.clip = (cfg.num_frames, cfg.crop_size)
        self.load_backbone_weights(extractor)
        names = list(label_names) if label_names is not None else list(self.class_names)
        num_classes = num_classes if num_classes is not None else len(names)
        described = self.spec.get("backbone") or type(extractor.model).__qualname__
        head_module = build_head(head, self.feature_shape, num_classes, head_kwargs, described)
        extractor.freeze()
        head_name = registered_head_name(head_module)
        get_config = getattr(head_module, "get_config", None)
        spec = dict(self.spec, head=head_name, freeze_backbone=True,
                    head_config=as_json(get_config(), "head config") if head_name and callable(get_config) else None)
        model = VideoClassifier(extractor, head_module, cfg, spec=spec,
                                label_names=names if len(names) == num_classes else None)
        self.check_model(model, weights=False)  # the weights were just loaded and checked
        return model

    def __repr__(self) -> str:
        c, t, h, w = self.feature_shape
        return (f"FeatureDataset({str(self.folder)!r}: {len(self)} clips x {self.views} view(s) of [{c}, {t}, {h}, {w}] "
                f"{self.index['dtype']}, {self.num_classes} classes)")
