"""Models by name, timm style: ``register_model``, ``list_models``, ``create_model``.

The built-in models (:mod:`taghead.models.zoo`) register themselves when the ``taghead.models`` package
is imported, which happens before this module is used.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..backbones.registry import Pretrained
from ..config import DataConfig, PretrainedCfg
from ..heads.base import check_global_pool
from ..heads.io import apply_num_classes, class_dependent_state_keys, set_saved_labels, weights_provenance
from ..hub import CONFIG_NAME, read_config, read_weights, resolve_pretrained_folder
from ..layers.batchnorm import configure_batchnorm
from ..weights import load_safetensors, load_state_dict_checked, load_torch_checkpoint, unwrap_state_dict
from .loading import from_pretrained, from_pretrained_config
from .reference import convert_official_state_dict, is_official_state_dict, unwrap_official_state_dict

__all__ = ["register_model", "list_models", "create_model", "get_pretrained_cfg", "is_model", "model_entrypoint",
           "load_pretrained"]

F = TypeVar("F", bound=Callable[..., nn.Module])

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_PRETRAINED_CFGS: dict[str, PretrainedCfg] = {}
_HUB_PREFIX = "hf-hub:"


def register_model(
    fn: F | None = None, *, name: str | None = None, pretrained_cfg: PretrainedCfg | None = None
) -> Any:
    """Register a model entrypoint ``fn(num_classes: int, **kwargs) -> nn.Module`` under ``name`` (default: its name).

    Usable bare (``@register_model``) or with arguments (``@register_model(pretrained_cfg=cfg)``).
    ``pretrained_cfg`` says which weights ``create_model(name, pretrained=True)`` loads and which
    input they expect; the entrypoint then also receives it as the ``pretrained_cfg`` keyword (with
    any overlay applied). Without one, ``num_classes`` must be passed to :func:`create_model`.

    Args:
        fn: the entrypoint (``None`` when used with arguments).
        name: the registry name (``None``: the function's name).
        pretrained_cfg: the weights the name loads with ``pretrained=True``.
    """

    def decorator(func: F) -> F:
        if not callable(func):
            raise TypeError(f"register_model expects a function, got {func!r}")
        key = name or func.__name__
        if key in _MODELS and _MODELS[key] is not func:
            raise ValueError(f"a model named {key!r} is already registered ({_MODELS[key].__qualname__})")
        if pretrained_cfg is not None and not isinstance(pretrained_cfg, PretrainedCfg):
            raise TypeError(f"pretrained_cfg must be a PretrainedCfg, got {type(pretrained_cfg).__name__}")
        _MODELS[key] = func
        if pretrained_cfg is not None:
            _PRETRAINED_CFGS[key] = pretrained_cfg
        return func

    return decorator(fn) if fn is not None else decorator


def is_model(name: str) -> bool:
    """Whether a model is registered as ``name`` (``"hf-hub:"`` names are not registered).

    Args:
        name: a model name.
    """
    return name in _MODELS


def model_entrypoint(model_name: str) -> Callable[..., nn.Module]:
    """The function registered as ``model_name`` (timm's ``model_entrypoint``); an unknown name suggests close ones.

    Args:
        model_name: the registered model name.
    """
    if model_name not in _MODELS:
        raise _unknown(model_name)
    return _MODELS[model_name]


def _patterns(value: str | Iterable[str] | None) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def _entry_module(name: str) -> tuple[str, str]:
    """The module of a model's entrypoint: its dotted name and its last part (``"taghead.models.zoo"``, ``"zoo"``)."""
    module = getattr(_MODELS[name], "__module__", "") or ""
    return module, module.rpartition(".")[2]


def _has_loadable_weights(cfg: PretrainedCfg | None) -> bool:
    """Whether ``cfg`` points at weights ``create_model(..., pretrained=True)`` can load: a Hub repository (from
    the local cache when offline) or a local file that exists."""
    if cfg is None:
        return False
    return bool(cfg.hf_hub_id) or bool(cfg.file and Path(cfg.file).expanduser().exists())


def list_models(
    filter: str | Iterable[str] | None = "",
    module: str | Iterable[str] | None = "",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] | None = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """Registered model names, sorted (timm's ``list_models``).

    Args:
        filter: shell-style wildcard(s) (``"tag_r2plus1d_34_*"``); a name matching any is kept. Empty: all.
        module: keep the models whose entrypoint lives in these module(s), by last part or full dotted name
            (``"zoo"`` or ``"taghead.models.zoo"`` for the built-in ones).
        pretrained: keep only the models whose weights ``create_model(name, pretrained=True)`` can load: a
            Hugging Face Hub repository in their pretrained config (loaded from the local cache when
            offline), or a local weights file that exists. Models whose weights are described but not
            published (the reference presets: see ``get_pretrained_cfg(name).source``) are not listed.
        exclude_filters: wildcard(s) of names to leave out after ``filter``.
        name_matches_cfg: keep only the models registered with a pretrained config.
        include_tags: accepted for timm's signature; taghead models have no pretrained tags (one config per
            model), so names are the same either way.
    """
    names = set(_MODELS)
    modules = _patterns(module)
    if modules:
        names = {n for n in names if set(_entry_module(n)) & set(modules)}
    includes = _patterns(filter)
    if includes:
        names = {n for n in names if any(fnmatch.fnmatchcase(n, f) for f in includes)}
    for pattern in _patterns(exclude_filters):
        names = {n for n in names if not fnmatch.fnmatchcase(n, pattern)}
    if pretrained:
        names = {n for n in names if _has_loadable_weights(_PRETRAINED_CFGS.get(n))}
    if name_matches_cfg:
        names = {n for n in names if n in _PRETRAINED_CFGS}
    return sorted(names)


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown model {name!r}.{hint} See taghead.list_models() for all {len(_MODELS)} names.")


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The pretrained config registered with model ``name`` (``None`` if it has none).

    Args:
        name: the registered model name.
    """
    if name not in _MODELS:
        raise _unknown(name)
    return _PRETRAINED_CFGS.get(name)


def _how_to_get_weights(name: str, cfg: PretrainedCfg) -> str:
    return (
        f"create_model({name!r}, pretrained=True): this model's pretrained config points at no weights (no "
        f"hf_hub_id, no file). {cfg.source} To load weights you have locally, pass "
        "pretrained_cfg_overlay=dict(file='path/to/weights') (a taghead folder, a .safetensors file or a "
        "reference .pth)."
    )


def _read_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The weights of a taghead folder and its ``config.json`` (``None`` when it has none)."""
    config = read_config(folder) if (folder / CONFIG_NAME).is_file() else None
    return read_weights(folder, config), config


def _read_weight_file(file: str, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, bool]:
    """Weights in ``model``'s key layout from a taghead folder, a ``.safetensors`` file or a ``.pth`` (a state
    dict, bare or wrapped, a taghead training checkpoint, or a reference checkpoint).

    Returns the state dict, the folder's ``config.json`` (if any) and whether the file was a
    reference checkpoint converted on the fly.
    """
    path = Path(file).expanduser()
    if path.is_dir():
        return (*_read_folder(path), False)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights file {file!r} does not exist")
    if path.suffix == ".safetensors":
        return load_safetensors(path), None, False
    state = load_torch_checkpoint(path)
    if is_official_state_dict(state):
        return convert_official_state_dict(unwrap_official_state_dict(state, repr(file)), model, repr(file)), None, True
    return unwrap_state_dict(state, repr(file)), None, False


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], config: dict[str, Any] | None, *, source: str,
               adapt_classifier: bool = False) -> None:
    """Load ``state`` (keys and shapes checked) and the label names of ``config``; with ``adapt_classifier`` the
    class-dependent weights (the classifier, ART's global classifier and prototypes) keep their fresh values and
    the file's are ignored, whatever their class count (timm's ``num_classes=-1``, ``--pretrained-path``)."""
    ignore = class_dependent_state_keys(model) if adapt_classifier else []
    load_state_dict_checked(model, state, ignore=ignore, source=source)
    if ignore:
        warnings.warn(f"loaded {source} except the class-dependent weights ({', '.join(ignore)}), which keep their "
                      "fresh initialisation (pretrained_cfg_overlay num_classes=-1); train them before use.",
                      UserWarning, stacklevel=3)
    if config is not None and hasattr(model, "label_names"):
        set_saved_labels(model, config)


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, *, name: str = "model",
                    cache_dir: str | os.PathLike | None = None, adapt_classifier: bool = False) -> nn.Module:
    """Load the weights ``cfg`` points at (``file`` first, then ``hf_hub_id``, from ``cache_dir`` if given) into
    ``model``; keys are checked.

    Label names saved with the weights (a taghead folder's ``config.json``) replace the model's when their
    count matches its classes.

    Args:
        model: the built model.
        cfg: its pretrained config.
        name: the model, as messages name it.
        cache_dir: the Hugging Face cache for ``hf_hub_id`` weights (``None``: the default one).
        adapt_classifier: load everything but the class-dependent weights when their width differs (with a
            warning) instead of failing.
    """
    config, converted = None, False
    if cfg.file:
        state, config, converted = _read_weight_file(cfg.file, model)
        source = repr(cfg.file)
    elif cfg.hf_hub_id:
        hub = {} if cache_dir is None else dict(cache_dir=cache_dir)
        state, config = _read_folder(resolve_pretrained_folder(cfg.hf_hub_id, **hub))
        source = f"hf-hub:{cfg.hf_hub_id}"
    else:
        raise ValueError(_how_to_get_weights(name, cfg))
    _load_into(model, state, config, source=source, adapt_classifier=adapt_classifier)
    if converted:
        provenance = weights_provenance(model)
        if provenance is not None:
            model.pretrained_cfg = provenance.with_overlay(dict(source_file=Path(cfg.file).name))
    return model


