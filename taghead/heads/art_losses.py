r"""ART's training objectives: the multi-level tracklet contrastive (MTC) terms and the text-bank consistency terms.

Notation: ``responses`` ``[B, T, N, D]`` holds the response of region query ``n`` in frame ``t``;
:math:`\hat r_{t,n} = r_{t,n} / \lVert r_{t,n} \rVert` and :math:`\cos(a, b) = \hat a \cdot \hat b`.
Tracklet ``n`` is the sequence :math:`(r_{1,n}, \dots, r_{T,n})`. Every function returns a scalar
float32 tensor (averaged over the batch), unweighted; :class:`taghead.ARTHead` applies the weights.

The source paper's equations are not available to us, only their description; the forms below are
our reading of it and are documented as such:

- spatial level, "repel the responses of different queries inside one frame (cosine similarity)":
  :math:`L_s = \operatorname{mean}_{t,\, n \ne m} \max(0, \cos(r_{t,n}, r_{t,m}))`;
- temporal level, "attract a query's responses in adjacent frames, with correlation degree
  :math:`\gamma`": :math:`L_t = \operatorname{mean}_{t,n} (\cos(r_{t,n}, r_{t+1,n}) - \gamma)^2`,
  minimal exactly when adjacent responses have correlation :math:`\gamma` (0.6 in the paper);
- tracklet level, "repel different tracklets": with :math:`\bar r_n = \operatorname{mean}_t \hat r_{t,n}`,
  :math:`L_k = \operatorname{mean}_{n \ne m} \max(0, \cos(\bar r_n, \bar r_m))`;
- video consistency, "winner-take-all over a class's templates": class scores
  :math:`s_k = \max_j \cos(v, a_{k,j}) / \tau`, :math:`L_v = \mathrm{CE}(s, y)`;
- prototype consistency, "class prototypes vs. text": with class text semantics
  :math:`\bar a_k = \widehat{\operatorname{mean}_j \hat a_{k,j}}` and prototypes :math:`p_k`,
  :math:`M_{kl} = \cos(p_k, \bar a_l) / \tau`, :math:`L_p = \operatorname{mean}_k \mathrm{CE}(M_{k,:}, k)` over the
  classes that have a prototype.

Exactly coinciding responses are a stationary point of every cosine-based repulsion (the gradient of
:math:`\cos` vanishes at its maximum), so symmetric inputs stay symmetric; the head's queries start
distinct (random prompts) and dropout breaks ties.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "spatial_contrast",
    "temporal_contrast",
    "tracklet_contrast",
    "video_consistency",
    "prototype_consistency",
    "winner_take_all_scores",
    "class_semantics",
    "check_target",
]


_F = TypeVar("_F", bound=Callable[..., torch.Tensor])


def _float32(fn: _F) -> _F:
    """Run ``fn`` in float32 with autocast off on the device of its first argument (losses stay accurate under AMP)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = args[0].device.type if args and isinstance(args[0], torch.Tensor) else "cpu"
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _check_responses(responses: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(responses, torch.Tensor) or responses.dim() != 4 or not responses.is_floating_point():
        got = tuple(responses.shape) if isinstance(responses, torch.Tensor) else type(responses).__name__
        raise ValueError(f"{what} expects floating-point responses [B, T, N, D], got {got}")
    return responses.float()


def _check_real(name: str, value: Any, what: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a float: a finite real number (not bool) in ``[lo, hi]`` (``(lo, ...`` when ``lo_open``)."""
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if math.isinf(hi) else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: {name} must be a finite real number in {interval}, got {type(value).__name__}")
    if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
        raise ValueError(f"{what}: {name} must be a finite real number in {interval}, got {value!r}")
    return float(value)


def _check_temperature(temperature: Any, what: str) -> float:
    """A temperature divides the scores: a finite number > 0."""
    return _check_real("temperature", temperature, what, 0.0, math.inf, lo_open=True)


def _mean_offdiag_positive_cos(x: torch.Tensor) -> torch.Tensor:
    """``x [..., N, D]``: mean over ``n != m`` of ``max(0, cos(x_n, x_m))``."""
    xn = F.normalize(x, dim=-1)
    sim = xn @ xn.transpose(-1, -2)
    n = x.shape[-2]
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    return sim.clamp_min(0)[..., off].mean()


@_float32
def spatial_contrast(responses: torch.Tensor) -> torch.Tensor:
    """Spatial level: mean positive cosine similarity between different queries' responses in the same frame.

    Args:
        responses: ``[B, T, N, D]``, query ``n``'s response in frame ``t``.
    """
    r = _check_responses(responses, "spatial_contrast")
    if r.shape[2] < 2:
        raise ValueError(f"spatial_contrast needs at least 2 queries per frame, got N={r.shape[2]}")
    return _mean_offdiag_positive_cos(r)


@_float32
def temporal_contrast(responses: torch.Tensor, gamma: float = 0.6) -> torch.Tensor:
    """Temporal level: mean squared gap between each query's adjacent-frame correlation and ``gamma``.

    Args:
        responses: ``[B, T, N, D]``, query ``n``'s response in frame ``t``.
        gamma: the target cosine, in [-1, 1].
    """
    gamma = _check_real("gamma", gamma, "temporal_contrast", -1.0, 1.0)
    r = _check_responses(responses, "temporal_contrast")
    if r.shape[1] < 2:
        raise ValueError(f"temporal_contrast needs at least 2 frames, got T={r.shape[1]}")
    rn = F.normalize(r, dim=-1)
    corr = (rn[:, 1:] * rn[:, :-1]).sum(-1)  # [B, T-1, N]
    return (corr - gamma).pow(2).mean()


@_float32
def tracklet_contrast(responses: torch.Tensor) -> torch.Tensor:
    """Tracklet level: mean positive cosine similarity between different tracklets (time-averaged unit responses).

    Args:
        responses: ``[B, T, N, D]``, query ``n``'s response in frame ``t``.
    """
    r = _check_responses(responses, "tracklet_contrast")
    if r.shape[2] < 2:
        raise ValueError(f"tracklet_contrast needs at least 2 tracklets, got N={r.shape[2]}")
    return _mean_offdiag_positive_cos(F.normalize(r, dim=-1).mean(1))


@_float32
def class_semantics(bank: torch.Tensor) -> torch.Tensor:
    """One unit vector per class: ``[K, M, D] -> [K, D]``, the normalised mean of the normalised templates.

    Args:
        bank: the text bank ``[K, M, D]``.
    """
    if bank.dim() != 3:
        raise ValueError(f"a text bank is [num_classes, num_templates, D], got shape {tuple(bank.shape)}")
    return F.normalize(F.normalize(bank.float(), dim=-1).mean(1), dim=-1)


@_float32
def winner_take_all_scores(video: torch.Tensor, bank: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[B, D]`` video embeddings and a ``[K, M, D]`` bank -> ``[B, K]``: ``max_j cos(v, a_kj) / temperature``
    (``temperature`` a finite number > 0).

    Args:
        video: video embeddings ``[B, D]``.
        bank: the text bank ``[K, M, D]``.
        temperature: a finite number > 0.
    """
    temperature = _check_temperature(temperature, "winner_take_all_scores")
    sim = torch.einsum("bd,kmd->bkm", F.normalize(video.float(), dim=-1), F.normalize(bank.float(), dim=-1))
    return sim.amax(-1) / temperature


def check_target(target: torch.Tensor, batch: int, num_classes: int, what: str) -> None:
    """Check that ``target`` holds class indices for a batch: an int64 tensor ``[batch]`` with values in
    ``[0, num_classes)``; ``what`` names the caller in the ``ValueError``.

    Args:
        target: the class indices.
        batch: the batch size.
        num_classes: the class count.
        what: the caller, named in the error.
    """
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64 or target.shape != (batch,):
        got = f"{getattr(target, 'dtype', type(target).__name__)} {tuple(getattr(target, 'shape', ()))}"
        raise ValueError(f"{what} expects class indices, an int64 tensor [B={batch}], got {got}")
    if batch and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"{what}: targets must lie in [0, {num_classes}), got [{int(target.min())}, {int(target.max())}]")


@_float32
def video_consistency(video: torch.Tensor, bank: torch.Tensor, target: torch.Tensor,
                      temperature: float = 0.07) -> torch.Tensor:
    """Cross-entropy of the winner-take-all text scores (:func:`winner_take_all_scores`) against the labels.

    Args:
        video: video embeddings ``[B, D]``.
        bank: the text bank ``[K, M, D]``.
        target: the int64 class indices ``[B]``.
        temperature: the softmax temperature, a finite number > 0.
    """
    temperature = _check_temperature(temperature, "video_consistency")
    check_target(target, video.shape[0], bank.shape[0], "video_consistency")
    return F.cross_entropy(winner_take_all_scores(video, bank, temperature), target)


@_float32
def prototype_consistency(prototypes: torch.Tensor, bank: torch.Tensor, valid: torch.Tensor | None = None,
                          temperature: float = 0.07) -> torch.Tensor:
    """Each class prototype ``[K, D]`` must be closest to its own class's text semantics among all classes.

    Args:
        prototypes: the class prototypes ``[K, D]``.
        bank: the text bank ``[K, M, D]``.
        valid: bool ``[K]``, the classes that have a prototype yet (``None``: all).
        temperature: the softmax temperature, a finite number > 0.
    """
    temperature = _check_temperature(temperature, "prototype_consistency")
    if prototypes.dim() != 2 or prototypes.shape[0] != bank.shape[0] or prototypes.shape[1] != bank.shape[-1]:
        raise ValueError(f"prototypes must be [K, D] = [{bank.shape[0]}, {bank.shape[-1]}] for this bank, "
                         f"got {tuple(prototypes.shape)}")
    if valid is not None:
        if not isinstance(valid, torch.Tensor):
            raise TypeError(f"prototype_consistency: valid must be a bool tensor [K={bank.shape[0]}] or None, got "
                            f"{type(valid).__name__}")
        if valid.dtype != torch.bool or tuple(valid.shape) != (bank.shape[0],):
            raise ValueError(f"prototype_consistency: valid must be a bool tensor [K={bank.shape[0]}] (one flag per "
                             f"class), got {valid.dtype} {tuple(valid.shape)}")
    logits = F.normalize(prototypes.float(), dim=-1) @ class_semantics(bank).T / temperature
    labels = torch.arange(bank.shape[0], device=logits.device)
    if valid is not None:
        if not valid.any():
            raise ValueError("prototype_consistency: no class has a prototype yet")
        logits, labels = logits[valid], labels[valid]
    return F.cross_entropy(logits, labels)
