"""Inference helpers: load a trained model from what training or ``save_pretrained`` wrote, predict top-k labels.

:func:`load_model` accepts

- a folder written by ``save_pretrained`` (``config.json`` + ``model.safetensors``), or a Hub repo id;
- a training output folder (``taghead train --output DIR``): its ``best/`` folder when present (the
  weights of the best validation epoch, not the final one), else ``checkpoint_best.pt``, else
  ``checkpoint_last.pt``;
- a training checkpoint file (``checkpoint_*.pt``), read with ``torch.load(weights_only=True)``; the
  model is rebuilt from the spec stored in it.

:func:`load_model_with_source` also says which weights those are (the commands print it): for a run, the
epoch and its validation metrics, and where the final epoch's weights are when they differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint

__all__ = ["load_model", "load_model_with_source", "LoadedModel", "Prediction", "topk_predictions", "predict_videos"]


@dataclass
class LoadedModel:
    """A model from :func:`load_model_with_source` and which weights it holds, in words.

    Attributes:
        model: in eval mode, on the device asked for.
        source: what was loaded: ``runs/x/best``, ``runs/x/checkpoint_last.pt``, a saved folder or a Hub repo id.
        description: which weights those are (``the run's best weights, epoch 7 of 10: validation Top-1
            91.8 %, MCA 90.0 %``), and for a run's best weights the final epoch's result and how to use that
            instead.
    """

    model: nn.Module
    source: str
    description: str

    def line(self) -> str:
        """``model: SOURCE (DESCRIPTION)``, the line the commands print."""
        return f"model: {self.source} ({self.description})"


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f} %"


def _run_rows(folder: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` (``[]`` when it has none or it cannot be read)."""
    from .plots import read_metrics_csv
    from .trainer import METRICS_CSV

    try:
        return read_metrics_csv(folder / METRICS_CSV) if (folder / METRICS_CSV).is_file() else []
    except (OSError, ValueError):
        return []


def _epoch_result(row: dict[str, float] | None) -> str:
    if not row or "val_top1" not in row or row["val_top1"] != row["val_top1"]:  # NaN: no validation that epoch
        return ""
    return f": validation Top-1 {_pct(row['val_top1'])}, MCA {_pct(row.get('val_mca', float('nan')))}"


def _saved_model_description(model: nn.Module, run: Path | None) -> str:
    """What a saved folder holds: a run's best epoch (from the provenance of its weights, ``weights_cfg``) or a
    saved model."""
    from ..heads.io import weights_provenance

    cfg = weights_provenance(model)
    epoch = getattr(cfg, "epoch", None)
    metrics = getattr(cfg, "metrics", None) or {}
    if run is None:
        if epoch is not None and metrics:
            from ..hub import METRIC_NAMES

            measured = ", ".join(f"{METRIC_NAMES.get(k, k)} {v} %" for k, v in metrics.items())
            return f"a saved model, trained to epoch {epoch}: {measured} on its {cfg.split or 'validation'} set"
        return "a saved model"
    rows = _run_rows(run)
    total = int(rows[-1]["epoch"]) if rows else None
    where = f"epoch {epoch}" + (f" of {total}" if total else "") if epoch is not None else "its best epoch"
    best = next((r for r in rows if epoch is not None and int(r["epoch"]) == epoch), None)
    text = f"the run's best weights, {where}{_epoch_result(best)}"
    if rows and epoch is not None and int(rows[-1]["epoch"]) != epoch:
        from .trainer import LAST_CHECKPOINT

        text += (f"; the final epoch {int(rows[-1]['epoch'])}{_epoch_result(rows[-1])} is in "
                 f"{run / LAST_CHECKPOINT}: pass that as --model to use it")
    return text


def _checkpoint_description(path: Path, state: dict[str, Any]) -> str:
    from .trainer import BEST_CHECKPOINT

    epoch = int(state.get("epoch", 0))
    rows = _run_rows(path.parent)
    row = next((r for r in rows if int(r["epoch"]) == epoch), None)
    total = f" of {int(rows[-1]['epoch'])}" if rows else ""
    kind = "the run's best weights" if path.name == BEST_CHECKPOINT else "a training checkpoint"
    return f"{kind}, after epoch {epoch}{total}{_epoch_result(row)}"


