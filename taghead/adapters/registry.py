"""The adapter registry: which :class:`FeatureExtractor` handles which model class."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import FeatureExtractor

__all__ = ["register_adapter", "list_adapters", "get_adapter", "find_adapter", "adapt", "supported_families"]

_ADAPTERS: dict[str, type[FeatureExtractor]] = {}
#: ``(model class or "module:QualName", adapter name)`` in registration order.
_BY_TYPE: list[tuple[type | str, str]] = []


def _type_key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_adapter(
    name: str, *model_types: type | str, family: str | None = None
) -> Callable[[type[FeatureExtractor]], type[FeatureExtractor]]:
    """Class decorator: make a :class:`FeatureExtractor` subclass the adapter for ``model_types``.

    ``model_types`` are classes or ``"package.module:ClassName"`` strings (matched without importing
    the package). Lookup walks the model's class hierarchy from the most specific class up; among
    adapters registered for the same class the most recently registered one is tried first, and its
    ``matches(model)`` decides. An adapter registered without types is only used by name
    (``adapter=`` / specs), like the generic ``feature_layer`` adapter. ::

        @taghead.register_adapter("my_net", MyNet, family="MyNet (my_package)")
        class MyNetFeatures(taghead.adapters.FeatureExtractor):
            def __init__(self, model):
                super().__init__(model)
                model.classifier = torch.nn.Identity()   # drop what the head replaces
            def extract(self, video):
                return self.model.body(video)             # [B, C, T, H, W]

    Args:
        name: the registry name (``adapter=name`` in :func:`~taghead.wrap_backbone` and in specs).
        *model_types: the model classes (or ``"module:Class"`` strings) the adapter handles.
        family: the family and its models in words, listed in "unsupported model" errors.
    """

    def decorator(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
            raise TypeError(f"register_adapter decorates FeatureExtractor subclasses, got {cls!r}")
        if name in _ADAPTERS and _ADAPTERS[name] is not cls:
            raise ValueError(f"an adapter named {name!r} is already registered ({_ADAPTERS[name].__qualname__})")
        for t in model_types:
            if not isinstance(t, (type, str)):
                raise TypeError(f"model types are classes or 'module:ClassName' strings, got {t!r}")
        cls.adapter_name = name
        if family is not None:
            cls.family = family
        _ADAPTERS[name] = cls
        _BY_TYPE.extend((t, name) for t in model_types if (t, name) not in _BY_TYPE)
        return cls

    return decorator


def list_adapters() -> list[str]:
    """Names of the registered adapters, sorted."""
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> type[FeatureExtractor]:
    """The adapter class registered as ``name``.

    Args:
        name: the registry name.
    """
    if name not in _ADAPTERS:
        close = difflib.get_close_matches(name, list(_ADAPTERS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown adapter {name!r}; registered adapters: {list_adapters()}.{hint}")
    return _ADAPTERS[name]


def _fits(name: str, model: nn.Module) -> bool:
    """Whether adapter ``name`` applies to ``model``: one of its model classes (if any) and ``matches``."""
    types = [key for key, n in _BY_TYPE if n == name]
    mro_keys = {k for cls in type(model).__mro__ for k in (cls, _type_key(cls))}
    return (not types or any(key in mro_keys for key in types)) and _ADAPTERS[name].matches(model)


def find_adapter(model: nn.Module) -> type[FeatureExtractor] | None:
    """The adapter for ``model``: most specific class first, ``None`` when no adapter fits.

    Args:
        model: the video model.
    """
    for cls in type(model).__mro__:
        keys = (cls, _type_key(cls))
        for key, name in reversed(_BY_TYPE):
            if key in keys and _ADAPTERS[name].matches(model):
                return _ADAPTERS[name]
    return None


def supported_families() -> list[str]:
    """One line per registered adapter: its family and models."""
    return [f"{name}: {_ADAPTERS[name].family or _ADAPTERS[name].__qualname__}" for name in list_adapters()]


def _unsupported_message(model: nn.Module) -> str:
    cls = type(model)
    children = [n for n, _ in model.named_children()]
    families = "\n".join(f"  - {line}" for line in supported_families())
    return (
        f"taghead has no adapter for {cls.__qualname__} (module {cls.__module__}). Supported families:\n"
        f"{families}\n"
        "For any other model, name the submodule whose output is the last spatio-temporal feature map "
        "[B, C, T, H, W] (before global pooling), e.g.\n"
        '  taghead.wrap_backbone(model, num_classes, feature_layer="layer4")\n'
        "or pass a callable: feature_layer=lambda model, video: model.features(video); or register an "
        f"adapter with taghead.register_adapter. Top-level submodules of {cls.__qualname__}: {children}."
    )


def adapt(
    model: nn.Module | FeatureExtractor,
    *,
    adapter: str | None = None,
    feature_layer: str | Callable[..., Any] | None = None,
    **adapter_kwargs: Any,
) -> FeatureExtractor:
    """Turn ``model`` into a :class:`FeatureExtractor` (the model is modified in place).

    Args:
        model: a video model, or an extractor (returned unchanged).
        adapter: force the adapter by name (as recorded in a model spec); default: look it up by class.
        feature_layer: use the generic adapter: a submodule name or a callable
            ``(model, video) -> [B, C, T, H, W]``.
        adapter_kwargs: passed to the adapter's constructor.
    """
    if isinstance(model, FeatureExtractor):
        if adapter not in (None, model.adapter_name) or feature_layer is not None or adapter_kwargs:
            raise ValueError(f"got a ready {type(model).__name__}; adapter arguments cannot be applied to it")
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module (a video backbone), got {type(model).__name__}")
    if feature_layer is not None:
        if adapter not in (None, "generic"):
            raise ValueError(f"feature_layer selects the 'generic' adapter; it cannot be combined with adapter={adapter!r}")
        return get_adapter("generic")(model, feature_layer=feature_layer, **adapter_kwargs)
    if adapter is not None:
        cls = get_adapter(adapter)
        if not _fits(adapter, model):
            raise ValueError(f"adapter {adapter!r} ({cls.family}) does not fit a {type(model).__qualname__}")
        return cls(model, **adapter_kwargs)
    cls = find_adapter(model)
    if cls is None:
        raise TypeError(_unsupported_message(model))
    return cls(model, **adapter_kwargs)
