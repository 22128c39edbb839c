"""The generic adapter: any ``nn.Module``, cut at a named submodule or by a callable."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .base import FeatureExtractor, FeatureMapError
from .registry import register_adapter

__all__ = ["LayerFeatures"]


class _FeaturesReady(BaseException):
    """Raised by the feature-layer hook to stop the forward pass once the map is captured.

    A ``BaseException`` so that a model's own ``except Exception`` cannot swallow it.
    """


def _callable_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


@contextmanager
def _record_calls(root: nn.Module) -> Iterator[set[int]]:
    """Collect ``id``s of the submodules of ``root`` whose ``forward`` runs inside the block."""
    called: set[int] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args: called.add(id(mod))) for m in root.modules()]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


@register_adapter(
    "generic",
    family="any nn.Module: feature_layer='<submodule name>' or feature_layer=callable(model, video)",
)
class LayerFeatures(FeatureExtractor):
    """The output of one submodule (``feature_layer="layer4"``) or of a callable ``fn(model, video)``.

    With a submodule name, the model's own ``forward`` runs until that submodule returns; a forward
    hook captures its output and stops the pass there, so pooling and classifier never run (if the
    submodule runs more than once, its first output is taken). The output must be a 5-D map
    ``[B, C, T, H, W]``.

    With ``prune=True`` (default) the first shape probe records which submodules run; those that
    hold weights but never run (the classifier, say) are replaced by ``nn.Identity`` so that their
    weights are neither stored nor handed to the optimizer. If the model no longer runs after that,
    or its output changes shape, the submodules are put back.

    Args:
        model: the model to adapt, modified in place (kept as ``self.model``).
        feature_layer: the name of the submodule whose output is the feature map, or a callable ``fn(model,
            video)`` that returns it.
        prune: replace the weighted submodules that never run before ``feature_layer`` by ``nn.Identity``.
    """

    def __init__(self, model: nn.Module, feature_layer: str | Callable[[nn.Module, Any], torch.Tensor],
                 prune: bool = True) -> None:
        super().__init__(model)
        if isinstance(feature_layer, str):
            names = [n for n, _ in model.named_modules() if n]
            if feature_layer not in names:
                close = difflib.get_close_matches(feature_layer, names, n=5)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(
                    f"{type(model).__qualname__} has no submodule {feature_layer!r}.{hint} "
                    f"Top-level submodules: {[n for n, _ in model.named_children()]}."
                )
        elif not callable(feature_layer):
            raise TypeError(f"feature_layer must be a submodule name or a callable (model, video) -> feature map, "
                            f"got {type(feature_layer).__name__}")
        self.feature_layer = feature_layer
        self.prune = bool(prune)
        self._pruned = False
        self.pruned_modules: list[str] = []

    def get_config(self) -> dict[str, Any]:
        if isinstance(self.feature_layer, str):
            return {"feature_layer": self.feature_layer, "prune": self.prune}
        # A callable cannot be stored in JSON; its name tells the reader what to pass back.
        return {"feature_layer": None, "prune": self.prune, "callable": _callable_name(self.feature_layer)}

    def describe(self) -> str:
        layer = self.feature_layer if isinstance(self.feature_layer, str) else _callable_name(self.feature_layer)
        return f"feature_layer {layer!r} of {type(self.model).__qualname__}"

    def extract(self, video: Any) -> torch.Tensor:
        if not isinstance(self.feature_layer, str):
            return self.feature_layer(self.model, video)
        layer = self.model.get_submodule(self.feature_layer)
        captured: list[Any] = []

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured.append(output)
            raise _FeaturesReady

        handle = layer.register_forward_hook(hook)
        try:
            self.model(video)
        except _FeaturesReady:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"feature_layer {self.feature_layer!r} did not run during the forward pass of "
                               f"{type(self.model).__qualname__}")
        out = captured[0]
        if not isinstance(out, torch.Tensor):
            raise FeatureMapError(f"feature_layer {self.feature_layer!r} returned a {type(out).__name__}, not a tensor; "
                            "choose a submodule that returns the feature map, or pass a callable feature_layer")
        return out

    def feature_shape(self, num_frames: int, crop_size: int) -> tuple[int, int, int, int]:
        if not self.prune or self._pruned:
            return super().feature_shape(num_frames, crop_size)
        with _record_calls(self.model) as called:
            shape = super().feature_shape(num_frames, crop_size)
        self._pruned = True
        removed = self._prune_unused(called)
        if removed:
            self._shapes.clear()
            try:
                ok = super().feature_shape(num_frames, crop_size) == shape
            except ValueError:
                ok = False
            if not ok:  # the forward needs a module it did not call (e.g. reads its weights): undo
                for parent, name, module in removed:
                    setattr(parent, name, module)
                removed = []
                self._shapes = {(num_frames, crop_size): shape}
        self.pruned_modules = [f"{self._path(parent)}{name}" for parent, name, _ in removed]
        return shape

    def _path(self, parent: nn.Module) -> str:
        for name, module in self.model.named_modules():
            if module is parent:
                return f"{name}." if name else ""
        return ""

    def _prune_unused(self, called: set[int]) -> list[tuple[nn.Module, str, nn.Module]]:
        """Replace the outermost never-called submodules holding weights by ``nn.Identity``."""
        used: set[int] = set()

        def mark(module: nn.Module) -> bool:
            hit = id(module) in called
            for child in module.children():
                hit = mark(child) or hit
            if hit:
                used.add(id(module))
            return hit

        mark(self.model)
        removed: list[tuple[nn.Module, str, nn.Module]] = []

        def visit(module: nn.Module) -> None:
            for name, child in list(module.named_children()):
                if id(child) in used:
                    visit(child)
                elif any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                    removed.append((module, name, child))
                    setattr(module, name, nn.Identity())

        visit(self.model)
        return removed
