"""Hugging Face Transformers checkpoints as backbone weights: a repository (on the Hugging Face Hub or in a local folder) holds a
model's ``config.json``, its weights and its preprocessing; the backbone is built from that config and the weights
are loaded into it.

Where a checkpoint comes from, as ``pretrained=`` (``create_backbone``), ``pretrained_backbone=`` (``wrap_backbone``,
``create_model``) or ``--pretrained-backbone`` take it for the ``transformers/...`` backbones:

- a registered tag, ``"transformers/videomae.base"`` (the repository ``MCG-NJU/videomae-base``);
- any Hub repository of one of the families, ``"hf-hub:<owner>/<repo>"``, optionally ``"...@<revision>"`` (a
  branch, tag or commit hash); its ``model_type`` must be the named backbone's family;
- a local folder holding such files (``save_pretrained`` output, or a copied snapshot).

The name ``"hf-hub:<owner>/<repo>"`` is also a backbone name by itself: the family comes from the repository's
``model_type`` and the bare encoder (``transformers/videomae``, ...) is built, random unless ``pretrained=True``.

Files go through the Hugging Face cache (``huggingface_hub.hf_hub_download``; ``HF_HUB_OFFLINE=1``: the cache only,
and a repository not in it is an error naming the repository and the cache folder). The weights file is
``model.safetensors``, else ``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``); the preprocessing
is ``video_preprocessor_config.json``, else ``preprocessor_config.json``; the model card's ``license`` and
``datasets`` are read when it has them. The files are taken from one commit, whose hash the spec records.

Loading: the file's keys are renamed by transformers' own conversion rules for the model (older checkpoints keep
older names: VideoMAE's ``q_bias``, ViViT's ``encoder.layer.``) and matched to the module as transformers does (a
checkpoint of a model with a head has the encoder under its base prefix, ``videomae.``; X-CLIP's under
``vision_model.``, which transformers 5.25 itself does not match); parts of the published
model the backbone does not have (VideoMAE's pre-training decoder, X-CLIP's text tower) are dropped; every key of
the backbone must be in the file with its shape, except the parts the adapter replaces (classifier, pooling, V-JEPA
2's predictor), which are loaded only where they fit. The data config: frames and crop from the model's config, the
resize, mean and std from the preprocessor config (on pixels in ``[0, 1]``: a processor computing ``(x * r - o - m)
/ s`` on 0-255 pixels ``x``, with ``o`` ViViT's offset, is mean ``(m + o) / (255 r)`` and std ``s / (255 r)``); what
the file leaves out comes from the family's transformers processor.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DataConfig
from .registry import BackboneEntry, BuiltBackbone, get_backbone_entry, import_extra
from .weights import (
    BackboneWeights,
    WeightsUnavailableError,
    classifier_keys,
    hub_cache_location,
    hub_file,
    load_backbone_state_dict,
    local_file_provenance,
    read_weights_file,
)

__all__ = ["HUB_PREFIX", "HubFamily", "TransformersCheckpoint", "TransformersRepos", "HubNames", "parse_hub_id",
           "fetch_checkpoint", "read_checkpoint_folder", "checkpoint_data_config", "load_checkpoint_state"]

HUB_PREFIX = "hf-hub:"
"""What starts a Hub repository's name: ``"hf-hub:<owner>/<repo>[@<revision>]"``."""
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
CARD_FILE = "README.md"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubFamily:
    """What loading a family's checkpoints needs to know.

    Attributes:
        key: the family's registered name without ``transformers/`` (``"videomae"``).
        title: its name in words.
        config_class: the transformers config class (``"VideoMAEConfig"``).
        model_types: the ``model_type`` values of its checkpoints' ``config.json``.
        config_key: where a checkpoint's config holds the family's config (``"vision_config"`` of X-CLIP), or
            ``None`` (the whole file).
        prefixes: where a checkpoint may hold the encoder's weights (``"videomae"`` in a model with a head).
        clip_fields: the config fields of the frames and the crop.
        processor_class: the transformers processor class of its checkpoints, whose defaults fill what a
            preprocessor config leaves out:
        processor: that class's ``(resize, crop), mean, std`` (its ``size``, ``crop_size``, ``image_mean``,
            ``image_std``).
        rescale: its default ``rescale_factor`` and whether it subtracts 1 after rescaling (ViViT's ``offset``).
        resize_from_crop: the processor resizes to ``int(crop * 256 / 224)`` whatever its size field (V-JEPA 2).
    """

    key: str
    title: str
    config_class: str
    model_types: tuple[str, ...]
    config_key: str | None
    prefixes: tuple[str, ...]
    clip_fields: tuple[str, str]
    processor_class: str
    processor: tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]
    rescale: tuple[float, bool] = (1 / 255, False)
    resize_from_crop: bool = False

    @property
    def name(self) -> str:
        """The bare encoder's registered name."""
        return f"transformers/{self.key}"


