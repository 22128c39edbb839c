"""Recognise a backbone module as a registered architecture, so that a saved model rebuilds it by name.

A module is recognised as ``create_backbone(name, **kwargs)`` when that call, run on the ``meta`` device
(shapes only: no memory, no arithmetic, no random numbers drawn), makes a module of exactly the same
structure (:func:`module_structure`):

- the same submodules, by name, of the same classes;
- the same plain settings in every submodule (its ``int``, ``float``, ``bool``, ``str`` attributes and
  tuples of them: strides, paddings, ``eps``, dropout rates, widths, ...);
- the same parameters and buffers: names, shapes and dtypes.

Weights are not compared: they are what a checkpoint stores. The candidates are the registered
backbones whose ``model_class`` is the module's class, built with the arguments their
``kwargs_from_module`` reads back from it (``num_classes`` from the classifier's width, ...), and for
a timm model ``"timm/<architecture>"`` from the model's own ``pretrained_cfg``, with ``num_classes``,
``in_chans``, ``img_size``, ``global_pool``, ``dynamic_img_size``, ``drop_rate`` and
``drop_path_rate`` read back from it. The arguments that equal the builder's defaults are left out of the
result, except for entries registered with ``records_defaults`` (Hugging Face Transformers models: the whole config is
kept). A module that was changed (a replaced layer, other widths,
another stride) matches no candidate and is not recognised; nor is one converted to another dtype.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .registry import KwargsReader, create_backbone, get_backbone_entry, list_backbones

__all__ = ["Recognition", "recognize_backbone", "module_structure"]

_PLAIN = (bool, int, float, str, type(None))
#: Structures of candidate builds, by (name, JSON of the arguments): every build is made once per process.
_BUILT: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}


@dataclass(frozen=True)
class Recognition:
    """What :func:`recognize_backbone` found; true when a registered backbone was recognised.

    Attributes:
        name: the registered name, or ``None`` when the module is none of them.
        kwargs: the builder arguments: the module is exactly ``create_backbone(name, **kwargs)`` up to its
            weights.
        reason: why, in words (for an unrecognised module: the closest candidate and how it differs).
        also: other registered names whose builders make the same structure (e.g. ``pytorchvideo/x3d_s``
            and ``x3d_m``, which differ only in the clip they are evaluated on); any of them rebuilds the
            module.
    """

    name: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    also: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.name is not None


def _setting(value: Any) -> Any:
    """A plain attribute value in comparable form (lists become tuples), or ``None`` if it is not plain."""
    if isinstance(value, _PLAIN):
        return (value,)
    if isinstance(value, (tuple, list)):
        items = [_setting(v) for v in value]
        return None if any(i is None for i in items) else (tuple(i[0] for i in items),)
    return None


def module_structure(module: nn.Module) -> dict[str, tuple[Any, ...]]:
    """The structure that recognition compares, by entry: ``"module <name>"`` -> (class, plain settings);
    ``"parameter <name>"`` and ``"buffer <name>"`` -> (shape, dtype). Values only, no weights.

    Args:
        module: the module to describe.
    """
    entries: dict[str, tuple[Any, ...]] = {}
    for name, m in module.named_modules(remove_duplicate=False):
        settings = []
        for key, value in vars(m).items():
            plain = None if key.startswith("_") or key == "training" else _setting(value)
            if plain is not None:
                settings.append((key, plain[0]))
        cls = type(m)
        entries[f"module {name or '(root)'}"] = (f"{cls.__module__}.{cls.__qualname__}", tuple(sorted(settings)))
    for kind, tensors in (("parameter", module.named_parameters(remove_duplicate=False)),
                          ("buffer", module.named_buffers(remove_duplicate=False))):
        for name, tensor in tensors:
            entries[f"{kind} {name}"] = (tuple(tensor.shape), str(tensor.dtype))
    return entries


def _differences(found: dict[str, tuple[Any, ...]], built: dict[str, tuple[Any, ...]]) -> list[str]:
    """Entries where the module (``found``) and the candidate (``built``) differ, in words."""
    out = []
    for key in found.keys() | built.keys():
        if key not in built:
            out.append(f"{key} is not in the registered architecture")
        elif key not in found:
            out.append(f"{key} of the registered architecture is missing")
        elif found[key] != built[key]:
            out.append(f"{key}: {_difference(found[key], built[key])}")
    return sorted(out)


def _difference(found: tuple[Any, ...], built: tuple[Any, ...]) -> str:
    if not isinstance(found[0], str):  # a parameter or buffer
        return f"shape {list(found[0])} {found[1]} instead of {list(built[0])} {built[1]}"
    if found[0] != built[0]:
        return f"a {found[0]} instead of a {built[0]}"
    mine, theirs = dict(found[1]), dict(built[1])
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k, "(unset)") != theirs.get(k, "(unset)"))
    return ", ".join(f"{k} {mine.get(k, '(unset)')!r} instead of {theirs.get(k, '(unset)')!r}" for k in keys)


def _module_names(structure: dict[str, tuple[Any, ...]]) -> set[str]:
    return {key for key in structure if key.startswith("module ")}


def _build(name: str, kwargs: dict[str, Any], reader: KwargsReader | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The structure of ``create_backbone(name, **kwargs)`` and the arguments ``reader`` reads from it (cached)."""
    key = (name, json.dumps(kwargs, sort_keys=True))
    if key not in _BUILT:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            try:
                with torch.device("meta"):
                    module = create_backbone(name, **kwargs)
            except (RuntimeError, NotImplementedError):  # a builder that reads tensor values: build for real
                module = create_backbone(name, **kwargs)
        _BUILT[key] = (module_structure(module), reader(module) if reader is not None else {})
    return _BUILT[key]


