"""Saving and loading heads: a head's ``config.json``, a head rebuilt from its config through the head
registry, head-only checkpoints (also taken out of a full-model checkpoint), and a new class count.

Folders and repositories themselves are :mod:`taghead.hub`'s business; full models are
:mod:`taghead.models`'. :func:`load_saved_state` and :func:`apply_num_classes` are shared with them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import DataConfig, PretrainedCfg
from ..hub import (
    WEIGHTS_NAME,
    HubDownloadKwargs,
    HubMixin,
    check_label_names,
    read_config,
    read_weights,
    read_weights_header,
    resolve_pretrained_folder,
)
from ..limits import MAX_UNVERIFIED_PARAMETER_BYTES
from ..utils.meta import build_on_meta, parameter_bytes
from ..version import __version__
from ..weights import check_state_dict, load_state_dict_checked
from .registry import get_head_class, registered_head_name

if TYPE_CHECKING:
    from pathlib import Path

    from typing_extensions import Unpack

__all__ = ["HeadHubMixin", "head_hub_config", "head_from_config", "head_part", "load_head", "load_saved_state",
           "apply_num_classes", "class_dependent_state_keys", "pretrained_cfg_dict", "weights_provenance", "set_saved_labels",
           "check_on_meta", "check_unverified"]

#: Weight prefix of the head inside a full model's state dict.
HEAD_PREFIX = "head."


def weights_provenance(module: nn.Module) -> Any:
    """Where ``module``'s weights come from (a :class:`~taghead.config.PretrainedCfg`, ``None`` when unknown): a
    model's ``weights_cfg`` (its ``pretrained_cfg`` is timm's live view, never ``None``), a head's
    ``pretrained_cfg``. Assigning ``module.pretrained_cfg`` sets it in both cases.

    Args:
        module: a head or a model.
    """
    return module.weights_cfg if hasattr(module, "weights_cfg") else getattr(module, "pretrained_cfg", None)


def pretrained_cfg_dict(module: nn.Module) -> dict[str, Any] | None:
    """The provenance of ``module``'s weights (:func:`weights_provenance`) as the dict ``config.json`` stores
    (``None`` when unknown).

    Args:
        module: a head or a model.
    """
    cfg = weights_provenance(module)
    return cfg.to_dict() if hasattr(cfg, "to_dict") else cfg


def head_hub_config(head: nn.Module, *, label_names: list[str] | None = None,
                    data_config: DataConfig | None = None) -> dict[str, Any]:
    """The ``config.json`` of a head-only checkpoint (``kind="head"``).

    Args:
        head: the head.
        label_names: class names in classifier order.
        data_config: the input the head's backbone expects.
    """
    get_config = getattr(head, "get_config", None)
    if not callable(get_config):
        raise TypeError(f"a head-only checkpoint needs a head with get_config(), got {type(head).__name__}")
    if data_config is not None and not isinstance(data_config, DataConfig):
        raise TypeError(f"data_config must be a DataConfig, got {type(data_config).__name__}")
    num_classes = getattr(head, "num_classes", None)
    labels = check_label_names(label_names if label_names is not None else getattr(head, "label_names", None),
                               num_classes)
    name = registered_head_name(head)
    return dict(kind="head", taghead_version=__version__, architecture=None,
                num_classes=num_classes, label_names=labels,
                data_config=data_config.to_dict() if data_config is not None else None,
                spec=dict(head=name, head_config=get_config() if name is not None else None),
                pretrained_cfg=pretrained_cfg_dict(head))


def head_from_config(head_name: str | None, head_config: dict[str, Any] | None, source: str) -> nn.Module:
    """A freshly initialised head of the registered class ``head_name``, built with ``head_config``.

    Args:
        head_name: the registered head name.
        head_config: its constructor arguments.
        source: where the config came from, named in errors.
    """
    if head_name is None or head_config is None:
        raise ValueError(
            f"{source} was saved with a custom head that the head registry cannot rebuild. Build the same model "
            "yourself and load the weights into it with taghead.hub.load_weights(model, path_or_repo_id)."
        )
    return get_head_class(head_name)(**head_config)


# ------------------------------------------------------------------------------------------- class count
def _classifier_keys(module: nn.Module) -> list[str]:
    get_classifier = getattr(module, "get_classifier", None)
    if not callable(get_classifier):
        return []
    classifier = get_classifier()
    prefix = next((name for name, m in module.named_modules() if m is classifier), None)
    if prefix is None:
        return []
    return [f"{prefix}.{k}" if prefix else k for k in classifier.state_dict()]


def _class_dependent_keys(module: nn.Module) -> tuple[list[str], list[str]]:
    """State-dict keys that follow ``num_classes``: the classifier's, and the others that the head lists in
    ``class_dependent_keys()`` (``head.``-prefixed in a full model)."""
    classifier = _classifier_keys(module)
    for prefix, owner in (("", module), (HEAD_PREFIX, getattr(module, "head", None))):
        class_dependent_keys = getattr(owner, "class_dependent_keys", None)
        if callable(class_dependent_keys):
            return classifier, [prefix + k for k in class_dependent_keys() if prefix + k not in classifier]
    return classifier, []


def class_dependent_state_keys(module: nn.Module) -> list[str]:
    """Every state-dict key of ``module`` (a head or a model) that follows ``num_classes``: the classifier's, then
    the head's other class-dependent weights (ART's global classifier and prototypes).

    Args:
        module: a head or a model.
    """
    classifier, others = _class_dependent_keys(module)
    return classifier + others


def apply_num_classes(module: nn.Module, num_classes: int | None, *, what: str) -> None:
    """Re-initialise the classifier (and the head's other class-dependent weights) of a head or a model for
    ``num_classes`` (if different), with a warning that names them.

    Args:
        module: a head or a model.
        num_classes: the class count (``None``: no change).
        what: the module, named in the warning.
    """
    if num_classes is None or num_classes == module.num_classes:
        return
    if not callable(getattr(module, "reset_classifier", None)):
        raise TypeError(f"{what}: cannot change num_classes, the model has no reset_classifier()")
    old, before = module.num_classes, _class_dependent_keys(module)
    module.reset_classifier(num_classes)
    # Keys from both sides of the reset: with 0 classes a head has none.
    classifier, others = (list(dict.fromkeys(b + a)) for b, a in zip(before, _class_dependent_keys(module)))
    also = f" and the other class-dependent weights ({', '.join(others)})" if others else ""
    warnings.warn(
        f"{what}: loaded the pretrained weights ({old} classes) except the classifier ({', '.join(classifier)})"
        f"{also}, which {'were' if others else 'was'} re-initialised for num_classes={num_classes}; "
        f"train {'them' if others else 'it'} before use.",
        UserWarning,
        stacklevel=4,
    )


# ------------------------------------------------------------------------------------------------- loading
def check_on_meta(factory: Callable[[], nn.Module], weights: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Check that ``factory()`` will fit ``weights`` before building it: a twin built on the ``meta`` device
    (no memory, no initialisation) must have their names, shapes and dtype kinds (``meta`` tensors from
    the safetensors header will do).

    A config that asks for more than its weights hold (a feed-forward width of ``10**7``) is refused here,
    with a :class:`~taghead.weights.StateDictMismatchError`, before anything is allocated. When the
    factory cannot run on the ``meta`` device (see :func:`~taghead.utils.meta.build_on_meta`) nothing is
    checked here; the weights are compared when they are loaded.

    Args:
        factory: builds the module.
        weights: the weights it must fit.
        source: where the weights came from, named in errors.
    """
    twin = build_on_meta(factory)
    if twin is not None:
        check_state_dict(twin, weights, source=f"{source} ({WEIGHTS_NAME})")


def check_unverified(factory: Callable[[], nn.Module], *, source: str) -> None:
    """Check an architecture described by a config alone (no weights to compare with) before building it:
    a ``ValueError`` when its ``meta`` twin holds more than
    :data:`~taghead.limits.MAX_UNVERIFIED_PARAMETER_BYTES` of parameters and buffers.

    Args:
        factory: builds the module.
        source: where the config came from, named in errors.
    """
    twin = build_on_meta(factory)
    if twin is not None:
        size = parameter_bytes(twin)
        if size > MAX_UNVERIFIED_PARAMETER_BYTES:
            raise ValueError(
                f"{source} describes a module of {size / 2**30:.1f} GiB of parameters, beyond the "
                f"{MAX_UNVERIFIED_PARAMETER_BYTES / 2**30:.0f} GiB that taghead builds from a config without "
                "weights (taghead.limits.MAX_UNVERIFIED_PARAMETER_BYTES); check its spec (widths, depths)")


def load_saved_state(module: nn.Module, state: dict[str, torch.Tensor], config: dict[str, Any], *, source: str,
                     num_classes: int | None = None) -> nn.Module:
    """Finish loading a rebuilt module: its weights (keys and shapes checked), its provenance
    (``pretrained_cfg``, ``architecture``) from ``config``, a new class count if asked; eval mode.

    Args:
        module: the rebuilt head or model.
        state: its saved weights.
        config: the ``config.json`` content.
        source: the folder or repository, named in errors.
        num_classes: a new class count (``None``: as saved).
    """
    load_state_dict_checked(module, state, source=f"{source} ({WEIGHTS_NAME})")
    if config.get("pretrained_cfg") is not None:
        module.pretrained_cfg = PretrainedCfg.from_dict(config["pretrained_cfg"])
    if config.get("architecture"):
        module.architecture = config["architecture"]
    apply_num_classes(module, num_classes, what=f"from_pretrained({source})")
    return module.eval()


def head_part(config: dict[str, Any]) -> dict[str, Any]:
    """The head-only view (``kind="head"``) of a ``config.json``: a full model's reduced to its head.

    Args:
        config: a head's or a full model's ``config.json`` content.
    """
    if config["kind"] == "head":
        return config
    spec = config["spec"]
    return dict(config, kind="head", spec=dict(head=spec.get("head"), head_config=spec.get("head_config")))


def set_saved_labels(module: nn.Module, config: dict[str, Any]) -> nn.Module:
    """Give ``module`` (a head or a model) the label names of ``config`` when they match its class count.

    Args:
        module: a head or a model.
        config: the ``config.json`` content.
    """
    labels = config.get("label_names")
    if labels is not None and getattr(module, "num_classes", None) == len(labels):
        module.label_names = list(labels)
    return module


def load_head_from_folder(folder: Path, config: dict[str, Any], source: str, *,
                          num_classes: int | None = None) -> nn.Module:
    """The head saved in ``folder``: a head-only checkpoint, or the head of a full model."""
    def head_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if config["kind"] == "model":  # only the head's part of a full model
            return {k[len(HEAD_PREFIX):]: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
        return state

    spec = head_part(config)["spec"]

    def build() -> nn.Module:
        return head_from_config(spec.get("head"), spec.get("head_config"), source)

    check_on_meta(build, head_weights(read_weights_header(folder, config)), source=source)
    head = build()
    load_saved_state(head, head_weights(read_weights(folder, config)), head_part(config), source=source,
                     num_classes=num_classes)
    return set_saved_labels(head, head_part(config))


def load_head(repo_id_or_path: str | os.PathLike, *, num_classes: int | None = None,
              **hub_kwargs: Unpack[HubDownloadKwargs]) -> nn.Module:
    """A head from a saved folder or a Hub repository: a head-only checkpoint, or the head of a full model.

    ``num_classes`` re-initialises the classifier (and the head's other class-dependent weights) for
    another class count, with a warning; ``hub_kwargs`` go to :func:`taghead.hub.resolve_pretrained_folder`.

    Args:
        repo_id_or_path: a saved folder or a Hub repository id.
        num_classes: re-initialise the classifier for this class count.
        **hub_kwargs: passed to :func:`taghead.hub.resolve_pretrained_folder`.
    """
    folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
    return load_head_from_folder(folder, read_config(folder), repr(os.fspath(repo_id_or_path)),
                                 num_classes=num_classes)


class HeadHubMixin(HubMixin):
    """Head-only checkpoints: ``head.save_pretrained(dir)``, ``head.push_to_hub(repo_id)`` and
    ``Head.from_pretrained(dir_or_repo_id)`` (also the head of a full-model checkpoint)."""

    def hub_config(self, *, label_names: list[str] | None = None, data_config: Any = None) -> dict[str, Any]:
        return head_hub_config(self, label_names=label_names, data_config=data_config)  # type: ignore[arg-type]

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | os.PathLike, *, num_classes: int | None = None,
                        **hub_kwargs: Unpack[HubDownloadKwargs]) -> Any:
        """The head saved in a folder or Hub repository (a full model's head too); it must be an instance of
        this class. ``num_classes`` and ``hub_kwargs`` as in :func:`load_head`.

        Args:
            repo_id_or_path: a saved folder or a Hub repository id.
            num_classes: re-initialise the classifier for this class count.
            **hub_kwargs: passed to :func:`taghead.hub.resolve_pretrained_folder`.
        """
        head = load_head(repo_id_or_path, num_classes=num_classes, **hub_kwargs)
        if not isinstance(head, cls):
            raise TypeError(
                f"{os.fspath(repo_id_or_path)!r} holds a {type(head).__name__}, not a {cls.__name__}; "
                "load it with taghead.from_pretrained instead"
            )
        return head