@dataclass(frozen=True)
class TransformersCheckpoint:
    """A model repository's files, read: where they came from, the commit, ``config.json``, the weights file, the
    preprocessor config and the model card's metadata.

    Attributes:
        source: ``"hf-hub:<owner>/<repo>"`` (without the revision), or the local folder's base name.
        repo_id: the Hub repository id, ``"<owner>/<repo>"``; ``None`` for a local folder.
        revision: the commit hash of the files (a Hub repository; the revision asked for when the commit is not
            known), or ``None`` (a local folder, or the default branch).
        config: the repository's ``config.json``, as read.
        weights_file: ``model.safetensors``, else ``pytorch_model.bin``; ``None`` when the weights were not
            asked for.
        processor: ``video_preprocessor_config.json``, else ``preprocessor_config.json``, as read; ``None`` when
            the repository has neither (or, offline, neither is in the cache).
        card: the YAML metadata of the model card (``README.md``): ``license``, ``datasets``, ...; ``{}`` when
            there is none.
    """

    source: str  # "hf-hub:<repo>" or the local folder's base name
    repo_id: str | None
    revision: str | None  # the commit hash of the files (Hub repositories)
    config: dict[str, Any]
    weights_file: Path | None
    processor: dict[str, Any] | None
    card: dict[str, Any]


# ---------------------------------------------------------------------------------------------------- fetching
def parse_hub_id(text: str) -> tuple[str, str | None]:
    """``"hf-hub:<owner>/<repo>[@<revision>]"`` -> ``(repo_id, revision)``, the repository id checked as the Hub
    checks it (``huggingface_hub.utils.validate_repo_id``).

    Args:
        text: the name, starting with :data:`HUB_PREFIX`; ``revision`` is ``None`` without an ``@``.

    Raises:
        ValueError: no ``"hf-hub:"`` prefix, an invalid repository id, or nothing after the ``@``.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(text, str) or not text.startswith(HUB_PREFIX):
        raise ValueError(f"a Hub repository is written 'hf-hub:<owner>/<repo>[@<revision>]', got {text!r}")
    repo_id, _, revision = text[len(HUB_PREFIX):].partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"{text!r} is not a Hub repository id ('hf-hub:<owner>/<repo>[@<revision>]'): {err}") from None
    if "@" in text[len(HUB_PREFIX):] and not revision:
        raise ValueError(f"{text!r}: nothing after '@'; give a branch, tag or commit hash, or leave out the '@'")
    return repo_id, revision or None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the {what} {str(path)!r}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the {what} {str(path)!r} is not a JSON object")
    return data


def _card_metadata(path: Path | None) -> dict[str, Any]:
    """The YAML metadata of a model card (``license``, ``datasets``, ...), ``{}`` when there is none."""
    if path is None:
        return {}
    from huggingface_hub.repocard import metadata_load

    try:
        return dict(metadata_load(path) or {})
    except Exception:  # a card without metadata, or metadata that is not YAML: nothing to read
        return {}


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/<file>``)."""
    parent = path.parent
    return parent.name if parent.parent.name == "snapshots" and _COMMIT.match(parent.name) else None


