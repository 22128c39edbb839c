"""Published backbone weights: what a tag names, where its file lives, and loading it into a backbone.

A backbone registered by name (:func:`taghead.register_backbone`) lists its published weights by tag,
timm style: ``"torchvision/r2plus1d_18.kinetics400_v1"`` is the tag ``kinetics400_v1`` of the backbone
``torchvision/r2plus1d_18``. A :class:`BackboneWeights` records where the file comes from (a URL or a
Hugging Face Hub repository), its file name, licence, dataset, the width of its classifier and the
clip the weights were trained or evaluated with (a :class:`~taghead.DataConfig`).

Files go through the ordinary caches:

- URL weights: torch.hub's, ``$TORCH_HOME/hub/checkpoints/<file name>`` (:func:`torch.hub.get_dir`);
  on download the SHA-256 of the file must start with the hex digits of its name
  (``r2plus1d_18-91a641e6.pth``), as ``torch.hub.load_state_dict_from_url(check_hash=True)`` checks;
  a download that stalls for :data:`DOWNLOAD_TIMEOUT` seconds fails.
- Hub weights (timm's): the Hugging Face cache (``huggingface_hub.hf_hub_download``; ``HF_HUB_OFFLINE=1``
  reads the cache only).

Files are read with ``torch.load(weights_only=True)`` or safetensors only. The classifier of the file
(its Kinetics-400, IG-65M or ImageNet classes) is never forced onto a model: it is loaded only into a
classifier of the same shape and dropped otherwise; every other key must match (else a
:class:`~taghead.weights.StateDictMismatchError` lists the missing, unexpected and mis-shaped keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DataConfig
from ..weights import (
    CheckpointError,
    atomic_output,
    check_state_dict,
    load_safetensors,
    load_torch_checkpoint,
    unwrap_state_dict,
)

__all__ = [
    "BackboneWeights", "WeightsUnavailableError", "DOWNLOAD_TIMEOUT", "HASH_REGEX", "LOCAL_FILE_SOURCE",
    "torch_hub_cache_path", "hub_cache_location", "hub_offline", "hub_file", "cached_weights_file",
    "fetch_weights_file", "download_url", "sha256_file",
    "read_weights_file", "classifier_keys", "load_backbone_state_dict", "timm_backbone_weights", "weights_table",
]

DOWNLOAD_TIMEOUT = 30.0
"""Seconds a download may wait for the server (connecting, or between two reads) before it fails."""
HASH_REGEX = torch.hub.HASH_REGEX
"""torch.hub's rule (``torch.hub.HASH_REGEX`` itself): hex digits between a ``-`` and a ``.`` of the file
name (``r2plus1d_18-91a641e6.pth``) are the start of the file's SHA-256."""
LOCAL_FILE_SOURCE = "local file"
"""``source`` of the provenance of weights read from a local file of no known tag."""
_TAG = re.compile(r"^[A-Za-z0-9_\-]+$")
_CHUNK = 1 << 20


class WeightsUnavailableError(FileNotFoundError):
    """Published weights that are not in the local cache and could not be downloaded."""