def _from_checkpoint(path: Path, backbone: nn.Module | None) -> tuple[nn.Module, str]:
    from ..hub import parse_config
    from ..models.loading import module_from_config
    from ..weights import load_state_dict_checked

    state = load_checkpoint(path)
    text = state.get("model_config") or "null"
    if not isinstance(text, str) or text.strip() == "null":
        raise ValueError(f"{str(path)!r} holds no model config (the model trained was not a taghead.VideoClassifier); "
                         "rebuild the model yourself and load the checkpoint's 'model' state dict")
    config = parse_config(text, f"the model config of {str(path)!r}")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{str(path)!r}: its 'model' entry is not a state dict of tensors")
    model = module_from_config(config, backbone=backbone, source=repr(str(path)), weights=weights)
    load_state_dict_checked(model, weights, source=repr(str(path)))
    if config.get("architecture"):
        model.architecture = config["architecture"]
    return model.eval(), _checkpoint_description(path, state)


def load_model_with_source(source: str | os.PathLike, *, device: str | torch.device = "cpu",
                           backbone: nn.Module | None = None) -> LoadedModel:
    """:func:`load_model`, and which weights were loaded (for a training output folder: its best epoch, and
    where the final epoch's weights are).

    Args:
        source: a saved folder, a training output folder or a checkpoint file.
        device: where to put the model.
        backbone: the backbone module, for models built around a user-supplied one.
    """
    from ..hub import CONFIG_NAME, looks_like_local_path, missing_path_error
    from ..models.loading import from_pretrained
    from ..weights import recover_interrupted_write
    from .trainer import BEST_CHECKPOINT, BEST_PRETRAINED, LAST_CHECKPOINT

    path = Path(source)
    text = os.fspath(source)
    if path.is_dir():
        for folder in (path, path / BEST_PRETRAINED):  # a killed save_pretrained, committed: finish it first
            recover_interrupted_write(folder)
        if (path / CONFIG_NAME).is_file():
            model = from_pretrained(path, backbone=backbone)
            run = path.parent if path.name == BEST_PRETRAINED and (path.parent / LAST_CHECKPOINT).is_file() else None
            loaded = LoadedModel(model, text, _saved_model_description(model, run))
        elif (path / BEST_PRETRAINED / CONFIG_NAME).is_file():
            model = from_pretrained(path / BEST_PRETRAINED, backbone=backbone)
            loaded = LoadedModel(model, str(path / BEST_PRETRAINED), _saved_model_description(model, path))
        elif (path / BEST_CHECKPOINT).is_file():
            model, description = _from_checkpoint(path / BEST_CHECKPOINT, backbone)
            loaded = LoadedModel(model, str(path / BEST_CHECKPOINT), description)
        elif (path / LAST_CHECKPOINT).is_file():
            model, description = _from_checkpoint(path / LAST_CHECKPOINT, backbone)
            loaded = LoadedModel(model, str(path / LAST_CHECKPOINT), description + " (the run saved no best weights)")
        else:
            raise FileNotFoundError(
                f"{text!r} holds neither a saved model ({CONFIG_NAME}) nor a training output "
                f"({BEST_PRETRAINED}/, {BEST_CHECKPOINT} or {LAST_CHECKPOINT})"
            )
    elif path.is_file():
        model, description = _from_checkpoint(path, backbone)
        loaded = LoadedModel(model, text, description)
    elif isinstance(source, str) and not looks_like_local_path(source) and source.count("/") == 1:
        try:
            model = from_pretrained(source, backbone=backbone)  # a Hub repo id "org/name"
        except Exception as err:  # offline, unknown repo, ...: say that the local path does not exist either
            raise FileNotFoundError(f"{source!r} is not a local folder or file, and loading it as a Hub repo id "
                                    f"failed: {err}") from err
        loaded = LoadedModel(model, text, f"from the Hugging Face Hub: {_saved_model_description(model, None)}")
    else:
        raise missing_path_error(text, "model folder or checkpoint file")
    loaded.model = loaded.model.to(device).eval()
    return loaded


