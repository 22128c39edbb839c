"""Backbones by name (``"torchvision/r2plus1d_18"``, ``"timm/resnet50"``, ...), random or from published weights.

An entry builds an architecture (random weights), so that a saved model's spec can rebuild its backbone
anywhere, and lists the architecture's published weights by tag (:class:`~taghead.backbones.weights.
BackboneWeights`): ``create_backbone("torchvision/r2plus1d_18", pretrained=True)`` loads the default tag,
``create_backbone("torchvision/r2plus1d_18.kinetics400_v1", pretrained=True)`` a named one, and
``pretrained="path/to/file.pth"`` a local file. An entry may also say which class its builder makes and
how to read the builder's arguments back from a module (``model_class``, ``kwargs_from_module``), so that a
module of that architecture is recognised (:mod:`taghead.backbones.recognize`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from torch import nn

from ..config import DataConfig
from ..weights import CheckpointError
from .weights import (
    BackboneWeights,
    classifier_keys,
    fetch_weights_file,
    load_backbone_state_dict,
    local_file_provenance,
    read_weights_file,
    sha256_file,
    timm_backbone_weights,
    weights_table,
)

__all__ = ["register_backbone", "create_backbone", "list_backbones", "get_backbone_data_config", "get_backbone_entry",
           "get_backbone_weights", "split_backbone_name", "build_backbone", "BuiltBackbone", "download_backbone_weights",
           "backbone_weights_table", "BackboneEntry", "KwargsReader", "RepoLoader", "NamePrefixHandler",
           "register_name_prefix", "import_extra"]


#: Reads the builder arguments that shape a module (e.g. ``{"num_classes": 10}``) back from a built module.
KwargsReader = Callable[[nn.Module], dict[str, Any]]
#: What ``pretrained=`` takes: ``False``, ``True`` (the name's tag or the default tag), a tag, or a local file.
Pretrained = bool | str | os.PathLike
#: File suffixes that make a ``pretrained=`` string a path even when the file does not exist (for the error).
_WEIGHT_SUFFIXES = (".pth", ".pt", ".pyth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class BackboneEntry:
    """A named backbone: how to build it, what it expects, how to recognise it, and its published weights.

    Attributes:
        name: the registry name (``"torchvision/r2plus1d_18"``).
        builder: makes the module, with random weights.
        data_config: the default data config (``None``: the adapter decides).
        description: one line, shown by ``taghead backbones``.
        model_class: for recognition, the class the builder makes (``"package.module:QualName"``).
        kwargs_from_module: for recognition, reads the builder arguments that change a module's shapes.
        records_defaults: a spec records every argument the reader returns, also those equal to the
            builder's defaults (a transformers config is recorded whole).
        weights: the published weights (their ``backbone`` set to ``name``).
        default_tag: the tag of the weights ``pretrained=True`` loads.
        classifier: the paths of the classifier submodules (``"fc"``, ``"blocks.-1.proj"``), whose weights
            are dropped when their width is not the model's.
        num_classes_kwarg: the builder argument that sets the classifier width.
        repo_loader: builds the backbone from a whole model repository (config, weights and preprocessing,
            as Hugging Face Transformers models are published) where one weights file is not enough.
    """

    name: str
    builder: Callable[..., nn.Module]
    data_config: DataConfig | None
    description: str
    model_class: str | None = None
    kwargs_from_module: KwargsReader | None = None
    records_defaults: bool = False
    weights: tuple[BackboneWeights, ...] = ()
    default_tag: str | None = None
    classifier: tuple[str, ...] = ()
    num_classes_kwarg: str | None = None
    repo_loader: RepoLoader | None = None

    @property
    def tags(self) -> list[str]:
        """The tags of the published weights, the default first."""
        return sorted((w.tag for w in self.weights), key=lambda t: (t != self.default_tag, t))


@dataclass(frozen=True)
class BuiltBackbone:
    """What :func:`build_backbone` returns: the ``module``; the registered ``name`` (no tag) a spec records; the
    clip its weights were trained with (``data_config``: of the tag or the repository, ``None`` for random weights
    or a local file: the backbone's default); the ``provenance`` a spec records (``None`` for random weights)."""

    module: nn.Module
    name: str
    data_config: DataConfig | None
    provenance: dict[str, Any] | None


class RepoLoader(Protocol):
    """Builds an entry's backbone from a whole model repository (:mod:`taghead.backbones.transformers_hub`)."""

    def build(self, entry: BackboneEntry, source: BackboneWeights | str | Path, kwargs: dict[str, Any], *,
              load_weights: bool, progress: bool) -> BuiltBackbone:
        """``source``: a registered tag's weights, a ``"hf-hub:<repo>"`` id or a local path; ``load_weights=False``:
        the source's architecture with random weights."""

    def download(self, source: BackboneWeights | str, *, progress: bool) -> Path:
        """Put the repository's files into the local cache; returns the folder holding them."""


class NamePrefixHandler(Protocol):
    """Backbone names with a prefix (``"hf-hub:<repo>"``) that name a repository rather than a registered entry."""

    def build(self, name: str, kwargs: dict[str, Any], *, load_weights: bool, progress: bool) -> BuiltBackbone:
        """The backbone ``name`` names (``load_weights=False``: its architecture with random weights)."""

    def download(self, name: str, *, progress: bool) -> Path:
        """Put the files of ``name`` into the local cache; returns the folder holding them."""


_BACKBONES: dict[str, BackboneEntry] = {}
_TIMM_PREFIX = "timm/"
_NAME_PREFIXES: dict[str, NamePrefixHandler] = {}


def register_name_prefix(prefix: str, handler: NamePrefixHandler) -> None:
    """Make names that start with ``prefix`` (``"hf-hub:"``) buildable by ``handler`` wherever a backbone is named
    (:func:`create_backbone`, :func:`taghead.wrap_backbone`, ``--backbone``); such names are never split at a
    ``.`` into a tag."""
    if not prefix.endswith(":") or prefix in _NAME_PREFIXES and _NAME_PREFIXES[prefix] is not handler:
        raise ValueError(f"a name prefix ends with ':' and is registered once, got {prefix!r}")
    _NAME_PREFIXES[prefix] = handler


def _name_prefix(name: str) -> str | None:
    return next((p for p in _NAME_PREFIXES if name.startswith(p)), None)


def register_backbone(
    name: str, *, data_config: DataConfig | None = None, description: str = "", model_class: str | None = None,
    kwargs_from_module: KwargsReader | None = None, records_defaults: bool = False,
    weights: Sequence[BackboneWeights] = (), default_tag: str | None = None, classifier: str | Sequence[str] = (),
    num_classes_kwarg: str | None = None, repo_loader: RepoLoader | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``builder(**kwargs) -> nn.Module`` buildable as ``create_backbone(name, **kwargs)``.

    Args:
        name: the name, e.g. ``"my_lab/net"`` (no ``.``: it separates a tag; ``timm/`` is reserved).
        data_config: the clip the backbone expects by default (used by :func:`taghead.wrap_backbone` when
            the model is given by name and starts from no tag); ``None`` leaves it to the adapter.
        description: one line.
        model_class: ``"package.module:QualName"`` of the class the builder returns: makes modules of
            that class candidates for :func:`taghead.recognize_backbone`.
        kwargs_from_module: ``reader(module)`` returns the builder arguments that shape such a module
            (say ``{"num_classes": module.fc.out_features}``).
        records_defaults: a model's spec records all the arguments ``kwargs_from_module`` returns, also
            those equal to the builder's defaults (for builders whose defaults live in another library and
            may change with its version).
        weights: the published weights (:class:`~taghead.backbones.weights.BackboneWeights`), one per tag.
        default_tag: the tag ``pretrained=True`` loads (default: the first of ``weights``).
        classifier: path(s) of the classifier submodule(s) (``"fc"``, ``"blocks.-1.proj"``): a file's
            classifier is loaded only when its width is the module's, and dropped otherwise.
        num_classes_kwarg: the builder argument that sets the classifier width; ``create_backbone(name,
            pretrained=...)`` sets it to the weights' width unless given.
        repo_loader: builds the backbone from a whole model repository (a tag's, a ``"hf-hub:<repo>"`` id or a
            local folder) instead of loading one file into ``builder(**kwargs)``.
    """
    if model_class is not None and (not isinstance(model_class, str) or ":" not in model_class):
        raise ValueError(f"model_class must be a 'package.module:QualName' string, got {model_class!r}")
    if not isinstance(name, str) or "." in name:
        raise ValueError(f"a backbone name is a str without '.' (it separates the weights tag), got {name!r}")
    bad = [w for w in weights if not isinstance(w, BackboneWeights)]
    if bad:
        raise TypeError(f"weights must be BackboneWeights, got {type(bad[0]).__name__}")
    tags = [w.tag for w in weights]
    if len(set(tags)) != len(tags):
        raise ValueError(f"backbone {name!r}: weights tags must be unique, got {tags}")
    if default_tag is None and weights:
        default_tag = weights[0].tag
    if default_tag is not None and default_tag not in tags:
        raise ValueError(f"backbone {name!r}: default_tag {default_tag!r} is not one of its tags {tags}")
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    named = tuple(dataclasses.replace(w, backbone=name) for w in weights)

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name.startswith(_TIMM_PREFIX):
            raise ValueError(f"names starting with {_TIMM_PREFIX!r} are reserved for timm models")
        if name in _BACKBONES and _BACKBONES[name].builder is not builder:
            raise ValueError(f"a backbone named {name!r} is already registered")
        _BACKBONES[name] = BackboneEntry(name, builder, data_config, description, model_class, kwargs_from_module,
                                         records_defaults, named, default_tag, classifier, num_classes_kwarg,
                                         repo_loader)
        return builder

    return decorator


def list_backbones(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell pattern (``"pytorchvideo/*"``).

    ``pretrained=True`` lists published weights instead, as ``"name.tag"`` (``"torchvision/r2plus1d_18.
    kinetics400_v1"``), the pattern matching those strings. Every timm model is also available as
    ``"timm/<timm model name>"``; timm's own tags are listed only for a pattern that starts with
    ``"timm/"`` (``list_backbones("timm/resnet18*", pretrained=True)``; ``timm.list_pretrained()`` has
    them all).

    Args:
        pattern: a shell pattern the names must match (``None``: all).
        pretrained: list the published weights (``"name.tag"``) instead of the architectures.
    """
    if not pretrained:
        names = sorted(_BACKBONES)
        return fnmatch.filter(names, pattern) if pattern else names
    found = [w.name for name in sorted(_BACKBONES) for w in _sorted_weights(_BACKBONES[name])]
    if pattern and pattern.startswith(_TIMM_PREFIX):
        import timm

        found += [_TIMM_PREFIX + n for n in timm.list_pretrained(pattern[len(_TIMM_PREFIX):])]
    return [n for n in found if fnmatch.fnmatchcase(n, pattern)] if pattern else found


def _sorted_weights(entry: BackboneEntry) -> list[BackboneWeights]:
    by_tag = {w.tag: w for w in entry.weights}
    return [by_tag[t] for t in entry.tags]


def backbone_weights_table(pattern: str | None = None) -> str:
    """The Markdown table of the published weights of the registered backbones (``pattern`` as in
    :func:`list_backbones`): name, dataset, classes, clip, licence, file; the default tag is marked where a
    backbone has several.

    Args:
        pattern: a shell pattern the names must match (``None``: all).
    """
    rows = []
    for full in list_backbones(pattern, pretrained=True):
        weights = get_backbone_weights(full)
        tags = _tags_of(weights.backbone)
        rows.append((weights, len(tags) > 1 and weights.tag == tags[0]))
    return weights_table(rows)


def split_backbone_name(name: str) -> tuple[str, str | None]:
    """``"name.tag"`` -> ``("name", "tag")``; a name without tag -> ``(name, None)``."""
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a string, got {type(name).__name__}")
    if name in _BACKBONES or _name_prefix(name) is not None:
        return name, None
    base, dot, tag = name.rpartition(".")
    return (base, tag) if dot and "/" not in tag else (name, None)


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_BACKBONES), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown backbone {name!r}.{hint} Registered: {list_backbones()}, plus 'timm/<model>'.")