def fetch_checkpoint(repo_id: str, revision: str | None = None, *, weights: bool = True) -> TransformersCheckpoint:
    """The files of the Hub repository ``repo_id`` from the Hugging Face cache, downloaded into it when missing
    (``HF_HUB_OFFLINE=1``: the cache only): ``config.json`` first, then the other files from the same commit.

    Args:
        repo_id: ``"<owner>/<repo>"``.
        revision: a branch, tag or commit hash (default: the main branch).
        weights: fetch the weights file too (``False``: the architecture and preprocessing only).

    Raises:
        WeightsUnavailableError: ``config.json`` or the weights not in the cache and not downloadable; the message
            names the repository, the cache folder and the ways to give the files.
    """
    where = f"{hub_cache_location(repo_id)} (the Hugging Face cache, HF_HUB_CACHE)"
    source = HUB_PREFIX + repo_id + (f"@{revision}" if revision else "")
    config_path, failure = hub_file(repo_id, [CONFIG_FILE], revision=revision)
    if config_path is None:
        raise _unavailable(source, CONFIG_FILE, where, failure)
    commit = _snapshot_commit(config_path) or revision
    weights_path = None
    if weights:
        weights_path, failure = hub_file(repo_id, WEIGHT_FILES, revision=commit)
        if weights_path is None:
            raise _unavailable(source, " or ".join(WEIGHT_FILES), where, failure)
    processor_path = hub_file(repo_id, PROCESSOR_FILES, revision=commit)[0]
    card_path = hub_file(repo_id, [CARD_FILE], revision=commit)[0]
    return TransformersCheckpoint(
        HUB_PREFIX + repo_id, repo_id, commit, _read_json(config_path, f"config of {source}"), weights_path,
        _read_json(processor_path, f"preprocessor config of {source}") if processor_path else None,
        _card_metadata(card_path))


def _unavailable(source: str, files: str, where: str, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"the Hugging Face Hub repository {source} ({files}) is not in the local cache and could not be downloaded: "
        f"{why}. Its files belong in {where}. Either fetch it on a machine with network (`taghead weights download "
        f"{source}`) and copy the cache folder, or pass a local folder of the repository's files (config.json, the "
        "weights, the preprocessor config): pretrained='path/to/folder' or `--pretrained-backbone path/to/folder`."
    )


def read_checkpoint_folder(folder: str | os.PathLike, *, weights: bool = True) -> TransformersCheckpoint:
    """The files of a local folder in a repository's layout (``save_pretrained`` output, a copied snapshot).

    Args:
        folder: the folder (``~`` is expanded); it must hold ``config.json``.
        weights: require a weights file (``model.safetensors``, else ``pytorch_model.bin``); ``False``: the
            architecture and preprocessing only (:attr:`TransformersCheckpoint.weights_file` is ``None``).

    Raises:
        FileNotFoundError: no ``config.json`` in the folder, or no weights file when ``weights`` is set.
    """
    folder = Path(folder).expanduser()
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no {CONFIG_FILE}: a folder given as backbone weights holds a "
                                "transformers model's files (config.json, model.safetensors or pytorch_model.bin, "
                                "the preprocessor config)")
    found = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if weights and not found:
        raise FileNotFoundError(f"{str(folder)!r} has no weights file ({' or '.join(WEIGHT_FILES)})")
    processor = next((folder / name for name in PROCESSOR_FILES if (folder / name).is_file()), None)
    card = folder / CARD_FILE
    return TransformersCheckpoint(
        folder.name, None, None, _read_json(config_path, "config"), found[0] if weights else None,
        _read_json(processor, "preprocessor config") if processor else None,
        _card_metadata(card if card.is_file() else None))


