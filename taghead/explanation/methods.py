r"""Relevance of each feature-map token for one class: Grad-CAM and token occlusion.

Both work on the feature map the head sees, ``features [B, C, T', H', W']`` (``model.forward_features``),
and return a non-negative relevance ``[B, T', H', W']`` on the head's token grid.

- **Grad-CAM** (Selvaraju et al., 2017) in space and time: with the class score :math:`y` (the
  target's logit) and the map :math:`A`, the channel weights are the gradients averaged over all
  tokens, :math:`\alpha_c = \operatorname{mean}_{t,h,w} \partial y / \partial A_{c,t,h,w}`, and the
  relevance is :math:`\operatorname{ReLU}(\sum_c \alpha_c A_{c,t,h,w})`. Only the feature map
  receives gradients (``torch.autograd.grad``), so no parameter's ``.grad`` changes; it runs under
  an outer ``torch.no_grad()`` too (gradients are switched on for the head only).
- **HiResCAM** (Draelos and Carin, 2020): the same without averaging the gradients over the tokens,
  :math:`\operatorname{ReLU}(\sum_c \partial y / \partial A_{c,t,h,w} \, A_{c,t,h,w})`. Grad-CAM's average
  assumes a head that treats every position alike (global pooling then a linear layer, where both
  methods agree); TAG-Head and ART read *where and when* through positional embeddings and attention,
  and the average throws exactly that away. HiResCAM keeps each token's own gradient.
- **Occlusion** (gradient-free, any head): a 2 x 2 patch of tokens of one frame (:data:`OCCLUSION_WINDOW`),
  slid over the whole grid, is replaced by the clip's mean token and the head runs again; the relevance
  of a token is the mean drop of the target's log-probability over the placements that cover it,
  :math:`\operatorname{ReLU}(\operatorname{mean}_{P \ni (t,h,w)} [\log p_y(A) - \log p_y(A \text{ with } P
  \text{ occluded})])`. Costs one head forward per placement (about one per token, batched), no backbone
  forward.

``method="auto"`` (:func:`default_method`) picks by head what measured best on the synthetic benchmark, where
the flashes that decide the class are known (``benchmarks/RESULTS.md``, "Do explanations point at the
flashes?"): HiResCAM for TAG-Head (6.8x as much heat on the flashes as elsewhere, against 2.4x for
Grad-CAM; occlusion's 7.4x costs one head forward per patch) and for heads taghead does not know (it keeps
each token's own gradient and equals Grad-CAM for heads that treat positions alike); occlusion for ART (2.1x,
against 1.7x for both gradient methods); Grad-CAM for mean pooling (exactly HiResCAM there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["METHODS", "AUTO", "OCCLUSION_WINDOW", "ExplanationMethodError", "check_method", "default_method",
           "resolve_method", "gradcam_relevance", "hirescam_relevance", "occlusion_relevance"]

#: Elements of the feature-map batch one occlusion chunk may hold (about 256 MB in float32).
_OCCLUSION_CHUNK_ELEMENTS = 1 << 26


class ExplanationMethodError(ValueError):
    """The chosen method cannot explain this model (unknown method, or a head it cannot work with)."""


def _class_gradient(head: nn.Module, features: torch.Tensor, target: torch.Tensor, method: str) -> torch.Tensor:
    """``d logit[target] / d features`` for every clip, ``[B, C, T', H', W']`` (only the features get gradients)."""
    with torch.enable_grad():
        fmap = features.detach().requires_grad_(True)
        score = head(fmap).gather(1, target.view(-1, 1)).sum()
        if not score.requires_grad:
            raise ExplanationMethodError(
                f"method {method!r} needs the class score to depend differentiably on the feature map, but "
                f"{type(head).__name__} returned logits without a gradient path to it; use method='occlusion'")
        (grad,) = torch.autograd.grad(score, fmap, allow_unused=True)
    if grad is None:
        raise ExplanationMethodError(f"method {method!r}: the logits of {type(head).__name__} do not depend on the "
                                     "feature map; use method='occlusion'")
    return grad.float()


def gradcam_relevance(head: nn.Module, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``head`` on ``features [B, C, T', H', W']`` for the classes ``target [B]``: ``[B, T', H', W']``."""
    weights = _class_gradient(head, features, target, "gradcam").mean(dim=(2, 3, 4), keepdim=True)  # [B, C, 1, 1, 1]
    return (weights * features.float()).sum(1).clamp_min(0)


def hirescam_relevance(head: nn.Module, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HiResCAM of ``head`` on ``features [B, C, T', H', W']`` for the classes ``target [B]``: ``[B, T', H', W']``."""
    grad = _class_gradient(head, features, target, "hirescam")
    return (grad * features.float()).sum(1).clamp_min(0)


#: Tokens occluded together (frames, rows, columns): a 2 x 2 patch of one frame, slid over the grid. A backbone's
#: receptive fields overlap, so an event shows in neighbouring tokens too; hiding one token at a time lets
#: its neighbours stand in for it.
OCCLUSION_WINDOW = (1, 2, 2)


@torch.no_grad()
def occlusion_relevance(head: nn.Module, features: torch.Tensor, target: torch.Tensor,
                        window: tuple[int, int, int] = OCCLUSION_WINDOW) -> torch.Tensor:
    """Occlusion of ``head`` on ``features [B, C, T', H', W']`` for the classes ``target [B]``: ``[B, T', H', W']``.

    Every placement of a ``window`` of tokens (clipped to the grid; stride 1) is replaced by the clip's mean
    token in turn; a token's relevance is the mean drop of the target's log-probability over the placements
    that cover it, clipped at 0.
    """
    b, c, t, h, w = features.shape
    wt, wh, ww = (max(1, min(k, n)) for k, n in zip(window, (t, h, w)))
    grid = (t - wt + 1, h - wh + 1, w - ww + 1)  # window placements along each axis
    places = [(i, j, k) for i in range(grid[0]) for j in range(grid[1]) for k in range(grid[2])]
    base = head(features).float().log_softmax(1).gather(1, target.view(-1, 1)).squeeze(1)  # [B]
    baseline = features.mean(dim=(2, 3, 4), keepdim=True)  # [B, C, 1, 1, 1]: the clip's mean token
    chunk = max(1, min(len(places), _OCCLUSION_CHUNK_ELEMENTS // max(1, features[0].numel())))
    drops = features.new_zeros(b, len(places), dtype=torch.float32)
    for n in range(b):
        for start in range(0, len(places), chunk):
            part = places[start:start + chunk]
            occluded = features[n:n + 1].repeat(len(part), 1, 1, 1, 1)
            for row, (i, j, k) in enumerate(part):
                occluded[row, :, i:i + wt, j:j + wh, k:k + ww] = baseline[n]
            logp = head(occluded).float().log_softmax(1)[:, target[n]]
            drops[n, start:start + len(part)] = base[n] - logp
    # spread each placement's drop over the tokens it hid, and divide by how many placements hid each token
    ones = drops.new_ones(1, 1, wt, wh, ww)
    total = F.conv_transpose3d(drops.view(b, 1, *grid), ones)
    count = F.conv_transpose3d(drops.new_ones(1, 1, *grid), ones)
    return (total / count).clamp_min(0).squeeze(1)


METHODS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": gradcam_relevance,
    "hirescam": hirescam_relevance,
    "occlusion": occlusion_relevance,
}
"""``method name -> relevance function(head, features, target)``."""


#: The method name that lets :func:`default_method` choose by head.
AUTO = "auto"


def check_method(method: Any, allow_auto: bool = False) -> str:
    """``method`` when it names one of :data:`METHODS` (or is :data:`AUTO` where ``allow_auto``); an
    :class:`ExplanationMethodError` lists them otherwise."""
    if not isinstance(method, str) or not (method in METHODS or (allow_auto and method == AUTO)):
        choices = sorted(METHODS) + ([AUTO] if allow_auto else [])
        raise ExplanationMethodError(f"unknown explanation method {method!r}; choose one of {choices}")
    return method


def default_method(model: nn.Module) -> str:
    """The method that explains ``model`` (a classifier, or a head) best, by its head (see the module docstring):
    ``"occlusion"`` for ART, ``"gradcam"`` for mean pooling, ``"hirescam"`` for TAG-Head and any other head."""
    from ..heads.art import ARTHead
    from ..heads.meanpool import MeanPoolHead

    head = getattr(model, "head", model)
    if isinstance(head, ARTHead):
        return "occlusion"
    if isinstance(head, MeanPoolHead):
        return "gradcam"
    return "hirescam"


def resolve_method(method: Any, model: nn.Module) -> str:
    """``method`` checked (:func:`check_method`), with :data:`AUTO` replaced by :func:`default_method` of ``model``."""
    method = check_method(method, allow_auto=True)
    return default_method(model) if method == AUTO else method