def _timm_model(name: str) -> str:
    """The timm model name of ``"timm/<model>"``, checked to exist."""
    import timm

    model_name = name[len(_TIMM_PREFIX):]
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join('timm/' + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {model_name!r}.{hint}")
    return model_name


def get_backbone_weights(name: str, tag: str | None = None) -> BackboneWeights:
    """The published weights ``"name.tag"`` (or ``name`` and ``tag``); without a tag the backbone's default.

    Args:
        name: ``"name.tag"``, or the backbone name.
        tag: the tag, when ``name`` has none (``None``: the default).

    Raises:
        ValueError: an unknown backbone or tag (the message lists the backbone's tags), or a backbone
            without published weights.
    """
    base, named = split_backbone_name(name)
    if named is not None and tag is not None and named != tag:
        raise ValueError(f"two tags given for {base!r}: {named!r} (in the name) and {tag!r}")
    tag = tag or named
    if base.startswith(_TIMM_PREFIX):
        return timm_backbone_weights(_timm_model(base), tag)
    if _name_prefix(base) is not None:
        raise ValueError(f"{base!r} is a repository, not a registered backbone with tags: build it with "
                         "pretrained=True for its weights (or fetch them with download_backbone_weights)")
    entry = get_backbone_entry(base)
    if not entry.weights:
        raise ValueError(f"backbone {base!r} has no published weights; start from a file of its weights instead "
                         "(pretrained='path/to/weights.pth', --pretrained-backbone FILE) or from random weights")
    chosen = tag or entry.default_tag
    for weights in entry.weights:
        if weights.tag == chosen:
            return weights
    raise ValueError(f"backbone {base!r} has no weights tagged {chosen!r}; its tags: {entry.tags} "
                     f"(default {entry.default_tag!r}), or pass the path of a weights file")


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of ``name`` (not for ``"timm/..."`` names, which timm builds)."""
    if name not in _BACKBONES:
        raise _unknown(name)
    return _BACKBONES[name]


def get_backbone_data_config(name: str) -> DataConfig | None:
    """The default data config registered for ``name`` (``None``: the adapter decides).

    Args:
        name: the registered backbone name.
    """
    entry = _BACKBONES.get(name)
    return DataConfig.from_dict(entry.data_config.to_dict()) if entry and entry.data_config else None


# -- pretrained starts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Start:
    """What a ``pretrained=`` value resolves to: published ``weights`` (``None``: a local file of no known
    tag) and the user's local ``file`` (``None``: the tag's file, from the cache)."""

    weights: BackboneWeights | None
    file: Path | None

    def provenance(self) -> dict[str, Any]:
        if self.weights is None:
            return local_file_provenance(self.file)  # type: ignore[arg-type]
        return self.weights.provenance(self.file.name if self.file is not None else None)


def _is_tag(base: str, text: str) -> bool:
    if "/" in text or "." in text or os.sep in text:
        return False
    try:
        get_backbone_weights(base, text)
    except ValueError:
        return False
    return True


def _resolve_start(base: str, tag: str | None, pretrained: Pretrained) -> _Start:
    """The weights and/or file ``pretrained`` names for the backbone ``base`` (``tag``: the name's tag)."""
    if pretrained is True:
        return _Start(get_backbone_weights(base, tag), None)
    if isinstance(pretrained, str):
        if _name_prefix(pretrained) is not None:
            raise ValueError(f"pretrained={pretrained!r} names a model repository, which only repository backbones "
                             f"(the 'transformers/...' ones) load; {base!r} takes True, a tag or a weights file")
        if _is_tag(base, pretrained):  # with a tag in the name too, both must agree
            return _Start(get_backbone_weights(f"{base}.{tag}" if tag else base, pretrained), None)
        path = Path(pretrained).expanduser()
        if not (path.exists() or "/" in pretrained or os.sep in pretrained or path.suffix in _WEIGHT_SUFFIXES):
            tags = _tags_of(base)
            raise ValueError(f"pretrained={pretrained!r} is neither a weights tag of {base!r} nor an existing file; "
                             f"its tags: {tags or 'none'}")
    elif isinstance(pretrained, os.PathLike):
        path = Path(pretrained).expanduser()
    else:
        raise TypeError(f"pretrained must be True, False, a weights tag or the path of a weights file, got "
                        f"{pretrained!r} ({type(pretrained).__name__})")
    if not path.exists():
        raise FileNotFoundError(f"backbone weights file {str(path)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; pretrained backbone weights are one file (.pth, .pt, .pyth or "
                         ".safetensors). To start from a whole saved model, use taghead.from_pretrained / --init.")
    weights = get_backbone_weights(base, tag) if tag is not None else _published_file(base, path.name)
    if weights is not None and weights.hash_prefix and not sha256_file(path).startswith(weights.hash_prefix):
        raise CheckpointError(
            f"{str(path)!r} is given as {weights.name}, but its SHA-256 does not start with {weights.hash_prefix!r} as "
            f"the published {weights.filename} does: it is another or a corrupt file. Give the backbone name without "
            "a tag, and a file name other than the published one, for weights of your own."
        )
    return _Start(weights, path)


def _tags_of(base: str) -> list[str]:
    """The tags of ``base``, its default first."""
    if base.startswith(_TIMM_PREFIX):
        default = timm_backbone_weights(_timm_model(base)).tag
        tags = [n.split(".", 1)[1] for n in list_backbones(base + ".*", pretrained=True)]
        return sorted(tags, key=lambda t: (t != default, t))
    return get_backbone_entry(base).tags


def _published_file(base: str, filename: str) -> BackboneWeights | None:
    """The registered weights of ``base`` published under ``filename`` (one match only), else ``None``."""
    entry = _BACKBONES.get(base)
    matches = [w for w in entry.weights if w.filename == filename] if entry else []
    return matches[0] if len(matches) == 1 else None


def _start_file(start: _Start, progress: bool) -> Path:
    """The local file of a start: the user's, or the tag's from the cache (downloaded if needed)."""
    return start.file or fetch_weights_file(start.weights, progress=progress)  # type: ignore[arg-type]


def _load_start(module: nn.Module, entry: BackboneEntry, start: _Start, path: Path) -> None:
    state = read_weights_file(path, state_key=start.weights.state_key if start.weights else None)
    where = start.weights.name if start.weights is not None else entry.name
    load_backbone_state_dict(module, state, classifier=classifier_keys(module, entry.classifier),
                             source=f"{str(path)!r} ({where})")


def _timm_pretrained(model_name: str, tag: str | None, start: _Start, kwargs: dict[str, Any],
                     progress: bool) -> nn.Module:
    import timm

    path = _start_file(start, progress)
    chosen = start.weights.tag if start.weights is not None else tag
    try:
        return timm.create_model(f"{model_name}.{chosen}" if chosen else model_name, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    except RuntimeError as err:  # timm's (and torch's) key and shape errors
        raise CheckpointError(f"timm could not load {str(path)!r} into {model_name!r}: {err}") from None


def _check_random_init(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs.get("weights") is not None:
        raise ValueError(f"create_backbone({name!r}) takes no weights=; published weights are tags: "
                         f"pretrained=True, pretrained='<tag>' (taghead.list_backbones(pretrained=True)) or "
                         f"pretrained='path/to/file'")


def build_backbone(name: str, pretrained: Pretrained = False, kwargs: dict[str, Any] | None = None, *,
                   published_width: bool = True, progress: bool = True) -> BuiltBackbone:
    """:func:`create_backbone`, also returning the registered name, the clip of the weights and the provenance.

    Args:
        name, pretrained, kwargs: as for :func:`create_backbone`.
        published_width: build the classifier as wide as the weights' (unless ``kwargs`` set it), so that
            it is loaded too; ``False`` keeps the builder's width (the file's classifier is then dropped
            unless it fits).
        progress: a progress bar while downloading.
    """
    kwargs = dict(kwargs or {})
    _check_random_init(name, kwargs)
    kwargs.pop("weights", None)
    base, tag = split_backbone_name(name)
    prefix = _name_prefix(base)
    if prefix is not None:
        if not isinstance(pretrained, bool):
            raise ValueError(f"{base!r} names a repository and its weights: pretrained must be True (its weights) or "
                             f"False (its architecture, random weights), got {pretrained!r}")
        return _NAME_PREFIXES[prefix].build(base, kwargs, load_weights=pretrained, progress=progress)
    if base.startswith(_TIMM_PREFIX):
        import timm

        model_name = _timm_model(base)
        tagged = get_backbone_weights(base, tag) if tag is not None else None  # an unknown tag: an error with the tags
        if pretrained is False:
            module = timm.create_model(f"{model_name}.{tag}" if tag else model_name, pretrained=False, **kwargs)
            return BuiltBackbone(module, base, tagged.get_data_config() if tagged else None, None)
        start = _resolve_start(base, tag, pretrained)
        return BuiltBackbone(_timm_pretrained(model_name, tag, start, kwargs, progress), base, _start_clip(start),
                             start.provenance())
    entry = get_backbone_entry(base)
    tagged = get_backbone_weights(base, tag) if tag is not None else None
    if pretrained is False:
        return BuiltBackbone(entry.builder(**kwargs), base, tagged.get_data_config() if tagged else None, None)
    if entry.repo_loader is not None:
        source = _repo_source(base, tag, pretrained)
        return entry.repo_loader.build(entry, source, kwargs, load_weights=True, progress=progress)
    start = _resolve_start(base, tag, pretrained)
    path = _start_file(start, progress)  # before building: a missing file fails fast
    width = entry.num_classes_kwarg
    if published_width and start.weights is not None and width is not None and width not in kwargs:
        kwargs[width] = start.weights.num_classes
    module = entry.builder(**kwargs)
    _load_start(module, entry, start, path)
    return BuiltBackbone(module, base, _start_clip(start), start.provenance())


def _start_clip(start: _Start) -> DataConfig | None:
    return start.weights.get_data_config() if start.weights is not None else None


def _repo_source(base: str, tag: str | None, pretrained: Pretrained) -> BackboneWeights | str | Path:
    """What a repository backbone starts from: a tag's weights, a ``"hf-hub:"`` id, or a local folder or file."""
    if pretrained is True:
        return get_backbone_weights(base, tag)
    if isinstance(pretrained, str) and _name_prefix(pretrained) is not None:
        return pretrained
    if isinstance(pretrained, str) and _is_tag(base, pretrained):
        return get_backbone_weights(f"{base}.{tag}" if tag else base, pretrained)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be True, False, a weights tag, a 'hf-hub:<repo>' id or a local path, got "
                        f"{pretrained!r} ({type(pretrained).__name__})")
    path = Path(pretrained).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"pretrained={str(pretrained)!r} is neither a weights tag of {base!r} (its tags: "
                                f"{_tags_of(base) or 'none'}), nor a 'hf-hub:<repo>' id, nor an existing folder or file")
    return path


def create_backbone(name: str, pretrained: Pretrained = False, **kwargs: Any) -> nn.Module:
    """Build the backbone registered as ``name`` (or ``"timm/<model>"``), random or from published weights.

    Args:
        name: a registered name (:func:`list_backbones`), optionally with a weights tag:
            ``"torchvision/r2plus1d_18.kinetics400_v1"`` (:func:`list_backbones` with ``pretrained=True``);
            or a Hugging Face Hub repository of a Hugging Face Transformers video model, ``"hf-hub:<owner>/<repo>"``
            (optionally ``@<revision>``), built as the ``transformers/...`` backbone its config names
            (:mod:`taghead.backbones.transformers_hub`).
        pretrained: ``False``: random weights. ``True``: the name's tag, else the backbone's default
            tag (for a ``"hf-hub:"`` name: the repository's weights). A tag (``"kinetics400_v1"``). Or the path
            of a local weights file (``.pth``, ``.pt``, ``.pyth`` read with ``torch.load(weights_only=True)``,
            or ``.safetensors``) in the backbone's key layout; a file named as a published one (or given with
            ``name.tag``) is checked against the published hash and recorded as that tag. For the
            ``transformers/...`` backbones also a ``"hf-hub:<repo>"`` id or a local folder of a repository's
            files. Published files are downloaded once into the ordinary caches (see
            :mod:`taghead.backbones.weights`).
        **kwargs: builder arguments. With published weights the classifier is built as wide as theirs
            (and loaded) unless the width is given; a different width leaves a fresh classifier.

    Raises:
        ValueError: unknown name or tag (the message lists the tags), weights that do not fit the
            architecture (:class:`~taghead.weights.StateDictMismatchError` lists the keys).
        WeightsUnavailableError: not cached and not downloadable; the message says where the file
            belongs and how to pass a local copy.
    """
    return build_backbone(name, pretrained, kwargs).module


def download_backbone_weights(name: str, *, progress: bool = True) -> Path:
    """Put the file of the published weights ``"name.tag"`` (``name``: the default tag) into the local cache
    (torch.hub's or the Hugging Face cache) and return its path; nothing is downloaded when it is there. For a
    repository (a ``transformers/...`` tag, or a ``"hf-hub:<repo>"`` name) every file a load reads is fetched and
    the snapshot folder holding them is returned.

    Args:
        name: ``"name.tag"`` or ``"hf-hub:<repo>"``.
        progress: show a progress bar.
    """
    base, _ = split_backbone_name(name)
    prefix = _name_prefix(base)
    if prefix is not None:
        return _NAME_PREFIXES[prefix].download(base, progress=progress)
    weights = get_backbone_weights(name)
    loader = None if base.startswith(_TIMM_PREFIX) else get_backbone_entry(base).repo_loader
    if loader is not None:
        return loader.download(weights, progress=progress)
    return fetch_weights_file(weights, progress=progress)


# -- built-in backbones ---------------------------------------------------------------------------------

_KINETICS = dict(mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
_IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_PTV = dict(mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
_K400 = "Kinetics-400"


def import_extra(module: str, what: str, extra: str = "video") -> ModuleType:
    """``importlib.import_module(module)``; when its package is missing, a ``ModuleNotFoundError`` that says
    which taghead extra installs it (``pip install 'taghead[video]'``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        package = module.split(".")[0]
        if err.name is None or not (module == err.name or module.startswith(err.name + ".")):
            raise  # a module that the package itself needs is missing: not ours to explain
        raise ModuleNotFoundError(
            f"{what} needs {package}, which is not installed: pip install 'taghead[{extra}]' (or pip install "
            f"{package})", name=err.name,
        ) from err


def _out_features(path: str, kwarg: str, attribute: str = "out_features") -> KwargsReader:
    """A reader of the classifier width: ``{kwarg: module.<path>.<attribute>}`` (``path`` may index: ``blocks.-1``)."""

    def read(module: nn.Module) -> dict[str, Any]:
        target: Any = module
        for part in path.split("."):
            target = target[int(part)] if part.lstrip("-").isdigit() else getattr(target, part)
        return {kwarg: int(getattr(target, attribute))}

    return read


# torchvision's video weights (``torchvision.models.video.*_Weights``): the URL, and the clip of their
# transforms and docs (clip_len frames; resize (128, 171) or 256; crop; Kinetics or ImageNet statistics).
# Its transforms resize to a fixed (128, 171) for the 112-pixel models; taghead resizes the shorter
# side to 128, the same for 4:3 frames (and without squashing wider ones).
_TV_URL = "https://download.pytorch.org/models/"
_TV = "torchvision.models.video."
_TV_MODELS = {  # name: (class the builder makes, classifier path, its width attribute, clip, weights {tag: file})
    "r3d_18": (_TV + "resnet:VideoResNet", "fc", "out_features", (16, 112, 128, _KINETICS),
               {"kinetics400_v1": "r3d_18-b3b3357e.pth"}),
    "mc3_18": (_TV + "resnet:VideoResNet", "fc", "out_features", (16, 112, 128, _KINETICS),
               {"kinetics400_v1": "mc3_18-a90a0ba3.pth"}),
    "r2plus1d_18": (_TV + "resnet:VideoResNet", "fc", "out_features", (16, 112, 128, _KINETICS),
                    {"kinetics400_v1": "r2plus1d_18-91a641e6.pth"}),
    "s3d": (_TV + "s3d:S3D", "classifier.1", "out_channels", (128, 224, 256, _KINETICS),
            {"kinetics400_v1": "s3d-d76dad2f.pth"}),
    "mvit_v1_b": (_TV + "mvit:MViT", "head.1", "out_features", (16, 224, 256, _PTV),
                  {"kinetics400_v1": "mvit_v1_b-dbeb1030.pth"}),
    "mvit_v2_s": (_TV + "mvit:MViT", "head.1", "out_features", (16, 224, 256, _PTV),
                  {"kinetics400_v1": "mvit_v2_s-ae3be167.pth"}),
    "swin3d_t": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features", (32, 224, 256, _IMAGENET),
                 {"kinetics400_v1": "swin3d_t-7615ae03.pth"}),
    "swin3d_s": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features", (32, 224, 256, _IMAGENET),
                 {"kinetics400_v1": "swin3d_s-da41c237.pth"}),
    "swin3d_b": (_TV + "swin_transformer:SwinTransformer3d", "head", "out_features", (32, 224, 256, _IMAGENET),
                 {"kinetics400_v1": "swin3d_b_1k-24f7c7c6.pth",
                  "kinetics400_imagenet22k_v1": "swin3d_b_22k-7c6ae6fa.pth"}),
}
_TV_DESCRIPTIONS = {"r3d_18": "r3d_18 (torchvision VideoResNet)", "mc3_18": "mc3_18 (torchvision VideoResNet)",
                    "r2plus1d_18": "r2plus1d_18 (torchvision VideoResNet)", "s3d": "S3D (torchvision)",
                    "mvit_v1_b": "mvit_v1_b (torchvision MViT)", "mvit_v2_s": "mvit_v2_s (torchvision MViT)",
                    "swin3d_t": "swin3d_t (torchvision Video Swin)", "swin3d_s": "swin3d_s (torchvision Video Swin)",
                    "swin3d_b": "swin3d_b (torchvision Video Swin)"}
_TV_DATASETS = {"kinetics400_v1": _K400, "kinetics400_imagenet22k_v1": f"{_K400} (from ImageNet-22K)"}


def _torchvision(name: str) -> None:
    def build(**kwargs: Any) -> nn.Module:
        video = import_extra("torchvision.models.video", f"backbone 'torchvision/{name}'")
        return getattr(video, name)(weights=None, **kwargs)

    build.__name__ = f"torchvision_{name}"
    model_class, path, attribute, (frames, crop, resize, stats), files = _TV_MODELS[name]
    data_config = DataConfig(frames, crop, resize, **stats)
    weights = [BackboneWeights(tag, filename, 400, data_config, url=_TV_URL + filename, license="bsd-3-clause",
                               dataset=_TV_DATASETS[tag], description=f"torchvision {name} {tag.upper()}")
               for tag, filename in files.items()]
    register_backbone(f"torchvision/{name}", data_config=data_config, description=_TV_DESCRIPTIONS[name],
                      model_class=model_class, kwargs_from_module=_out_features(path, "num_classes", attribute),
                      weights=weights, classifier=path, num_classes_kwarg="num_classes")(build)


# pytorchvideo's model zoo (``pytorchvideo.models.hub``: its ``checkpoint_paths``, loaded from
# ``checkpoint["model_state"]``). Clip lengths are those the hub builders' heads pool (e.g. slow_r50: 8
# frames; SlowFast counts the fast pathway's frames); crops and resizes the training crop and its eval
# resize; every model normalises with mean 0.45 and std 0.225.
_PTV_URL = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"


def _pytorchvideo(name: str, data_config: DataConfig, description: str, filename: str) -> None:
    def build(**kwargs: Any) -> nn.Module:
        hub = import_extra("pytorchvideo.models.hub", f"backbone 'pytorchvideo/{name}'")
        return getattr(hub, name)(pretrained=False, **kwargs)

    build.__name__ = f"pytorchvideo_{name}"
    if name.startswith("mvit"):
        model_class = "pytorchvideo.models.vision_transformers:MultiscaleVisionTransformers"
        classifier, kwarg = "head.proj", "head_num_classes"
    else:
        model_class, classifier, kwarg = "pytorchvideo.models.net:Net", "blocks.-1.proj", "model_num_class"
    weights = BackboneWeights("kinetics400", filename, 400, data_config, url=_PTV_URL + filename, license="apache-2.0",
                              dataset=_K400, description=f"pytorchvideo model zoo {name}", state_key="model_state")
    register_backbone(f"pytorchvideo/{name}", data_config=data_config, description=description,
                      model_class=model_class, kwargs_from_module=_out_features(classifier, kwarg), weights=[weights],
                      classifier=classifier, num_classes_kwarg=kwarg)(build)


for _name in _TV_MODELS:
    _torchvision(_name)

for _name, _frames, _file in (("slow_r50", 8, "SLOW_8x8_R50.pyth"), ("c2d_r50", 8, "C2D_8x8_R50.pyth"),
                              ("i3d_r50", 8, "I3D_8x8_R50.pyth"), ("r2plus1d_r50", 16, "R2PLUS1D_16x4_R50.pyth"),
                              ("csn_r101", 32, "CSN_32x2_R101.pyth")):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo ResNet family)", _file)
for _name, _frames, _crop in (("x3d_xs", 4, 160), ("x3d_s", 13, 160), ("x3d_m", 16, 224), ("x3d_l", 16, 312)):
    _pytorchvideo(_name, DataConfig(_frames, _crop, int(_crop / 0.875), **_PTV), f"{_name} (pytorchvideo X3D)",
                  f"{_name.upper()}.pyth")
for _name, _frames, _file in (("slowfast_r50", 32, "SLOWFAST_8x8_R50.pyth"), ("slowfast_r101", 32, "SLOWFAST_8x8_R101.pyth"),
                              ("slowfast_16x8_r101_50_50", 64, "SLOWFAST_16x8_R101_50_50.pyth")):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo SlowFast, alpha 4)", _file)
for _name, _frames, _file in (("mvit_base_16x4", 16, "MVIT_B_16x4.pyth"), ("mvit_base_32x3", 32, "MVIT_B_32x3_f294077834.pyth")):
    _pytorchvideo(_name, DataConfig(_frames, 224, 256, **_PTV), f"{_name} (pytorchvideo MViT)", _file)


# The IG-65M R(2+1)D-34 releases (github.com/moabitcoin/ig65m-pytorch, release v1.0.0, MIT licence;
# converted from Facebook's VMZ Caffe2 models): the project's transforms (shorter side 128, centre crop
# 112, Kinetics statistics) and its README's classifier widths. The reference TAG-Head starts from the
# 32-frame IG-65M model (``r2plus1d_34_32_ig65m``), the default tag.
_IG65M_URL = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
_IG65M = [
    BackboneWeights(tag, filename, classes, DataConfig(frames, 112, 128, **_KINETICS), url=_IG65M_URL + filename,
                    license="mit", dataset=dataset, description=description)
    for tag, filename, classes, frames, dataset, description in (
        ("ig65m_clip32", "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", 487, 32, "IG-65M",
         "IG-65M, 32-frame clips (the TAG-Head reference's starting point)"),
        ("ig65m_clip8", "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth", 359, 8, "IG-65M", "IG-65M, 8-frame clips"),
        ("ig65m_ft_kinetics400_clip32", "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", 400, 32,
         f"IG-65M, fine-tuned on {_K400}", f"IG-65M fine-tuned on {_K400}, 32-frame clips"),
        ("ig65m_ft_kinetics400_clip8", "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", 400, 8,
         f"IG-65M, fine-tuned on {_K400}", f"IG-65M fine-tuned on {_K400}, 8-frame clips"),
    )
]


@register_backbone(
    "taghead/r2plus1d_34", data_config=DataConfig(32, 112, 128, **_PTV),
    description="R(2+1)D-34 in the IG-65M layout, the TAG-Head reference backbone",
    model_class=_TV + "resnet:VideoResNet", kwargs_from_module=_out_features("fc", "num_classes"),
    weights=_IG65M, default_tag="ig65m_clip32", classifier="fc", num_classes_kwarg="num_classes",
)
def _r2plus1d_34(**kwargs: Any) -> nn.Module:
    from .r2plus1d import r2plus1d_34

    import_extra("torchvision.models.video.resnet", "backbone 'taghead/r2plus1d_34'")
    return r2plus1d_34(**kwargs)


def _tiny_kwargs(module: nn.Module) -> dict[str, Any]:
    return {"width": int(module.stem[0].out_channels), "num_classes": int(module.fc.out_features)}


@register_backbone("taghead/tiny_video_cnn", data_config=DataConfig(), description="tiny 3D CNN for demos and tests",
                   model_class="taghead.backbones.tiny:TinyVideoCNN", kwargs_from_module=_tiny_kwargs,
                   classifier="fc", num_classes_kwarg="num_classes")
def _tiny_video_cnn(**kwargs: Any) -> nn.Module:
    from .tiny import tiny_video_cnn

    return tiny_video_cnn(**kwargs)
