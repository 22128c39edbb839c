"""Models by name, timm style: ``register_model``, ``list_models``, ``create_model``.

The built-in models (:mod:`taghead.models.zoo`) register themselves when the ``taghead.models`` package
is imported, which happens before this module is used.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..backbones.registry import Pretrained
from ..config import DataConfig, PretrainedCfg
from ..heads.io import apply_num_classes, set_saved_labels
from ..hub import CONFIG_NAME, read_config, read_weights, resolve_pretrained_folder
from ..weights import load_safetensors, load_state_dict_checked, load_torch_checkpoint, unwrap_state_dict
from .loading import from_pretrained, from_pretrained_config
from .reference import convert_official_state_dict, is_official_state_dict, unwrap_official_state_dict

__all__ = ["register_model", "list_models", "create_model", "get_pretrained_cfg", "is_model", "load_pretrained"]

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
    """Whether a model is registered as ``name`` (``"hf-hub:"`` names are not registered)."""
    return name in _MODELS


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard (``"tag_r2plus1d_34_*"``).

    ``pretrained=True`` keeps the models with published weights: a Hub repo, a local file, or
    reference checkpoints to convert (see each model's ``pretrained_cfg.source``).
    """
    names = sorted(_MODELS)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if pretrained:
        names = [n for n in names if n in _PRETRAINED_CFGS
                 and (_PRETRAINED_CFGS[n].has_weights or _PRETRAINED_CFGS[n].preset is not None)]
    return names


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown model {name!r}.{hint} See taghead.list_models() for all {len(_MODELS)} names.")


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The pretrained config registered with model ``name`` (``None`` if it has none)."""
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
    return read_weights(folder), read_config(folder) if (folder / CONFIG_NAME).is_file() else None


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


def load_pretrained(model: nn.Module, cfg: PretrainedCfg, *, name: str = "model") -> nn.Module:
    """Load the weights ``cfg`` points at (``file`` first, then ``hf_hub_id``) into ``model``; keys are checked.

    Label names saved with the weights (a taghead folder's ``config.json``) replace the model's when
    their count matches its classes.
    """
    config, converted = None, False
    if cfg.file:
        state, config, converted = _read_weight_file(cfg.file, model)
        source = repr(cfg.file)
    elif cfg.hf_hub_id:
        state, config = _read_folder(resolve_pretrained_folder(cfg.hf_hub_id))
        source = f"hf-hub:{cfg.hf_hub_id}"
    else:
        raise ValueError(_how_to_get_weights(name, cfg))
    load_state_dict_checked(model, state, source=source)
    if converted and getattr(model, "pretrained_cfg", None) is not None:
        model.pretrained_cfg = model.pretrained_cfg.with_overlay(dict(source_file=Path(cfg.file).name))
    if config is not None and hasattr(model, "label_names"):
        set_saved_labels(model, config)
    return model


def _check_num_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")


def create_model(
    model_name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    pretrained_backbone: Pretrained | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name (timm conventions).

    Args:
        model_name: a name from :func:`list_models`, or ``"hf-hub:org/name"`` (or a saved folder's path
            after ``hf-hub:``): the architecture a saved taghead repository describes; with
            ``pretrained=True`` its weights too (same as :func:`taghead.from_pretrained`).
        pretrained: load the weights of the model's pretrained config (its ``file`` or
            ``hf_hub_id``), or of the ``hf-hub:`` repository. Without any, a ``ValueError`` says where
            the weights come from. ``False`` gives random weights.
        num_classes: classifier width (default: the pretrained config's). With ``pretrained=True``
            and a different value, everything but the classifier is loaded, the classifier is
            re-initialised and a warning says so.
        pretrained_cfg_overlay: fields replacing the pretrained config's, e.g. ``dict(file=path)``
            for local weights (a taghead folder, a ``.safetensors`` file or a reference ``.pth``).
        pretrained_backbone: start the backbone from published weights, the head from random ones:
            ``True`` (the backbone's default tag; for the reference presets IG-65M, 32-frame clips, as
            the reference does), a tag, or the path of a weights file (see
            :func:`taghead.wrap_backbone`). Not with ``pretrained=True``, which loads the whole model.
            The model keeps its registered data config (the reference presets: mean 0.45, std 0.225,
            as the reference fine-tunes).
        **kwargs: passed to the model entrypoint (e.g. head options such as ``dropout``, or
            ``bn_momentum``, ``freeze_bn_stats``).
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    _check_num_classes(num_classes)
    if model_name.startswith(_HUB_PREFIX):
        if pretrained_backbone is not None:
            raise ValueError(f"pretrained_backbone does not apply to {model_name!r}: a saved model rebuilds its backbone "
                             "from its config (and pretrained=True loads its weights)")
        if pretrained_cfg_overlay:
            raise ValueError(f"pretrained_cfg_overlay does not apply to {model_name!r}: its weights are the repo's")
        load = from_pretrained if pretrained else from_pretrained_config
        return load(model_name[len(_HUB_PREFIX):], num_classes=num_classes, **kwargs)
    if model_name not in _MODELS:
        raise _unknown(model_name)
    if pretrained_backbone is not None:
        if pretrained:
            raise ValueError(f"create_model({model_name!r}): pretrained=True loads the whole model's weights, backbone "
                             "included; pretrained_backbone= is for a new model whose backbone starts from published "
                             "weights. Pass one of them.")
        kwargs["pretrained_backbone"] = pretrained_backbone
    cfg = _PRETRAINED_CFGS.get(model_name)
    if cfg is not None:
        cfg = cfg.with_overlay(pretrained_cfg_overlay)
    elif pretrained_cfg_overlay:
        raise ValueError(f"model {model_name!r} has no pretrained config to overlay")
    if pretrained and cfg is None:
        raise ValueError(f"model {model_name!r} has no pretrained config, so pretrained=True cannot load anything")
    if pretrained and not cfg.has_weights:
        raise ValueError(_how_to_get_weights(model_name, cfg))
    if cfg is None and num_classes is None:
        raise ValueError(f"model {model_name!r} has no pretrained config: pass num_classes")

    build_classes = cfg.num_classes if (pretrained or num_classes is None) else num_classes
    entry_kwargs = dict(kwargs)
    if cfg is not None:
        entry_kwargs["pretrained_cfg"] = cfg
    model = _MODELS[model_name](num_classes=build_classes, **entry_kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model entrypoint {model_name!r} returned {type(model).__name__}, expected an nn.Module")
    if cfg is not None:
        if cfg.label_names is not None and hasattr(model, "label_names") and len(cfg.label_names) == build_classes:
            model.label_names = list(cfg.label_names)
        data_config = getattr(model, "data_config", None)
        if isinstance(data_config, DataConfig) and (data_config.num_frames, data_config.crop_size) == (
                cfg.num_frames, cfg.crop_size):
            model.data_config = cfg.data_config()  # the weights' resize and normalisation
        model.pretrained_cfg = cfg
    model.architecture = model_name
    if pretrained:
        load_pretrained(model, cfg, name=model_name)
        apply_num_classes(model, num_classes, what=f"create_model({model_name!r})")
    return model