def _timm_kwargs(model: nn.Module) -> dict[str, Any]:
    """The timm arguments that shape ``model`` and can be read back from it."""
    kwargs: dict[str, Any] = {}
    if isinstance(getattr(model, "num_classes", None), int):
        kwargs["num_classes"] = model.num_classes
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None:
        kwargs["in_chans"] = int(first_conv.in_channels)
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is not None:
        size = [int(v) for v in img_size]
        kwargs["img_size"] = size[0] if len(set(size)) == 1 else size
    pool = getattr(model, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)
    if isinstance(pool, str):
        kwargs["global_pool"] = pool
    for key in ("dynamic_img_size", "drop_rate"):
        if isinstance(getattr(model, key, None), (bool, float)):
            kwargs[key] = getattr(model, key)
    drop_path = [float(m.drop_prob) for m in model.modules() if type(m).__name__ == "DropPath"]
    if drop_path:
        kwargs["drop_path_rate"] = max(drop_path)
    return kwargs


def _records_defaults(name: str) -> bool:
    """Whether the spec of ``name`` records all builder arguments read back, also the default ones."""
    return not name.startswith("timm/") and get_backbone_entry(name).records_defaults


def _candidates(module: nn.Module) -> list[tuple[str, KwargsReader | None]]:
    cls = type(module)
    key = f"{cls.__module__}:{cls.__qualname__}"
    found: list[tuple[str, KwargsReader | None]] = []
    for name in list_backbones():
        entry = get_backbone_entry(name)
        if entry.model_class == key:
            found.append((name, entry.kwargs_from_module))
    if cls.__module__.startswith("timm."):
        cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
        architecture = cfg.get("architecture") if isinstance(cfg, dict) else getattr(cfg, "architecture", None)
        if isinstance(architecture, str):
            import timm

            if timm.is_model(architecture):
                found.append((f"timm/{architecture}", _timm_kwargs))
    return found


def recognize_backbone(module: nn.Module) -> Recognition:
    """Which registered backbone ``module`` is, with which builder arguments (see the module docstring).

    Call it on the module as built, before an adapter changes it (``wrap_backbone`` does so). The
    candidates' structures are built on the ``meta`` device once per process; the global random state
    is left untouched. ::

        >>> taghead.recognize_backbone(torchvision.models.video.r3d_18(num_classes=10))
        Recognition(name='torchvision/r3d_18', kwargs={'num_classes': 10}, reason='...')

    Args:
        module: the backbone as built (before an adapter changes it).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"recognize_backbone expects an nn.Module, got {type(module).__name__}")
    cls = type(module)
    candidates = _candidates(module)
    if not candidates:
        return Recognition(None, {}, f"no registered backbone builds a {cls.__module__}.{cls.__qualname__}")
    found = module_structure(module)
    matches: list[tuple[str, dict[str, Any]]] = []
    closest: tuple[int, str] | None = None
    for name, reader in candidates:
        try:
            default, defaults = _build(name, {}, reader)
            kwargs: dict[str, Any] = {}
            full = _records_defaults(name)  # the arguments (a whole config) may also change the submodules
            if _module_names(default) != _module_names(found) and not full:  # the arguments cannot fix it
                built = default
            else:
                wanted = reader(module) if reader is not None else {}
                kwargs = {k: v for k, v in wanted.items() if k not in defaults or defaults[k] != v}
                built = _build(name, kwargs, reader)[0] if kwargs else default
                if full:
                    kwargs = dict(wanted)
        except Exception as err:  # the module lacks what the reader reads, or the builder refuses the arguments
            closest = closest or (10**9, f"{name}: not comparable ({type(err).__name__}: {err})")
            continue
        differences = _differences(found, built)
        if not differences:
            matches.append((name, kwargs))
        elif closest is None or len(differences) < closest[0]:
            shown = "; ".join(differences[:3]) + (f"; ... ({len(differences) - 3} more)" if len(differences) > 3 else "")
            closest = (len(differences), f"the closest registered architecture, {name!r}, differs in "
                                         f"{len(differences)} entr{'y' if len(differences) == 1 else 'ies'}: {shown}")
    if not matches:
        assert closest is not None
        return Recognition(None, {}, closest[1])
    (name, kwargs), also = matches[0], tuple(n for n, _ in matches[1:])
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    same = f"; {', '.join(also)} build{'s' if len(also) == 1 else ''} the same structure" if also else ""
    return Recognition(name, kwargs, f"exactly the structure of create_backbone({name!r}{args}): classes, settings, "
                                     f"parameter and buffer shapes and dtypes{same}", also)