@dataclass(frozen=True)
class BackboneWeights:
    """One published weights file of a registered backbone, addressed as ``"<backbone>.<tag>"``.

    Attributes:
        tag: the tag (letters, digits, ``_`` and ``-``; no dot): ``"kinetics400_v1"``.
        filename: the file's name, as published and as stored in the cache.
        num_classes: the width of the file's classifier.
        data_config: the clip the weights were trained or evaluated with (frames, crop, resize, mean, std).
        url: where the file is downloaded from (torch.hub cache), or ``None``.
        hf_hub_id: the Hugging Face Hub repository holding the file (Hugging Face cache), or ``None``.
        license: the licence of the weights, as the publishing project states it (lower case SPDX-like id).
        dataset: the data the weights were trained on, in words.
        description: one line about the weights.
        state_key: the entry of the file that holds the state dict (pytorchvideo's ``"model_state"``);
            ``None``: the file is the state dict, or one of the usual wrappers
            (:func:`~taghead.weights.unwrap_state_dict`).
        backbone: the registered backbone name (set by :func:`taghead.register_backbone`).
    """

    tag: str
    filename: str
    num_classes: int
    data_config: DataConfig = field(hash=False)
    url: str | None = None
    hf_hub_id: str | None = None
    license: str | None = None
    dataset: str | None = None
    description: str = ""
    state_key: str | None = None
    backbone: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or not _TAG.match(self.tag):
            raise ValueError(f"a weights tag is letters, digits, '_' and '-' (no dot), got {self.tag!r}")
        if not isinstance(self.filename, str) or not self.filename or os.path.basename(self.filename) != self.filename:
            raise ValueError(f"BackboneWeights.filename must be a bare file name, got {self.filename!r}")
        if (self.url is None) == (self.hf_hub_id is None):
            raise ValueError(f"weights {self.tag!r}: give exactly one of url= and hf_hub_id=, got url={self.url!r}, "
                             f"hf_hub_id={self.hf_hub_id!r}")
        if self.url is not None and os.path.basename(self.url.split("?")[0]) != self.filename:
            raise ValueError(f"weights {self.tag!r}: the URL's file name is not filename={self.filename!r}: {self.url}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"weights {self.tag!r}: num_classes must be an int >= 0, got {self.num_classes!r}")
        if not isinstance(self.data_config, DataConfig):
            raise TypeError(f"weights {self.tag!r}: data_config must be a taghead.DataConfig, got "
                            f"{type(self.data_config).__name__}")

    @property
    def name(self) -> str:
        """``"<backbone>.<tag>"``: what :func:`taghead.create_backbone` and ``--pretrained-backbone`` take."""
        return f"{self.backbone}.{self.tag}"

    @property
    def source(self) -> str:
        """The URL or the Hub repository id."""
        return self.url if self.url is not None else f"hf-hub:{self.hf_hub_id}"

    @property
    def hash_prefix(self) -> str | None:
        """The start of the file's SHA-256 that its name carries (torch.hub's rule), or ``None``."""
        match = HASH_REGEX.search(self.filename)
        return match.group(1) if match and self.url is not None else None

    def get_data_config(self) -> DataConfig:
        """A copy of :attr:`data_config` (``DataConfig`` is mutable; the registered one stays as it is)."""
        return dataclasses.replace(self.data_config)

    def provenance(self, filename: str | None = None) -> dict[str, Any]:
        """What a saved model records about its backbone's start (``spec["backbone_weights"]``): the tag, the
        source (URL or ``hf-hub:`` id), the file's base name, the licence and the dataset.

        Args:
            filename: the file's base name as loaded (``None``: the published one).
        """
        return {"tag": self.tag, "source": self.source, "filename": filename or self.filename,
                "license": self.license, "dataset": self.dataset}


def local_file_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance of weights read from a local file of no known tag: its base name only, never its path."""
    return {"tag": None, "source": LOCAL_FILE_SOURCE, "filename": Path(path).name, "license": None, "dataset": None}


# --------------------------------------------------------------------------------------------------- cache
def torch_hub_cache_path(filename: str) -> Path:
    """Where torch.hub keeps a downloaded file: ``torch.hub.get_dir()/checkpoints/<filename>``
    (``$TORCH_HOME/hub/checkpoints``).

    Args:
        filename: the file's base name (the last part of its URL).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _hub_filenames(weights: BackboneWeights) -> list[str]:
    """The file names tried in a Hub repository: the given one, then ``pytorch_model.bin`` after the default
    ``model.safetensors`` (timm's order)."""
    names = [weights.filename]
    if weights.filename == "model.safetensors":
        names.append("pytorch_model.bin")
    return names


def hub_cache_location(repo_id: str) -> str:
    """Where the Hugging Face cache keeps the files of the Hub repository ``repo_id`` (``HF_HUB_CACHE``).

    Args:
        repo_id: the Hub repository id, ``"<owner>/<name>"``.
    """
    from huggingface_hub import constants

    return os.path.join(constants.HF_HUB_CACHE, "models--" + str(repo_id).replace("/", "--"))


def cached_weights_file(weights: BackboneWeights) -> Path | None:
    """The file of ``weights`` in the local cache, or ``None`` when it has not been downloaded.

    Args:
        weights: the published weights: looked up in torch.hub's cache (URL weights) or the Hugging Face
            cache (Hub weights); nothing is downloaded.
    """
    if weights.url is not None:
        path = torch_hub_cache_path(weights.filename)
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    for name in _hub_filenames(weights):
        found = try_to_load_from_cache(weights.hf_hub_id, name)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is to be read from the cache only (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES",
                                                                                                     "TRUE"}


def _unavailable(weights: BackboneWeights, where: str, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"the weights {weights.name or weights.tag!r} ({weights.filename}) are not in the local cache and could not be "
        f"downloaded from {weights.source}: {why}. They belong at {where}. Either download them on a machine with "
        f"network (`taghead weights download {weights.name or weights.tag}`) and copy the file there, or pass the "
        f"file itself: create_backbone(name, pretrained='path/to/{weights.filename}'), wrap_backbone(..., "
        f"pretrained_backbone='path/to/{weights.filename}') or `--pretrained-backbone path/to/{weights.filename}`."
    )


def fetch_weights_file(weights: BackboneWeights, *, progress: bool = True,
                       timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """The local file of ``weights``: from the cache, else downloaded into it (hash checked, see the module).

    Args:
        weights: the published weights to fetch.
        progress: show a progress bar while a URL download runs.
        timeout: seconds the server may take to answer or to send the next chunk of a URL download (Hub
            downloads use ``huggingface_hub``'s own timeouts).

    Raises:
        WeightsUnavailableError: not cached, and the download failed (no network, timeout, HTTP error,
            ``HF_HUB_OFFLINE=1``); the message names the source, the cache path and the ways to give a file.
        CheckpointError: the downloaded file's SHA-256 does not start with the hash in its name.
    """
    cached = cached_weights_file(weights)
    if cached is not None:
        return cached
    if weights.url is not None:
        dest = torch_hub_cache_path(weights.filename)
        try:
            download_url(weights.url, dest, hash_prefix=weights.hash_prefix, timeout=timeout, progress=progress)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise _unavailable(weights, str(dest), f"{type(err).__name__}: {reason}") from None
        return dest
    return _fetch_from_hub(weights)


def _fetch_from_hub(weights: BackboneWeights) -> Path:
    path, failure = hub_file(str(weights.hf_hub_id), _hub_filenames(weights))
    if path is None:
        raise _unavailable(weights, f"{hub_cache_location(str(weights.hf_hub_id))} (the Hugging Face cache, "
                                    "HF_HUB_CACHE)", failure)
    return path


def hub_file(repo_id: str, filenames: Sequence[str], *, revision: str | None = None) -> tuple[Path | None, str]:
    """The first of ``filenames`` that the Hub repository ``repo_id`` has: from the Hugging Face cache, else
    downloaded into it (``HF_HUB_OFFLINE=1``: the cache only).

    Args:
        repo_id: the Hub repository id, ``"<owner>/<name>"``.
        filenames: the file names to try, in order; the first one found is returned.
        revision: a branch, tag or commit hash of the repository (``None``: the default branch).

    Returns:
        ``(path, "")``, or ``(None, why)`` when none of the files is available (why: offline, the Hub
        unreachable, no such file, no such repository or revision).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from ..version import __version__

    offline = hub_offline()
    failure = ""
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id, name, revision=revision, local_files_only=offline,
                                        library_name="taghead", library_version=__version__)), ""
        except LocalEntryNotFoundError as err:  # (a subclass of EntryNotFoundError: it comes first)
            failure = failure or ("HF_HUB_OFFLINE=1 is set, so nothing is downloaded" if offline else
                                  f"the Hub could not be reached ({err})")
        except EntryNotFoundError:
            failure = failure or f"the repository has no {name}"
        except RevisionNotFoundError:
            failure = failure or f"the repository has no revision {revision!r}"
        except RepositoryNotFoundError:
            failure = failure or "no such Hub repository (or it is private or gated: log in with `hf auth login`)"
    return None, failure


def download_url(url: str, dest: str | os.PathLike, *, hash_prefix: str | None = None,
                 timeout: float = DOWNLOAD_TIMEOUT, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically: a temporary file beside it, then ``os.replace``.

    Network errors propagate (``urllib.error.URLError``, ``TimeoutError``).

    Args:
        url: the address of the file.
        dest: the file to write (its folder is created when missing); replaced only once the whole file
            has arrived and passed the hash check.
        hash_prefix: hex digits the SHA-256 of the file must start with (torch.hub's check; ``None``: not
            checked).
        timeout: seconds the server may take to answer or to send the next chunk.
        progress: show a progress bar (tqdm) while downloading.

    Returns:
        ``dest``, as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: the file's SHA-256 does not start with ``hash_prefix`` (nothing is kept).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "taghead"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as response, atomic_output(dest) as tmp:
        total = response.headers.get("Content-Length")
        with open(tmp, "wb") as out, tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=dest.name, disable=not progress) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if hash_prefix is not None and not digest.hexdigest().startswith(hash_prefix):
            raise CheckpointError(
                f"the file downloaded from {url} has SHA-256 {digest.hexdigest()}, which does not start with "
                f"{hash_prefix!r} as its name says: the download is corrupt or the file was replaced. Nothing was "
                "saved; try again."
            )
    return dest


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file.

    Args:
        path: the file to hash (read in chunks of 1 MiB).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
def read_weights_file(path: str | os.PathLike, state_key: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: ``.safetensors``, or a ``torch.save`` file (``.pth``, ``.pt``, ``.pyth``,
    ...) read with ``torch.load(weights_only=True)``.

    Args:
        path: the weights file (``~`` is expanded); a folder is refused.
        state_key: the entry holding the state dict (pytorchvideo's ``"model_state"``); ``None``: the usual
            wrappers are unwrapped (``model_state``, ``model_state_dict``, ``state_dict``, a taghead training
            checkpoint, a ``module.`` prefix). Not used for ``.safetensors`` files.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: no state dict under ``state_key``, or entries that are not tensors.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; pretrained backbone weights are one file (.pth, .pt, .pyth or "
                         ".safetensors). To start from a whole saved model, use from_pretrained / --init.")
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {str(path)!r} does not exist")
    source = repr(str(path))
    if path.suffix == ".safetensors":
        state: Mapping[str, Any] = load_safetensors(path)
    else:
        obj = load_torch_checkpoint(path)
        if state_key is not None:
            if not isinstance(obj.get(state_key), Mapping):
                raise CheckpointError(f"{source} has no state dict under {state_key!r} (its entries: {sorted(obj)[:8]})")
            obj = obj[state_key]
        state = unwrap_state_dict(obj, source)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries {bad[:5]} are not tensors; expected a state dict of the backbone")
    return dict(state)


def _submodule(module: nn.Module, path: str) -> nn.Module:
    """``module.<path>``, where a numeric part indexes a container and may count from the end (``blocks.-1``)."""
    target: Any = module
    for part in path.split("."):
        target = target[int(part)] if part.lstrip("-").isdigit() else getattr(target, part)
    return target


def classifier_keys(module: nn.Module, classifier: Sequence[str]) -> set[str]:
    """The state-dict keys of the classifier submodules ``classifier`` (paths such as ``"fc"`` or
    ``"blocks.-1.proj"``) of ``module``; a path ``module`` does not have is skipped.

    Args:
        module: the backbone.
        classifier: dotted submodule paths of ``module``; a numeric part indexes a container and may count
            from the end (``"blocks.-1.proj"``).
    """
    names = {id(m): name for name, m in module.named_modules()}
    keys: set[str] = set()
    for path in classifier:
        try:
            sub = _submodule(module, path)
        except (AttributeError, IndexError, TypeError):
            continue
        if isinstance(sub, nn.Module) and id(sub) in names:
            keys.update(f"{names[id(sub)]}.{key}" for key in sub.state_dict())
    return keys


def load_backbone_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], *, classifier: Iterable[str] = (),
                             source: str = "the weights") -> bool:
    """Load a backbone's pretrained ``state`` into ``module``; its classifier only where it fits.

    Every key but the classifier's (``classifier``: state-dict keys, see :func:`classifier_keys`) must
    match the module, name and shape. The file's classifier is loaded when it has the module's classifier
    keys with the module's shapes, and dropped otherwise (the module keeps its own, freshly initialised).

    Args:
        module: the backbone to load into (in place).
        state: the pretrained state dict (e.g. from :func:`read_weights_file`).
        classifier: the state-dict keys of the classifier (:func:`classifier_keys`); empty: the backbone
            has no classifier and every key must match.
        source: what the weights are, named in the error message.

    Returns:
        whether the classifier was loaded too.

    Raises:
        StateDictMismatchError: missing, unexpected or mis-shaped keys outside the classifier.
    """
    head = set(classifier)
    check_state_dict(module, state, ignore=head, source=source)
    own = module.state_dict()
    mine = {k for k in head if k in own}
    fits = bool(mine) and all(k in state and tuple(state[k].shape) == tuple(own[k].shape) for k in mine)
    body = {k: v for k, v in state.items() if k not in head}
    if fits:
        body.update({k: state[k] for k in mine})
    module.load_state_dict(body, strict=fits or not mine)
    return fits


# ------------------------------------------------------------------------------------------------------- timm
def timm_backbone_weights(model_name: str, tag: str | None = None) -> BackboneWeights:
    """The :class:`BackboneWeights` of timm's pretrained config ``model_name.tag`` (``tag=None``: timm's default
    tag), read from timm's own registry (``timm.models.get_pretrained_cfg``).

    Args:
        model_name: the timm architecture name, without the ``timm/`` prefix (``"resnet50"``).
        tag: the pretrained tag (``"a1_in1k"``); ``None``: timm's default tag.

    Raises:
        ValueError: timm does not know ``model_name``, or it has no published weights of that tag.
    """
    import timm
    from timm.models import get_pretrained_cfg

    from ..adapters.timm import timm_data_config

    if not timm.is_model(model_name):
        raise ValueError(f"unknown timm model {model_name!r} (see timm.list_models())")
    try:
        cfg = get_pretrained_cfg(f"{model_name}.{tag}" if tag else model_name, allow_unregistered=True)
    except RuntimeError:  # timm: an invalid tag for a known architecture
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        tags = sorted(n.split(".", 1)[1] for n in timm.list_pretrained(f"{model_name}.*"))
        what = f"no published weights tagged {tag!r}" if tag else "no published weights"
        raise ValueError(f"timm model {model_name!r} has {what}; its tags: {tags or 'none'}")
    if cfg.hf_hub_id:
        url, hub, filename = None, cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors"
    else:
        url, hub, filename = cfg.url, None, os.path.basename(cfg.url.split("?")[0])
    return BackboneWeights(
        tag=cfg.tag, filename=filename, num_classes=int(cfg.num_classes or 0), data_config=timm_data_config(cfg.to_dict()),
        url=url, hf_hub_id=hub, license=cfg.license, dataset=None,
        description=f"timm pretrained config {model_name}.{cfg.tag} (image weights, applied frame by frame)",
        backbone=f"timm/{model_name}",
    )


# ------------------------------------------------------------------------------------------------------ table
_COLUMNS = ("weights", "dataset", "classes", "clip", "licence", "file")


def _row(weights: BackboneWeights, default: bool) -> list[str]:
    dc = weights.data_config
    link = (f"[{weights.filename}]({weights.url})" if weights.url is not None
            else f"[{weights.hf_hub_id}](https://huggingface.co/{weights.hf_hub_id})")
    return [f"`{weights.name}`" + (" (default)" if default else ""), weights.dataset or "-", str(weights.num_classes),
            f"{dc.num_frames} x {dc.crop_size}", weights.license or "-", link]


def weights_table(weights: Iterable[tuple[BackboneWeights, bool]]) -> str:
    """A Markdown table of ``(weights, marked as the default)`` pairs: name, dataset, classes, clip (frames x
    crop), licence and the file (linked to its URL or Hub repository).

    Args:
        weights: ``(weights, is_default)`` pairs, one row each in this order; a default's name is marked
            ``(default)``.
    """
    lines = ["| " + " | ".join(_COLUMNS) + " |", "| " + " | ".join("---" for _ in _COLUMNS) + " |"]
    lines += ["| " + " | ".join(_row(w, default)) + " |" for w, default in weights]
    return "\n".join(lines)