# ------------------------------------------------------------------------------------------------- the model
def _family_config(checkpoint: TransformersCheckpoint, family: HubFamily,
                   config_dict: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The builder's ``config`` dict (``config_dict`` of the config object) of the checkpoint's config, read by
    transformers' own config class (``from_dict``)."""
    transformers = import_extra("transformers", f"backbone {family.name!r}", extra="hf")
    model_type = checkpoint.config.get("model_type")
    if model_type not in family.model_types:
        known = ", ".join(f"{m!r}" for m in family.model_types)
        raise ValueError(f"{checkpoint.source} holds a model of model_type {model_type!r}; backbone {family.name!r} "
                         f"takes {family.title} checkpoints (model_type {known}). Name the backbone "
                         f"'{HUB_PREFIX}<repo>' to have it chosen from the repository's model_type.")
    raw = dict(checkpoint.config)
    if family.config_key is not None and model_type != getattr(transformers, family.config_class).model_type:
        raw = dict(raw.get(family.config_key) or {})
    raw.pop("model_type", None)
    return config_dict(getattr(transformers, family.config_class).from_dict(raw))


def checkpoint_data_config(processor: Mapping[str, Any] | None, family: HubFamily,
                           config: Mapping[str, Any]) -> DataConfig | None:
    """The data config of a checkpoint: frames and crop from its (family) ``config``, resize and normalisation
    from its preprocessor config (the module docstring); ``None`` for a non-square model.

    Args:
        processor: the checkpoint's preprocessor config (:attr:`TransformersCheckpoint.processor`); ``None``:
            the family's processor defaults (:attr:`HubFamily.processor`) throughout.
        family: the checkpoint's family (its clip fields, processor defaults and rescaling).
        config: the family's config as a dict (the builder's ``config``), holding the frames and size fields
            :attr:`HubFamily.clip_fields` names.
    """
    frames_field, size_field = family.clip_fields
    size = config.get(size_field)
    height, width = (size, size) if isinstance(size, int) else tuple(size)  # type: ignore[misc]
    if height != width:
        return None
    processor = dict(processor or {})
    (edge, crop), mean, std = family.processor
    if processor.get("do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        mean, std = _rgb(processor.get("image_mean") or mean), _rgb(processor.get("image_std") or std)
    factor, offset = family.rescale
    if processor.get("do_rescale", True) is False:
        factor, offset = 1.0, False
    else:
        factor = float(processor.get("rescale_factor") or factor)
        offset = bool(processor.get("offset", offset))
    scale = 255 * factor
    crop = _edge(processor.get("crop_size"), short=False) or crop
    resize = _edge(processor.get("size"), short=True) or edge
    if family.resize_from_crop:
        resize = int(crop * 256 / 224)
    base = DataConfig(
        num_frames=int(config[frames_field]), crop_size=crop,
        resize_size=None if processor.get("do_resize", True) is False else resize,
        mean=tuple(round((m + offset) / scale, 8) for m in mean), std=tuple(round(s / scale, 8) for s in std))
    return base.with_clip(crop_size=int(height))  # the model's own crop, the processor's resize-to-crop ratio


def _rgb(value: Any) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"a preprocessor's image_mean and image_std have 3 values (RGB), got {value!r}")
    return values[0], values[1], values[2]


def _edge(value: Any, *, short: bool) -> int | None:
    """The side a processor's ``size`` (``short``: the shorter side it resizes to) or ``crop_size`` names."""
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        if short and value.get("shortest_edge"):
            return int(value["shortest_edge"])
        if value.get("height") and value.get("width"):
            return min(int(value["height"]), int(value["width"]))
    return None


def load_checkpoint_state(module: nn.Module, state: Mapping[str, torch.Tensor], family: HubFamily,
                          entry: BackboneEntry, *, source: str) -> None:
    """Load a checkpoint's ``state`` into the backbone ``module``: keys matched as described in the module
    docstring, the parts of the published model the backbone lacks dropped, the entry's ``classifier`` parts loaded
    where they fit.

    Args:
        module: the backbone built from the checkpoint's config, loaded in place.
        state: the checkpoint's state dict (:func:`~taghead.backbones.weights.read_weights_file`).
        family: the checkpoint's family (where a checkpoint may hold the encoder's weights).
        entry: the registered backbone (its ``classifier``: the parts the adapter replaces).
        source: what the weights are, named in the error message.

    Raises:
        StateDictMismatchError: a key of the backbone missing or mis-shaped, or an unexpected key inside it.
    """
    mapped = _match_layout(module, _renamed(module, state), family)
    load_backbone_state_dict(module, mapped, classifier=classifier_keys(module, entry.classifier), source=source)


def _renamed(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's keys renamed by transformers' own rules for this model (its checkpoint conversion mapping:
    e.g. VideoMAE's ``q_bias`` -> ``query.bias``, ViViT's ``encoder.layer.`` -> ``layers.``), as its
    ``from_pretrained`` renames them; a model whose checkpoints transformers converts tensor by tensor is refused."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # a transformers without checkpoint conversions: the keys are the model's
        return dict(state)
    transforms = get_model_conversion_mapping(module)
    converted = [t for t in transforms if not isinstance(t, WeightRenaming)]
    if converted:
        raise ValueError(f"transformers converts the tensors of {type(module).__name__} checkpoints "
                         f"({type(converted[0]).__name__}), which taghead does not: load the model with transformers' "
                         "from_pretrained and pass the module to wrap_backbone")
    renamed = {}
    for key, value in state.items():
        for transform in transforms:
            key = transform.rename_source_key(key)[0]
        renamed[key] = value
    return renamed


def _match_layout(module: nn.Module, state: Mapping[str, torch.Tensor],
                  family: HubFamily) -> dict[str, torch.Tensor]:
    """The checkpoint's keys renamed to the module's: as they are, without a prefix (the file of a model around the
    backbone) or with one (the file of a bare encoder, for a backbone with a head), whichever matches most keys;
    then the keys of submodules the backbone does not have, and top-level tensors it lacks (VideoMAE's
    ``mask_token``), are dropped (a key of a submodule it has stays, and is an error if that submodule has no such
    parameter or buffer)."""
    own = set(module.state_dict())
    top = {key.split(".", 1)[0] for key in own}
    candidates = [dict(state)]
    for prefix in dict.fromkeys((*family.prefixes, getattr(module, "base_model_prefix", ""))):
        if prefix:
            candidates.append({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
            if prefix in top:
                candidates.append({f"{prefix}.{k}": v for k, v in state.items()})
    best = max(candidates, key=lambda c: len(own.intersection(c)))
    modules = {name for name, _ in module.named_modules() if name}
    return {k: v for k, v in best.items() if k in own or k.rpartition(".")[0] in modules}


# ------------------------------------------------------------------------------------------------ the loaders
class TransformersRepos:
    """The :class:`~taghead.backbones.registry.RepoLoader` of one family's backbones (bare and with a head).

    Args:
        family: the family whose checkpoints it loads.
        config_dict: turns a transformers config object into the builder's ``config`` dict
            (:func:`taghead.backbones.transformers.config_dict`).
    """

    def __init__(self, family: HubFamily, config_dict: Callable[[Any], dict[str, Any]]) -> None:
        self.family = family
        self.config_dict = config_dict  # transformers config object -> the builder's config dict

    def build(self, entry: BackboneEntry, source: BackboneWeights | str | Path, kwargs: dict[str, Any], *,
              load_weights: bool, progress: bool) -> BuiltBackbone:
        """Build ``entry`` from ``source`` (module docstring); ``kwargs["config"]`` overrides the checkpoint's
        config fields (``{"drop_path_rate": 0.1}``, ``{"num_labels": 10}``).

        Args:
            entry: the registered backbone to build (bare encoder or ``...ForVideoClassification``).
            source: a registered tag's weights, a ``"hf-hub:<owner>/<repo>[@<revision>]"`` id, a local folder
                in a repository's layout, or a single weights file (the module then built from ``kwargs``
                alone).
            kwargs: the builder's keyword arguments (its ``config`` entry is taken out of this dict).
            load_weights: load the checkpoint's weights; ``False``: its architecture and data config with
                random weights (no weights file fetched, no provenance).
            progress: unused (the Hugging Face cache shows its own progress bars).
        """
        if isinstance(source, Path) and source.is_file():
            return self._from_file(entry, source, kwargs)
        tag = source if isinstance(source, BackboneWeights) else self._registered(entry, source)
        checkpoint = self.fetch(source, weights=load_weights)
        given = kwargs.pop("config", None)
        if given is not None and not isinstance(given, dict):
            raise TypeError(f"backbone {entry.name!r}: config must be a dict of {self.family.config_class} fields to "
                            f"change in the checkpoint's config, got {type(given).__name__}")
        config = {**_family_config(checkpoint, self.family, self.config_dict), **(given or {})}
        module = entry.builder(config=config, **kwargs)
        if load_weights:
            state = read_weights_file(checkpoint.weights_file)  # type: ignore[arg-type]
            load_checkpoint_state(module, state, self.family, entry, source=f"{checkpoint.source} "
                                  f"({checkpoint.weights_file.name})")  # type: ignore[union-attr]
        clip = checkpoint_data_config(checkpoint.processor, self.family, config)
        if checkpoint.processor is None:
            warnings.warn(f"{checkpoint.source} has no preprocessor config ({' or '.join(PROCESSOR_FILES)}; or it is not "
                          f"in the cache): the data config is the {self.family.title} processor's defaults",
                          stacklevel=3)
        provenance = _provenance(checkpoint, tag) if load_weights else None
        return BuiltBackbone(module, entry.name, clip, provenance)

    def fetch(self, source: BackboneWeights | str | Path, *, weights: bool = True) -> TransformersCheckpoint:
        """The checkpoint files of ``source``: a tag's or a ``"hf-hub:"`` repository, or a local folder.

        Args:
            source: a registered tag's weights (its Hub repository, default branch), a
                ``"hf-hub:<owner>/<repo>[@<revision>]"`` id, or a local folder.
            weights: fetch the weights file too (``False``: the architecture and preprocessing only).
        """
        if isinstance(source, Path):
            return read_checkpoint_folder(source, weights=weights)
        repo_id, revision = ((str(source.hf_hub_id), None) if isinstance(source, BackboneWeights)
                             else parse_hub_id(source))
        return fetch_checkpoint(repo_id, revision, weights=weights)

    def download(self, source: BackboneWeights | str, *, progress: bool) -> Path:
        """Put the repository's files into the Hugging Face cache; returns the folder holding them (the
        snapshot of the commit).

        Args:
            source: a registered tag's weights or a ``"hf-hub:<owner>/<repo>[@<revision>]"`` id.
            progress: unused (the Hugging Face cache shows its own progress bars).
        """
        checkpoint = self.fetch(source)
        return checkpoint.weights_file.parent  # type: ignore[union-attr]

    def _registered(self, entry: BackboneEntry, source: str | Path) -> BackboneWeights | None:
        """The entry's tag published as the ``"hf-hub:"`` repository ``source`` (its provenance names the tag)."""
        if not isinstance(source, str):
            return None
        repo_id, revision = parse_hub_id(source)
        matches = [w for w in entry.weights if w.hf_hub_id == repo_id]
        return matches[0] if len(matches) == 1 and revision is None else None

    def _from_file(self, entry: BackboneEntry, path: Path, kwargs: dict[str, Any]) -> BuiltBackbone:
        """A single weights file: the module from ``kwargs``' config, the file's keys matched to it."""
        module = entry.builder(**kwargs)
        load_checkpoint_state(module, read_weights_file(path), self.family, entry, source=repr(str(path)))
        return BuiltBackbone(module, entry.name, None, local_file_provenance(path))


def _provenance(checkpoint: TransformersCheckpoint, tag: BackboneWeights | None) -> dict[str, Any]:
    """``spec["backbone_weights"]`` of a checkpoint: the tag (if registered), the source, the weights file's name,
    the licence and data (the model card's, else the tag's) and the commit."""
    datasets = checkpoint.card.get("datasets")
    if isinstance(datasets, (list, tuple)):
        datasets = ", ".join(str(d) for d in datasets)
    license_ = checkpoint.card.get("license")
    if checkpoint.repo_id is None:
        return {**local_file_provenance(checkpoint.source), "license": _text(license_), "dataset": _text(datasets)}
    return {"tag": tag.tag if tag else None, "source": checkpoint.source,
            "filename": checkpoint.weights_file.name if checkpoint.weights_file else None,
            "license": _text(license_) or (tag.license if tag else None),
            "dataset": (tag.dataset if tag else None) or _text(datasets), "revision": checkpoint.revision}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class HubNames:
    """The ``"hf-hub:<repo>"`` backbone names (a :class:`~taghead.backbones.registry.NamePrefixHandler`): the
    family's bare encoder chosen from the repository's ``model_type``.

    Args:
        families: the families it recognises, by the ``model_type`` values of their checkpoints.
    """

    def __init__(self, families: Sequence[HubFamily]) -> None:
        self.families = {model_type: family for family in families for model_type in family.model_types}

    def _entry(self, name: str) -> BackboneEntry:
        """The bare encoder of the family that the repository's ``config.json`` names."""
        repo_id, revision = parse_hub_id(name)
        model_type = fetch_checkpoint(repo_id, revision, weights=False).config.get("model_type")
        if model_type not in self.families:
            known = sorted({f.title for f in self.families.values()})
            raise ValueError(f"{name} holds a model of model_type {model_type!r}; taghead wraps the Hugging Face Transformers "
                             f"video families {known} (model_type {sorted(self.families)})")
        return get_backbone_entry(self.families[model_type].name)

    def build(self, name: str, kwargs: dict[str, Any], *, load_weights: bool, progress: bool) -> BuiltBackbone:
        """The bare encoder of the repository ``name`` names, built by its family's
        :meth:`TransformersRepos.build` (its ``config.json`` is fetched first to read the ``model_type``).

        Args:
            name: ``"hf-hub:<owner>/<repo>[@<revision>]"``.
            kwargs: the builder's keyword arguments (``config``: fields overriding the checkpoint's).
            load_weights: load the repository's weights; ``False``: its architecture with random weights.
            progress: passed on to the family's loader.
        """
        entry = self._entry(name)
        return entry.repo_loader.build(entry, name, kwargs, load_weights=load_weights,  # type: ignore[union-attr]
                                       progress=progress)

    def download(self, name: str, *, progress: bool) -> Path:
        """Put the files of the repository ``name`` names into the Hugging Face cache; returns the folder holding
        them.

        Args:
            name: ``"hf-hub:<owner>/<repo>[@<revision>]"``.
            progress: passed on to the family's loader.
        """
        entry = self._entry(name)
        return entry.repo_loader.download(name, progress=progress)  # type: ignore[union-attr]
