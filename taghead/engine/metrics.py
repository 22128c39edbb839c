r"""Classification metrics of the reference: Top-1, Top-k and mean class accuracy (MCA), plus the confusion matrix.

Definitions (``N`` clips, ``C`` classes, ``y_i`` the label, ``s_i`` the scores of clip ``i``):

- Top-k accuracy: :math:`\frac{1}{N}\sum_i [\, y_i \in \operatorname{topk}(s_i) \,]`. With ``k >= C``
  every class is among the top k, so the value is exactly 1: :func:`topk_accuracy` states this
  explicitly instead of letting ``torch.topk`` fail (``k`` is clipped to ``C``).
- Confusion matrix ``M[c, p]``: clips of true class ``c`` predicted as ``p`` (argmax of the scores).
- Per-class accuracy of class ``c``: :math:`M_{cc} / \sum_p M_{cp}`; undefined (NaN) for a class with
  no clip in the split.
- Mean class accuracy: the mean of the per-class accuracies over the classes **present in the split**
  (classes without a clip are left out, not counted as 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "confusion_matrix",
    "topk_correct",
    "topk_accuracy",
    "per_class_accuracy",
    "mean_class_accuracy",
    "ClassificationMeter",
]


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(f"logits and targets must be tensors, got {type(logits).__name__} and {type(targets).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, num_classes], got shape {tuple(logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must be [N] with N = {logits.shape[0]} (the logits' rows), got shape {tuple(targets.shape)}")
    if targets.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``M[c, p]`` = number of samples of true class ``c`` predicted as ``p``; int64 ``[C, C]`` on the CPU.

    Args:
        preds: predicted classes ``[B]``.
        targets: true classes ``[B]``.
        num_classes: ``C``.
    """
    if preds.shape != targets.shape or preds.dim() != 1:
        raise ValueError(f"preds and targets must be 1-D of the same length, got {tuple(preds.shape)} and {tuple(targets.shape)}")
    preds, targets = preds.detach().long().cpu(), targets.detach().long().cpu()
    for name, v in (("preds", preds), ("targets", targets)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{int(v.min())}, {int(v.max())}]")
    flat = targets * num_classes + preds
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """How many rows have their target among the ``k`` highest scores (``k`` clipped to the class count)."""
    _check_logits_targets(logits, targets)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = min(k, logits.shape[1])
    top = logits.detach().topk(k, dim=1).indices
    return int((top == targets.detach().view(-1, 1).to(top.device)).any(dim=1).sum())


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose target is among the ``k`` highest scores.

    ``k >= num_classes`` returns 1.0 (every class is in the top k); an empty batch returns NaN.

    Args:
        logits: scores ``[B, C]``.
        targets: true classes ``[B]``.
        k: how many of the highest scores count.
    """
    n = logits.shape[0] if isinstance(logits, torch.Tensor) else 0
    correct = topk_correct(logits, targets, k)
    return correct / n if n else math.nan


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of every class, float64 ``[C]``; NaN for classes with no sample (absent from the split).

    Args:
        confusion: the confusion matrix ``[C, C]`` (rows: true classes).
    """
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square [C, C] matrix, got shape {tuple(confusion.shape)}")
    confusion = confusion.double()
    support = confusion.sum(dim=1)
    acc = torch.full_like(support, math.nan)
    present = support > 0
    acc[present] = confusion.diagonal()[present] / support[present]
    return acc


def mean_class_accuracy(confusion: torch.Tensor) -> float:
    """Mean of the per-class accuracies over the classes present in the split (NaN if none is).

    Args:
        confusion: the confusion matrix ``[C, C]`` (rows: true classes).
    """
    acc = per_class_accuracy(confusion)
    present = ~torch.isnan(acc)
    return float(acc[present].mean()) if bool(present.any()) else math.nan


class ClassificationMeter:
    """Accumulates a split's predictions batch by batch: confusion matrix, Top-k hits and the mean loss.

    Counts are plain sums, so meters of several processes combine exactly by summing
    (:meth:`state_tensor` / :meth:`load_state_tensor`, used by :func:`taghead.engine.distributed.all_reduce_meter`).

    Args:
        num_classes: number of classes ``C``.
        topk: the ``k`` of the Top-k accuracies to report (``k >= C`` gives 1.0, see the module docstring).
    """

    def __init__(self, num_classes: int, topk: Sequence[int] = (1, 5)) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.topk = tuple(int(k) for k in topk)
        self.reset()

    def reset(self) -> None:
        """Forget every batch added so far."""
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.topk_hits = torch.zeros(len(self.topk), dtype=torch.int64)
        self.loss_sum = 0.0
        self.count = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float | torch.Tensor | None = None) -> None:
        """Add a batch; ``loss`` is the batch's **mean** loss (weighted by the batch size here).

        Args:
            logits: scores ``[B, C]``.
            targets: true classes ``[B]``.
            loss: the batch's mean loss (``None``: not tracked).
        """
        _check_logits_targets(logits, targets)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} classes, the meter was built for {self.num_classes}")
        logits = logits.detach().float()
        self.confusion += confusion_matrix(logits.argmax(dim=1), targets, self.num_classes)
        for i, k in enumerate(self.topk):
            self.topk_hits[i] += topk_correct(logits, targets, k)
        n = int(targets.shape[0])
        if loss is not None:
            self.loss_sum += float(loss) * n
        self.count += n

    def state_tensor(self) -> torch.Tensor:
        """All counts in one float64 vector (to sum across processes)."""
        return torch.cat([self.confusion.flatten().double(), self.topk_hits.double(),
                          torch.tensor([self.loss_sum, float(self.count)], dtype=torch.float64)])

    def load_state_tensor(self, state: torch.Tensor) -> None:
        """Restore the counts from a tensor :meth:`state_tensor` made (summed over processes, say).

        Args:
            state: the flat float64 counts.
        """
        c2, nk = self.num_classes ** 2, len(self.topk)
        state = state.detach().cpu().double()
        if state.numel() != c2 + nk + 2:
            raise ValueError(f"state has {state.numel()} values, expected {c2 + nk + 2}")
        self.confusion = state[:c2].round().long().reshape(self.num_classes, self.num_classes)
        self.topk_hits = state[c2:c2 + nk].round().long()
        self.loss_sum, self.count = float(state[c2 + nk]), int(round(float(state[c2 + nk + 1])))

    def compute(self) -> dict[str, Any]:
        """``{"top1", "top{k}"..., "mca", "loss", "count"}``; accuracies are fractions in [0, 1].

        ``top1`` is the trace of the confusion matrix over the count (argmax predictions), the same
        predictions the confusion matrix and the MCA use.
        """
        n = self.count
        out: dict[str, Any] = {"count": n}
        out["top1"] = float(self.confusion.trace()) / n if n else math.nan
        for k, hits in zip(self.topk, self.topk_hits.tolist()):
            if k != 1:
                out[f"top{k}"] = hits / n if n else math.nan
        out["mca"] = mean_class_accuracy(self.confusion)
        out["loss"] = self.loss_sum / n if n else math.nan
        return out

    def per_class(self) -> torch.Tensor:
        """Per-class accuracy (NaN for absent classes)."""
        return per_class_accuracy(self.confusion)
