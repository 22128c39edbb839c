"""Registry of heads by name, so adapters and the CLI can build ``"tag"``, ``"meanpool"``, ``"art"``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_head", "create_head", "list_heads", "get_head_class", "registered_head_name"]

_HEADS: dict[str, type[nn.Module]] = {}


def register_head(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a head buildable by name as ``Head(in_channels, t, h, w, num_classes=...)``.

    Args:
        name: the registry name (``head=name`` in :func:`~taghead.wrap_backbone`).
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"a head named {name!r} is already registered ({_HEADS[name].__qualname__})")
        _HEADS[name] = cls
        return cls

    return decorator


def list_heads() -> list[str]:
    """Names of the registered heads, sorted."""
    return sorted(_HEADS)


def registered_head_name(head: str | type | nn.Module | Callable[..., nn.Module]) -> str | None:
    """The registry name of a head given as a name, a class or a module (``None`` when the registry cannot
    rebuild it: a custom factory, or a class that is not registered)."""
    if isinstance(head, str):
        return head
    cls = type(head) if isinstance(head, nn.Module) else head
    return next((name for name, registered in _HEADS.items() if registered is cls), None)


def get_head_class(name: str) -> type[nn.Module]:
    """The head class registered as ``name`` (an unknown name suggests the closest ones).

    Args:
        name: the registry name.
    """
    if name not in _HEADS:
        close = difflib.get_close_matches(name, list(_HEADS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown head {name!r}; registered heads: {list_heads()}.{hint}")
    return _HEADS[name]


def create_head(
    head: str | Callable[..., nn.Module], in_channels: int, t: int, h: int, w: int, *, num_classes: int,
    **kwargs: Any,
) -> nn.Module:
    """Build a head from a registered name or from a factory with the same signature as the heads.

    Args:
        head: a registered name, or a factory with the heads' signature.
        in_channels: channels ``C`` of the feature map.
        t: temporal size of the map.
        h: height of the map.
        w: width of the map.
        num_classes: classifier outputs.
        **kwargs: passed to the head.
    """
    factory = get_head_class(head) if isinstance(head, str) else head
    if not callable(factory):
        raise TypeError(f"head must be a registered name or a callable returning an nn.Module, got {head!r}")
    module = factory(in_channels, t, h, w, num_classes=num_classes, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"head factory {factory!r} returned {type(module).__name__}, expected an nn.Module")
    return module
