"""Figures (matplotlib, Agg backend, imported lazily): training curves, confusion matrices, bar charts."""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["read_metrics_csv", "plot_training_curves", "plot_confusion_matrix", "plot_bars", "plain_text"]

F = TypeVar("F", bound=Callable[..., Any])


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - matplotlib is in the [plot] extra
        raise ImportError("plots need matplotlib: pip install 'taghead[plot]'") from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plain_text(func: F) -> F:
    """Decorator: ``func`` makes its figures with matplotlib drawing every string as it is, so ``$...$`` in
    a class or file name (``clip_$a_b_c$.mp4``) is shown, not parsed as mathtext (which can fail)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _pyplot().rc_context({"text.parse_math": False}):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` written by the trainer, numbers parsed (empty cells become NaN)."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: float(v) if v not in ("", None) else math.nan for k, v in row.items()})
    return rows


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from ..weights import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path


@plain_text
def plot_training_curves(runs: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike,
                         title: str | None = None, chance: float | None = None) -> Path:
    """Loss and validation accuracy per epoch for one or more runs (``{name: metrics rows}``).

    Left: training loss (solid) and validation loss (dashed). Right: validation Top-1 (thin solid line with
    dots) over mean class accuracy (a wide pale band of the same colour, so that it shows where the two
    coincide, as they do on a balanced validation set where every class is predicted equally well; the legend
    then says so), in percent, and the ``chance`` level (a fraction) when given.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for i, (name, rows) in enumerate(runs.items()):
        colour = f"C{i}"
        epochs = [r["epoch"] for r in rows]
        if any("train_loss" in r for r in rows):
            ax_loss.plot(epochs, [r.get("train_loss", math.nan) for r in rows], "-", color=colour, label=f"{name} train")
        if any(not math.isnan(r.get("val_loss", math.nan)) for r in rows):
            ax_loss.plot(epochs, [r.get("val_loss", math.nan) for r in rows], "--", color=colour, label=f"{name} val")
            top1 = [100 * r.get("val_top1", math.nan) for r in rows]
            mca = [100 * r.get("val_mca", math.nan) for r in rows]
            same = all(math.isnan(a) and math.isnan(b) or abs(a - b) < 0.05 for a, b in zip(top1, mca))
            ax_acc.plot(epochs, mca, "-", lw=6, alpha=0.3, color=colour, solid_capstyle="round", zorder=2,
                        label=f"{name} MCA" + (" (= Top-1 at every epoch)" if same else ""))
            ax_acc.plot(epochs, top1, "-o", ms=3, lw=1.3, color=colour, zorder=3, label=f"{name} Top-1")
    if chance is not None:
        ax_acc.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy", ylim=(0, 104))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


@plain_text
def plot_confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], path: str | os.PathLike,
                          normalize: bool = True, title: str | None = None) -> Path:
    """Confusion matrix heat map (rows: true class, columns: predicted), row-normalised by default.

    Cells carry their value when there are at most 30 classes; names are shown up to 60 classes.
    """
    plt = _pyplot()
    counts = confusion.double()
    c = counts.shape[0]
    if len(class_names) != c:
        raise ValueError(f"got {len(class_names)} class names for a {c}x{c} confusion matrix")
    values = counts / counts.sum(1, keepdim=True).clamp(min=1) if normalize else counts
    side = min(max(4.0, 0.45 * c + 2), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), layout="constrained")
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class" if normalize else "clips")
    if c <= 60:
        ax.set_xticks(range(c), labels=list(class_names), rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(c), labels=list(class_names), fontsize=7)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                v = float(values[i, j])
                if v:
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center", fontsize=6,
                            color="white" if (v > 0.5 if normalize else v > float(values.max()) / 2) else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


@plain_text
def plot_bars(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] | Mapping[str, str], path: str | os.PathLike,
              label_key: str = "name", title: str | None = None, chance: float | None = None) -> Path:
    """Grouped bars, one group per row and one bar per metric (values are fractions, shown in percent).

    ``metrics`` lists the keys to plot, or maps each key to its legend label.
    """
    plt = _pyplot()
    labels = dict(metrics) if isinstance(metrics, Mapping) else {m: m for m in metrics}
    metrics = list(labels)
    names = [str(r[label_key]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.5), layout="constrained")
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
        vals = [100 * float(r[metric]) for r in rows]
        bars = ax.bar(xs, vals, width, label=labels[metric])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(rows)), labels=names, rotation=20, ha="right")
    ax.set(ylabel="%", ylim=(0, 105), title=title or "")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
