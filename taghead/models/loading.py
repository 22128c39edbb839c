"""``taghead.from_pretrained``: whatever a saved folder or Hub repository holds, a full model or a head.

Also the same choice for configs alone (:func:`config_for`, :func:`module_from_config`), which training
checkpoints store. Full models load through :meth:`VideoClassifier.from_folder`, heads through
:func:`taghead.heads.io.load_head_from_folder`; the folder itself is :mod:`taghead.hub`'s business.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..heads.io import (
    HEAD_PREFIX,
    check_on_meta,
    check_unverified,
    head_from_config,
    head_part,
    load_head_from_folder,
    set_saved_labels,
)
from ..hub import KINDS, HubDownloadKwargs, HubMixin, read_config, resolve_pretrained_folder
from .classifier import VideoClassifier

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["from_pretrained", "from_pretrained_config", "config_for", "module_from_config"]


def from_pretrained(
    repo_id_or_path: str | os.PathLike,
    *,
    backbone: nn.Module | None = None,
    num_classes: int | None = None,
    kind: str | None = None,
    **hub_kwargs: Unpack[HubDownloadKwargs],
) -> nn.Module:
    """Rebuild a model (or a head) from a saved folder or a Hub repository and load its weights.

    Args:
        repo_id_or_path: a folder written by ``save_pretrained``, or a Hub repo id ``"org/name"``.
        backbone: the backbone module, needed only when the model was saved around a backbone module
            that taghead did not recognise (``spec["backbone"] is None``).
        num_classes: a different class count: everything but the classifier (and the head's other
            class-dependent weights) is loaded, those are re-initialised and a warning names them.
        kind: ``"head"`` to load only the head of a full-model checkpoint; ``None`` loads what was saved.
        **hub_kwargs: ``revision``, ``cache_dir``, ``force_download``, ``token``, ``local_files_only``
            (:class:`~taghead.hub.HubDownloadKwargs`), passed to ``huggingface_hub.snapshot_download``.
            ``HF_HUB_OFFLINE=1`` implies ``local_files_only``.

    Returns:
        a :class:`~taghead.VideoClassifier` (``kind="model"``) or a head (``kind="head"``), in eval mode.
    """
    _check_kind(kind)
    folder = resolve_pretrained_folder(repo_id_or_path, **hub_kwargs)
    source = repr(os.fspath(repo_id_or_path))
    config = read_config(folder)
    if kind == "head" or (kind is None and config["kind"] == "head"):
        if backbone is not None:
            raise ValueError(f"{source} is a head-only checkpoint; backbone= does not apply. Attach the loaded "
                             "head with taghead.VideoClassifier(backbone, head, data_config).")
        return load_head_from_folder(folder, config, source, num_classes=num_classes)
    return VideoClassifier.from_folder(folder, config, source=source, backbone=backbone, num_classes=num_classes)


def from_pretrained_config(
    repo_id_or_path: str | os.PathLike,
    *,
    backbone: nn.Module | None = None,
    num_classes: int | None = None,
    kind: str | None = None,
    **hub_kwargs: Unpack[HubDownloadKwargs],
) -> nn.Module:
    """The architecture a saved folder or Hub repository describes, with random weights: only its
    ``config.json`` is read (``create_model("hf-hub:...", pretrained=False)``, as in timm).

    Arguments as in :func:`from_pretrained`; ``num_classes`` builds another classifier width (the saved
    label names are then dropped). The module is left in training mode, as a freshly built one is.

    Args:
        repo_id_or_path: a saved folder or a Hub repository id.
        backbone: the backbone module, for a model saved around one taghead did not recognise.
        num_classes: another classifier width.
        kind: ``"head"`` to build only the head of a full model; ``None``: what was saved.
        **hub_kwargs: passed to :func:`taghead.hub.resolve_pretrained_folder`.
    """
    _check_kind(kind)
    folder = resolve_pretrained_folder(repo_id_or_path, config_only=True, **hub_kwargs)
    config = read_config(folder)
    if kind == "head":
        config = head_part(config)
    module = module_from_config(config, backbone=backbone, source=repr(os.fspath(repo_id_or_path)))
    if num_classes is not None and num_classes != module.num_classes:
        module.reset_classifier(num_classes)  # random weights: nothing is lost, nothing to warn about
    if config["kind"] == "head":
        set_saved_labels(module, config)
    if config.get("architecture"):
        module.architecture = config["architecture"]
    return module


def _check_kind(kind: str | None) -> None:
    if kind not in (None, *KINDS):
        raise ValueError(f"kind must be None, 'model' or 'head', got {kind!r}")


def config_for(module: nn.Module) -> dict[str, Any]:
    """The ``config.json`` content of a :class:`~taghead.VideoClassifier` or a head.

    Args:
        module: a model or a head.
    """
    if not isinstance(module, HubMixin):
        raise TypeError(f"expected a taghead VideoClassifier or a head (VideoHead), got {type(module).__name__}")
    return module.hub_config()


def module_from_config(config: dict[str, Any], *, backbone: nn.Module | None = None,
                       source: str = "the config", weights: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The model or head a ``config.json`` content describes, with random weights.

    Before it is built, a twin on the ``meta`` device is compared with ``weights`` (the state dict that
    will be loaded into it: names, shapes, dtype kinds; see :func:`~taghead.heads.io.check_on_meta`), or,
    without weights, its size is checked (:func:`~taghead.heads.io.check_unverified`). With a
    user-supplied ``backbone`` only the head is built from the config, and checked.

    Args:
        config: the ``config.json`` content.
        backbone: the backbone module, for a model saved around one taghead did not recognise.
        source: the config, as errors name it.
        weights: the state dict that will be loaded (``None``: only the size is checked).
    """
    spec = config["spec"]
    if config["kind"] == "head":
        if backbone is not None:
            raise ValueError(f"{source} describes a head alone; backbone= does not apply")

    def build_head() -> nn.Module:
        return head_from_config(spec.get("head"), spec.get("head_config"), source)

    def build_model() -> nn.Module:
        return VideoClassifier.from_config(config, backbone=backbone, source=source)

    build = build_head if config["kind"] == "head" else build_model
    checked, checked_weights = build, weights
    if config["kind"] == "model" and backbone is not None:  # the user's module is used as it is: check the head
        checked = build_head if spec.get("head") is not None and spec.get("head_config") is not None else None
        if weights is not None:
            checked_weights = {k[len(HEAD_PREFIX):]: v for k, v in weights.items() if k.startswith(HEAD_PREFIX)}
    if checked is not None:
        if checked_weights is not None:
            check_on_meta(checked, checked_weights, source=source)
        else:
            check_unverified(checked, source=source)
    return build()