def _without_weights(cfg: PretrainedCfg) -> PretrainedCfg:
    """``cfg`` for a model built with random weights: its input settings, classes and citation (the architecture's),
    none of what describes the registered weights (where they come from, their licence, dataset and reported
    results), so that a card saved from this model claims nothing about weights it does not have."""
    return dataclasses.replace(cfg, hf_hub_id=None, file=None, source=None, license=None, dataset=None, metrics={},
                               split=None, epoch=None, preset=None, source_file=None)


def _check_num_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")


#: timm's regularisation keywords a model may take in its entrypoint, and their values that change nothing.
_OPTIONAL_KEYWORDS = {
    "drop_path_rate": ("stochastic depth", (0, 0.0)),
    "drop_block_rate": ("DropBlock", (0, 0.0)),
}


def _declares(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` names ``name`` among its parameters (not merely ``**kwargs``)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _take_timm_keywords(name: str, kwargs: dict[str, Any], entry: Callable[..., Any] | None) -> None:
    """Check (and remove from ``kwargs``) timm's keywords that an entrypoint does not take itself: ``features_only``
    (only ``False``), ``in_chans`` (3 only), ``global_pool`` (only ``None``), ``drop_path_rate`` /
    ``drop_block_rate`` (only 0)."""
    if kwargs.get("features_only") and (entry is None or not _declares(entry, "features_only")):
        raise ValueError(f"create_model({name!r}): features_only=True is not supported: a taghead model is a classifier "
                         "on one spatio-temporal map, model.forward_features(video) [B, C, T, H, W]; for other "
                         "intermediate maps use torchvision.models.feature_extraction.create_feature_extractor(model, "
                         "return_nodes=...)")
    if kwargs.get("features_only") is False:
        kwargs.pop("features_only")
    in_chans = kwargs.pop("in_chans", 3)
    if isinstance(in_chans, bool) or in_chans != 3:
        raise ValueError(f"create_model({name!r}): in_chans={in_chans!r} is not supported: taghead's video backbones "
                         "take RGB clips [B, 3, T, H, W] (in_chans=3, what timm's train.py passes by default)")
    if "global_pool" in kwargs and (entry is None or not _declares(entry, "global_pool")):
        check_global_pool(kwargs.pop("global_pool"), f"create_model({name!r})")
    for key, (what, no_ops) in _OPTIONAL_KEYWORDS.items():
        if key in kwargs and (entry is None or not _declares(entry, key)):
            value = kwargs.pop(key)
            if isinstance(value, bool) or value not in no_ops:
                raise ValueError(
                    f"create_model({name!r}): {key}={value!r} is not supported: this model has no {what} (its "
                    f"entrypoint takes no {key}). Leave it unset (timm's train.py: omit the flag) or register a "
                    "model whose entrypoint takes it.")


def _check_flags(name: str, scriptable: Any, exportable: Any, no_jit: Any) -> None:
    for key, value in (("scriptable", scriptable), ("exportable", exportable), ("no_jit", no_jit)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"create_model({name!r}): {key} must be a bool or None, got {value!r}")
    if scriptable:
        raise ValueError(
            f"create_model({name!r}): scriptable=True is not supported: taghead models are not TorchScript-"
            "scriptable (their input checks and adapters are Python). Export with torch.export.export(model, "
            "(video,)) or compile with torch.compile(model) instead; exportable=True and no_jit=True are "
            "accepted (nothing in taghead is jit-scripted).")


def _resolve_cfg(name: str, pretrained_cfg: Any) -> PretrainedCfg | None:
    """The pretrained config to use: the registered one, or ``pretrained_cfg`` (a :class:`PretrainedCfg` or its
    dict) in its place."""
    if pretrained_cfg is None:
        return _PRETRAINED_CFGS.get(name)
    if isinstance(pretrained_cfg, PretrainedCfg):
        return pretrained_cfg
    if isinstance(pretrained_cfg, dict):
        return PretrainedCfg.from_dict(pretrained_cfg)
    if isinstance(pretrained_cfg, str):
        raise ValueError(f"create_model({name!r}): pretrained_cfg={pretrained_cfg!r}: taghead models have no "
                         "pretrained tags (one config per model); pass a PretrainedCfg, its dict, or "
                         "pretrained_cfg_overlay=dict(file=...) for other weights")
    raise TypeError(f"pretrained_cfg must be a PretrainedCfg, a dict of its fields or None, got "
                    f"{type(pretrained_cfg).__name__}")


def _check_dtype(dtype: Any) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"create_model: dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16, "
                        f"...), got {dtype!r}")


def _finish(model: nn.Module, name: str, *, checkpoint_path: str | os.PathLike | None, bn_momentum: Any,
            bn_eps: Any, device: Any, dtype: torch.dtype | None) -> nn.Module:
    """What ``create_model`` does to every built model: load ``checkpoint_path`` (after any pretrained weights,
    as timm does), BatchNorm settings, then device and dtype."""
    if checkpoint_path is not None:
        state, config, _ = _read_weight_file(os.fspath(checkpoint_path), model)
        _load_into(model, state, config, source=f"checkpoint_path={os.fspath(checkpoint_path)!r}")
    if bn_momentum is not None or bn_eps is not None:
        if configure_batchnorm(model, momentum=bn_momentum, eps=bn_eps) == 0:
            given = ", ".join(f"{k}={v!r}" for k, v in (("bn_momentum", bn_momentum), ("bn_eps", bn_eps))
                              if v is not None)
            raise ValueError(f"create_model({name!r}): {given} given, but the model has no BatchNorm layer to set")
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def create_model(
    model_name: str,
    pretrained: bool = False,
    pretrained_cfg: PretrainedCfg | dict[str, Any] | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    scriptable: bool | None = None,
    exportable: bool | None = None,
    no_jit: bool | None = None,
    *,
    num_classes: int | None = None,
    pretrained_backbone: Pretrained | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name, with timm's signature and conventions.

    Keywords whose value is ``None`` are dropped first, as timm does (its ``train.py`` passes
    ``drop_path_rate=None``, ``bn_momentum=None``, ...).

    Args:
        model_name: a name from :func:`list_models`, or ``"hf-hub:org/name"`` (or a saved folder's path
            after ``hf-hub:``): the architecture a saved taghead repository describes; with
            ``pretrained=True`` its weights too (same as :func:`taghead.from_pretrained`).
        pretrained: load the weights of the model's pretrained config (its ``file`` or
            ``hf_hub_id``), or of the ``hf-hub:`` repository. Without any, a ``ValueError`` says where
            the weights come from. ``False`` gives random weights.
        pretrained_cfg: a :class:`~taghead.config.PretrainedCfg` (or the dict of its fields) replacing the
            registered one (also for a model registered without one). A timm tag string is refused:
            taghead models have one config each.
        pretrained_cfg_overlay: fields replacing the pretrained config's, e.g. ``dict(file=path)``
            for local weights (a taghead folder, a ``.safetensors`` file or a reference ``.pth``);
            ``num_classes=-1`` (what timm's ``--pretrained-path`` adds) loads everything but the
            class-dependent weights, whatever the file's class count, with a warning.
        checkpoint_path: weights to load after building (and after any pretrained weights), as
            ``timm.models.load_checkpoint`` does: the same files as ``file``, keys checked strictly.
        cache_dir: Hugging Face Hub cache folder for ``hf_hub_id`` / ``hf-hub:`` weights.
        scriptable: ``True`` is refused (taghead models are not TorchScript-scriptable; use
            ``torch.export``).
        exportable: timm's switch, accepted (nothing to change).
        no_jit: timm's switch, accepted (nothing to change).
        num_classes: classifier width (default: the pretrained config's). With ``pretrained=True``
            and a different value, everything but the classifier is loaded, the classifier is
            re-initialised and a warning says so.
        pretrained_backbone: start the backbone from published weights, the head from random ones:
            ``True`` (the backbone's default tag; for the reference presets IG-65M, 32-frame clips, as
            the reference does), a tag, or the path of a weights file (see
            :func:`taghead.wrap_backbone`). Not with ``pretrained=True``, which loads the whole model.
            The model keeps its registered data config (the reference presets: mean 0.45, std 0.225,
            as the reference fine-tunes).
        **kwargs: passed to the model entrypoint (e.g. head options: ``drop_rate``, ``dropout``,
            ``num_frames``, ``crop_size``), except timm's keywords handled here: ``device`` and ``dtype``
            (the model is moved there once built and loaded), ``bn_momentum`` / ``bn_eps`` (set on every
            BatchNorm layer; an error when there is none), ``in_chans`` (3 only), and, unless the entrypoint
            names them itself, ``features_only`` (only ``False``), ``global_pool`` (only ``None``),
            ``drop_path_rate`` and ``drop_block_rate`` (only 0: the built-in models have neither stochastic depth
            nor DropBlock).

    Raises:
        ValueError: an unknown name, weights that cannot be found, a timm keyword that does not apply.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    _check_num_classes(num_classes)
    _check_flags(model_name, scriptable, exportable, no_jit)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    _check_dtype(dtype)
    finish = dict(checkpoint_path=checkpoint_path, bn_momentum=kwargs.pop("bn_momentum", None),
                  bn_eps=kwargs.pop("bn_eps", None), device=device, dtype=dtype)
    configure_batchnorm(nn.Module(), momentum=finish["bn_momentum"], eps=finish["bn_eps"])  # bad values: before building
    if model_name.startswith(_HUB_PREFIX):
        if pretrained_backbone is not None:
            raise ValueError(f"pretrained_backbone does not apply to {model_name!r}: a saved model rebuilds its backbone "
                             "from its config (and pretrained=True loads its weights)")
        if pretrained_cfg_overlay or pretrained_cfg is not None:
            raise ValueError(f"pretrained_cfg and pretrained_cfg_overlay do not apply to {model_name!r}: its weights "
                             "and config are the repository's")
        _take_timm_keywords(model_name, kwargs, None)
        if cache_dir is not None:
            kwargs["cache_dir"] = cache_dir
        load = from_pretrained if pretrained else from_pretrained_config
        try:
            model = load(model_name[len(_HUB_PREFIX):], num_classes=num_classes, **kwargs)
        except TypeError as err:
            raise TypeError(f"create_model({model_name!r}): a saved repository rebuilds its own architecture, so only "
                            f"download options apply (revision, force_download, token, local_files_only): {err}") from None
        return _finish(model, model_name, **finish)
    if model_name not in _MODELS:
        raise _unknown(model_name)
    entry = _MODELS[model_name]
    _take_timm_keywords(model_name, kwargs, entry)
    overlay = dict(pretrained_cfg_overlay or {})
    adapt_classifier = overlay.get("num_classes") == -1
    if adapt_classifier:
        del overlay["num_classes"]
    if pretrained_backbone is not None:
        if pretrained:
            raise ValueError(f"create_model({model_name!r}): pretrained=True loads the whole model's weights, backbone "
                             "included; pretrained_backbone= is for a new model whose backbone starts from published "
                             "weights. Pass one of them.")
        kwargs["pretrained_backbone"] = pretrained_backbone
    cfg = _resolve_cfg(model_name, pretrained_cfg)
    if cfg is not None:
        cfg = cfg.with_overlay(overlay)
    elif overlay:
        raise ValueError(f"model {model_name!r} has no pretrained config to overlay")
    if pretrained and cfg is None:
        raise ValueError(f"model {model_name!r} has no pretrained config, so pretrained=True cannot load anything")
    if pretrained and not cfg.has_weights:
        raise ValueError(_how_to_get_weights(model_name, cfg))
    if cfg is None and num_classes is None:
        raise ValueError(f"model {model_name!r} has no pretrained config: pass num_classes")

    keep_classes = pretrained and not adapt_classifier
    build_classes = cfg.num_classes if (keep_classes or num_classes is None) else num_classes
    entry_kwargs = dict(kwargs)
    if cfg is not None:
        entry_kwargs["pretrained_cfg"] = cfg
    model = entry(num_classes=build_classes, **entry_kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model entrypoint {model_name!r} returned {type(model).__name__}, expected an nn.Module")
    if cfg is not None:
        if cfg.label_names is not None and hasattr(model, "label_names") and len(cfg.label_names) == build_classes:
            model.label_names = list(cfg.label_names)
        data_config = getattr(model, "data_config", None)
        if isinstance(data_config, DataConfig) and (data_config.num_frames, data_config.crop_size) == (
                cfg.num_frames, cfg.crop_size):
            model.data_config = cfg.data_config()  # the weights' resize and normalisation
        model.pretrained_cfg = cfg if pretrained else _without_weights(cfg)
    model.architecture = model_name
    if pretrained:
        load_pretrained(model, cfg, name=model_name, cache_dir=cache_dir, adapt_classifier=adapt_classifier)
        if keep_classes:
            apply_num_classes(model, num_classes, what=f"create_model({model_name!r})")
    return _finish(model, model_name, **finish)