def load_model(source: str | os.PathLike, *, device: str | torch.device = "cpu",
               backbone: nn.Module | None = None) -> nn.Module:
    """A model ready for inference (eval mode, on ``device``) from a saved folder, training output or checkpoint.

    ``backbone`` is needed only for models built around a user-supplied backbone module.

    Args:
        source: a saved folder (``save_pretrained``), a training output folder or a checkpoint file.
        device: where to put the model.
        backbone: the backbone module, for models built around a user-supplied one.
    """
    return load_model_with_source(source, device=device, backbone=backbone).model


@dataclass
class Prediction:
    """Top-k classes of one clip: label names, indices and softmax probabilities, best first.

    Attributes:
        source: the video (its path as given) or clip the prediction is for.
        labels: the top-k class names, best first.
        indices: their class indices.
        scores: their softmax probabilities.
        error: why the video could not be used (then the lists are empty); ``None`` when it was.
    """

    source: str
    labels: list[str]
    indices: list[int]
    scores: list[float]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``taghead predict --json``)."""
        return {"source": self.source, "labels": self.labels, "indices": self.indices, "scores": self.scores,
                "error": self.error}


def _label_names(model: nn.Module, num_classes: int) -> list[str]:
    """The model's class names, or the class indices as strings when it has none."""
    from ..hub import check_label_names

    names = getattr(model, "label_names", None)
    return check_label_names(names, num_classes) if names else [str(i) for i in range(num_classes)]


@torch.no_grad()
def topk_predictions(model: nn.Module, clips: torch.Tensor, k: int = 5,
                     sources: Sequence[str] | None = None) -> list[Prediction]:
    """Top-``k`` (clipped to the class count) of a batch of model inputs ``[B, 3, T, H, W]``.

    Args:
        model: the classifier.
        clips: model inputs ``[B, 3, T, H, W]``.
        k: classes per prediction.
        sources: what each clip is, for :attr:`Prediction.source` (``None``: ``"clip <index>"``).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        probs = model(clips.to(device)).float().softmax(dim=1).cpu()
    finally:
        model.train(was_training)
    names = _label_names(model, probs.shape[1])
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    sources = list(sources) if sources is not None else [f"clip {i}" for i in range(len(probs))]
    return [Prediction(src, [names[j] for j in idx.tolist()], idx.tolist(), val.tolist())
            for src, idx, val in zip(sources, top.indices, top.values)]


def predict_videos(model: nn.Module, paths: Sequence[str | os.PathLike], k: int = 5,
                   batch_size: int = 4, progress: bool = False) -> list[Prediction]:
    """Decode each video (uniform sampling and evaluation transforms of ``model.data_config``) and predict.

    A video that cannot be used (unreadable, frames smaller than the crop with no resize, frames too large
    to keep in memory, see :func:`~taghead.data.load_clip`) gives a :class:`Prediction` with ``error`` set
    instead of stopping the run: the other videos are predicted.

    Args:
        model: a model with a ``data_config``.
        paths: the video files.
        k: classes per prediction.
        batch_size: clips per forward pass.
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    from ..data import VideoDecodeError, load_clip

    data_config = getattr(model, "data_config", None)
    if data_config is None:
        raise ValueError("the model has no data_config (frames, crop, normalisation); use a taghead.VideoClassifier")
    results: list[Prediction] = []
    pending: list[tuple[str, torch.Tensor]] = []

    def flush() -> None:
        if pending:
            results.extend(topk_predictions(model, torch.stack([c for _, c in pending]), k, [s for s, _ in pending]))
            pending.clear()

    for path in tqdm([os.fspath(p) for p in paths], desc="predict", disable=not progress):
        try:
            pending.append((path, load_clip(path, data_config)))
        except (VideoDecodeError, OSError, ValueError, MemoryError) as err:
            flush()
            message = str(err) if isinstance(err, (VideoDecodeError, OSError)) else f"{type(err).__name__}: {err}"
            results.append(Prediction(path, [], [], [], error=message))
            continue
        if len(pending) == batch_size:
            flush()
    flush()
    return results
