"""Layer groups of a model for layer-wise learning-rate decay, in timm's ``group_matcher`` format.

timm's ``param_groups_layer_decay`` (``create_optimizer_v2(model, ..., layer_decay=0.75)``) asks the model's
``group_matcher()`` which parameters form a layer, orders the layers by the matcher's ordinals and scales the
learning rate of layer :math:`i` of :math:`L` by ``layer_decay`` :math:`^{L - 1 - i}`. A matcher is a dict of
regular expressions (group name -> a pattern, or a list of ``(pattern, suffix)``) or a callable
``name -> ordinal``; :func:`compile_matcher` evaluates both the way ``timm.models.group_with_matcher`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["compile_matcher", "Ordinal"]

#: Where a parameter sorts among the layer groups (smaller first); equal ordinals share a group.
Ordinal = tuple[float, ...]


def compile_matcher(matcher: dict[str, Any] | Callable[[str], Any]) -> Callable[[str], Ordinal]:
    """A function ``name -> ordinal`` for a timm-style ``matcher``.

    A dict's patterns are tried in order; a match gives ``(index of its group, *captured numbers, *suffix)``,
    no match ``(inf,)`` (timm puts unmatched parameters, usually the head, last). A callable's result becomes a
    tuple of floats.

    Raises:
        TypeError: ``matcher`` is neither a dict nor a callable.
    """
    if callable(matcher) and not isinstance(matcher, dict):
        def call(name: str) -> Ordinal:
            value = matcher(name)
            return tuple(float(v) for v in value) if isinstance(value, Iterable) else (float(value),)
        return call
    if not isinstance(matcher, dict):
        raise TypeError(f"a group matcher is a dict of patterns or a callable, got {type(matcher).__name__}")
    compiled: list[tuple[re.Pattern[str], int, tuple[Any, ...] | None]] = []
    for index, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        for pattern, suffix in (spec if isinstance(spec, (list, tuple)) else [(spec, None)]):
            compiled.append((re.compile(pattern), index, suffix))

    def match(name: str) -> Ordinal:
        for pattern, index, suffix in compiled:
            found = pattern.match(name)
            if found:
                numbers = [float(g) for g in found.groups() if g is not None]
                return (float(index), *numbers, *(float(s) for s in (suffix or ())))
        return (math.inf,)

    return match
