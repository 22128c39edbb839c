"""``taghead.explain``: which regions, at which moments, a video classifier used for a class.

``explain(model, video, target=None, *, method="gradcam")`` runs the backbone once, then explains the
head on the feature map it sees (``model.forward_features(video)``, token grid ``T' x H' x W'``):

- ``token_relevance [T', H', W']``: the method's relevance of each token (non-negative, its own scale);
- ``heatmap [T, H, W]``: the relevance upsampled trilinearly to the clip and divided by its maximum (in
  [0, 1]; all zeros when no token is relevant). Each token is placed at the centre of its receptive field,
  measured on the backbone (:mod:`taghead.explanation.grid`), not at the centre of its cell;
- ``frame_relevance [T]``: each frame's share of the heatmap (sums to 1; zeros with an all-zero heatmap);
- for ART heads, ``regions [num_queries, T', H', W']``: each region query's attention over the frame's
  tokens (sums to 1 per query and frame), and ``selected_classes [T', top_k]``: the class semantics each
  feature frame selected from the text bank (``None`` without a text bank).

The model runs in eval mode (each submodule's mode is restored afterwards) and nothing of it changes:
parameters, their ``.grad``, BatchNorm statistics and ART's text bank and prototypes stay as they were, and
so do the attributes the head declares in ``forward_records`` (ART's training cache and selected classes).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, SupportsIndex

import torch
from torch import nn

from ..adapters.base import check_video
from .grid import TokenCentres, measure_token_centres, upsample
from .methods import METHODS, ExplanationMethodError, resolve_method
from .regions import capture_regions, has_regions

__all__ = ["Explanation", "explain", "class_index"]


@dataclass
class Explanation:
    """What :func:`explain` found for one clip (tensors on the CPU, float32 unless noted).

    Attributes:
        target: the explained class index.
        target_name: its label (``None`` without label names).
        probability: the model's softmax probability of ``target``.
        probabilities: ``[num_classes]``, the softmax probabilities of every class.
        method: ``"gradcam"``, ``"hirescam"`` or ``"occlusion"``.
        token_relevance: ``[T', H', W']`` on the head's feature grid.
        heatmap: ``[T, H, W]`` in [0, 1], the relevance upsampled trilinearly to the clip.
        frame_relevance: ``[T]``, each frame's share of the heatmap (sums to 1).
        token_centres: ``(frames [T'], rows [H'], columns [W'])``: where each token's receptive field is
            centred in the clip (float64 input coordinates; :mod:`taghead.explanation.grid`).
        regions: ART only: ``[num_queries, T', H', W']``, each query's attention over its frame's tokens.
        selected_classes: ART with a text bank only: int64 ``[T', top_k]``, the class semantics each
            feature frame selected; ``selected_class_names`` their labels.
        label_names: the model's class names, when known.
    """

    target: int
    target_name: str | None
    probability: float
    probabilities: torch.Tensor = field(repr=False)
    method: str
    token_relevance: torch.Tensor = field(repr=False)
    heatmap: torch.Tensor = field(repr=False)
    frame_relevance: torch.Tensor = field(repr=False)
    token_centres: TokenCentres = field(repr=False)
    regions: torch.Tensor | None = field(default=None, repr=False)
    selected_classes: torch.Tensor | None = field(default=None, repr=False)
    label_names: list[str] | None = field(default=None, repr=False)

    @property
    def selected_class_names(self) -> list[list[str]] | None:
        """Labels of :attr:`selected_classes` per feature frame (indices as text without label names)."""
        if self.selected_classes is None:
            return None
        return [[self.class_name(int(i)) for i in row] for row in self.selected_classes]

    def class_name(self, index: int) -> str:
        """The label of class ``index`` (its number as text without label names).

        Args:
            index: a class index.
        """
        return self.label_names[index] if self.label_names else str(index)

    def top_classes(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as ``(index, name, probability)``, best first.

        Args:
            k: how many classes.
        """
        top = self.probabilities.topk(min(k, self.probabilities.numel()))
        return [(int(i), self.class_name(int(i)), float(p)) for p, i in zip(top.values, top.indices)]

    def region_heatmaps(self) -> torch.Tensor | None:
        """ART: the region maps upsampled trilinearly to the clip, ``[num_queries, T, H, W]``, each query divided by
        its maximum (in [0, 1]); ``None`` for other heads."""
        if self.regions is None:
            return None
        return _normalise(upsample(self.regions, self.token_centres, tuple(self.heatmap.shape)), dims=(1, 2, 3))


def _normalise(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    peak = x.amax(dim=dims, keepdim=True)
    return torch.where(peak > 0, x / peak.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def _check_model(model: Any) -> None:
    missing = [name for name in ("forward_features", "head") if not hasattr(model, name)]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(f"taghead.explain expects a taghead.VideoClassifier (a module with forward_features and a "
                        f"head, e.g. from taghead.wrap_backbone), got {type(model).__name__}")


def _as_batch(video: Any) -> tuple[torch.Tensor, bool]:
    """``(video [B, 3, T, H, W], was_single_clip)``; a wrong layout is a ``ValueError`` naming the fix."""
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"taghead.explain expects a video tensor, one clip [3, T, H, W] or a batch [B, 3, T, H, W], "
                        f"got {type(video).__name__}")
    if video.dim() == 4:
        if video.shape[0] != 3:
            hint = " It looks like [T, 3, H, W]; use video.permute(1, 0, 2, 3)." if video.shape[1] == 3 else ""
            hint = hint or (" It looks channels-last [T, H, W, 3]; use video.permute(3, 0, 1, 2)."
                            if video.shape[-1] == 3 else "")
            raise ValueError(f"taghead.explain expects one clip [3, T, H, W] with 3 channels at dim 0; got shape "
                             f"{tuple(video.shape)}.{hint}")
        video = video.unsqueeze(0)
        single = True
    elif video.dim() == 5:
        single = False
    else:
        raise ValueError(f"taghead.explain expects one clip [3, T, H, W] or a batch [B, 3, T, H, W]; got a "
                         f"{video.dim()}-D tensor of shape {tuple(video.shape)}")
    check_video(video, 3, "taghead.explain")
    if video.shape[0] < 1:
        raise ValueError("taghead.explain got an empty batch (B = 0)")
    return video, single


def class_index(model: nn.Module, target: SupportsIndex | str) -> int:
    """The class index of ``target`` (an index, or a name from ``model.label_names``) for ``model``; a ``ValueError``
    names the classes when it is unknown or out of range."""
    num_classes, names = _classes(model)
    return _target_index(target, num_classes, names)


def _classes(model: nn.Module) -> tuple[int, list[str] | None]:
    """``(num_classes, label names or None)`` of a model's head."""
    head = getattr(model, "head", None)
    num_classes = int(getattr(head, "num_classes", 0) or 0)
    if num_classes < 1:
        raise ExplanationMethodError(f"{type(head).__name__} has no classifier (num_classes=0): there is no class "
                                     "score to explain")
    names = getattr(model, "label_names", None)
    return num_classes, (list(names) if names and len(names) == num_classes else None)


def _target_index(target: Any, num_classes: int, names: list[str] | None) -> int:
    if isinstance(target, str):
        if names and target in names:
            return names.index(target)
        if not names:
            raise ValueError(f"unknown class {target!r}: the model has no label names; give a class index in "
                             f"[0, {num_classes})")
        import difflib

        close = difflib.get_close_matches(target, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        shown = names if len(names) <= 12 else names[:12] + ["..."]
        raise ValueError(f"unknown class {target!r}; the model's {num_classes} classes are {shown}.{hint}")
    if not _is_bool(target):
        try:  # int, NumPy and 0-d integer tensors (np.argmax gives np.int64); float and bool are refused
            target = operator.index(target)
        except TypeError:
            pass
    if isinstance(target, bool) or not isinstance(target, int):
        got = type(target).__name__ + (f" of dtype {target.dtype}" if hasattr(target, "dtype") else "")
        raise TypeError(f"target must be a class index (an integer), a class name (str) or None, got {got}")
    if not 0 <= target < num_classes:
        raise ValueError(f"class index {target} is out of range: the model has {num_classes} classes, [0, {num_classes})")
    return target


def _is_bool(value: Any) -> bool:
    """A Python, NumPy or torch boolean (which ``operator.index`` would take as 0 or 1)."""
    return isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool")


def _targets(target: Any, batch: int, num_classes: int, names: list[str] | None) -> list[int | None]:
    scalar = not isinstance(target, Sequence) and getattr(target, "ndim", 0) == 0  # int, np.int64, 0-d tensor
    if target is None or isinstance(target, str) or scalar:
        return [None if target is None else _target_index(target, num_classes, names)] * batch
    if isinstance(target, Sequence) or getattr(target, "ndim", None) == 1:  # a list, a 1-D tensor or NumPy array
        items = list(target)
        if len(items) != batch:
            raise ValueError(f"got {len(items)} targets for a batch of {batch} clips; give one per clip, one for "
                             "all, or None (the predicted classes)")
        return [None if t is None else _target_index(t, num_classes, names) for t in items]
    raise TypeError(f"target must be a class index, a class name, a sequence of them (one per clip) or None, got "
                    f"{type(target).__name__}")


def _snapshot_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


def explain(model: nn.Module, video: torch.Tensor,
            target: SupportsIndex | str | Sequence[SupportsIndex | str] | None = None, *,
            method: str = "gradcam") -> Explanation | list[Explanation]:
    """Explain ``model``'s score for ``target`` on ``video`` (see the module docstring).

    Args:
        model: a :class:`taghead.VideoClassifier` (any backbone and head).
        video: one clip ``[3, T, H, W]`` or a batch ``[B, 3, T, H, W]``, normalised as the model expects
            (``taghead.data.load_clip`` gives such a clip).
        target: class index (any integer: ``int``, ``np.int64`` from ``np.argmax``, a 0-d integer tensor; not
            bool or float) or name; ``None`` explains the predicted class. For a batch: one for every clip,
            or a sequence (list, 1-D tensor or array) with one per clip.
        method: ``"gradcam"`` (the class logit's gradients averaged over the tokens weight the channels),
            ``"hirescam"`` (each token's own gradient times its features; faithful to heads that read
            positions, like TAG-Head) or ``"occlusion"`` (no gradients: the drop of the class log-probability
            when 2 x 2 patches of tokens are replaced by the clip's mean token), or ``"auto"``: the one that
            suits the head (:func:`~taghead.explanation.methods.default_method`; the result's ``method`` says
            which). See :mod:`taghead.explanation.methods`.

    The clip is moved to the model's device and cast to the dtype of its first floating-point parameter (a
    bfloat16 or float16 model explains a float32 clip from ``load_clip``), as the model's forward needs.

    Returns:
        an :class:`Explanation` for one clip, a list of them (in batch order) for a batch.
    """
    _check_model(model)
    method = resolve_method(method, model)
    batch, single = _as_batch(video)
    head = model.head
    num_classes, names = _classes(model)
    targets = _targets(target, batch.shape[0], num_classes, names)
    relevance_fn = METHODS[method]

    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None:  # the model's device and floating dtype (documented above)
        batch = batch.to(param.device, param.dtype)
    modes = _snapshot_modes(model)
    # What the head's forward overwrites (ART's training cache, its selected classes): put back afterwards.
    records = {name: getattr(head, name) for name in getattr(head, "forward_records", ()) if hasattr(head, name)}
    model.eval()
    try:
        with torch.no_grad():
            features = model.forward_features(batch)
        grid = tuple(int(s) for s in features.shape[2:])
        centres = measure_token_centres(model, tuple(batch.shape), grid, device=batch.device, dtype=batch.dtype)
        with torch.no_grad():
            regions_on = has_regions(head)
            with capture_regions(head, grid) if regions_on else nullcontext({}) as captured:
                logits = head(features)
            selected = getattr(head, "selected_classes", None) if regions_on else None
        probs = logits.float().softmax(1).cpu()
        chosen = torch.tensor([int(probs[i].argmax()) if t is None else t for i, t in enumerate(targets)],
                              device=features.device)
        relevance = relevance_fn(head, features, chosen).detach().float().cpu()  # [B, T', H', W']
    finally:
        for module, mode in modes:
            module.training = mode
        for name, value in records.items():
            setattr(head, name, value)

    size = tuple(int(s) for s in batch.shape[2:])
    heatmaps = _normalise(upsample(relevance, centres, size), dims=(1, 2, 3))
    totals = heatmaps.sum(dim=(1, 2, 3), keepdim=True)
    frame_share = torch.where(totals > 0, heatmaps / totals.clamp_min(1e-30), torch.zeros_like(heatmaps)).sum((2, 3))
    regions = captured.get("regions")
    out = []
    for i, cls in enumerate(chosen.tolist()):
        out.append(Explanation(
            target=cls, target_name=names[cls] if names else None, probability=float(probs[i, cls]),
            probabilities=probs[i], method=method, token_relevance=relevance[i], heatmap=heatmaps[i],
            frame_relevance=frame_share[i], token_centres=centres,
            regions=None if regions is None else regions[i],
            selected_classes=None if selected is None else selected[i].detach().cpu().long(),
            label_names=names,
        ))
    return out[0] if single else out
