"""Training and evaluation engine behind ``taghead train / eval / predict / demo``.

- :mod:`~taghead.engine.metrics`: Top-1, Top-k, mean class accuracy, confusion matrix.
- :mod:`~taghead.engine.trainer`: :class:`Trainer`, :class:`TrainConfig`, :func:`evaluate`.
- :mod:`~taghead.engine.checkpoint`: atomic, resumable, weights-only-safe checkpoints.
- :mod:`~taghead.engine.distributed`: torchrun / DistributedDataParallel support.
- :mod:`~taghead.engine.optim`: Adam / AdamW and the warm-up + cosine schedule.
- :mod:`~taghead.engine.plots`: training curves, confusion matrices, bar charts (matplotlib).
- :mod:`~taghead.engine.predict`: :func:`load_model` (:func:`load_model_with_source` also says which weights),
  :func:`predict_videos`.
- :mod:`~taghead.engine.recipes`: the from-scratch and fine-tuning defaults of ``taghead train``.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import DistributedContext, init_distributed
from .metrics import (
    ClassificationMeter,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
)
from .optim import WarmupCosine, build_optimizer, build_scheduler
from .predict import (
    LoadedModel,
    Prediction,
    load_model,
    load_model_with_source,
    predict_videos,
    topk_predictions,
)
from .trainer import TrainConfig, Trainer, evaluate, seed_everything

__all__ = [
    "Trainer", "TrainConfig", "evaluate", "seed_everything",
    "ClassificationMeter", "confusion_matrix", "topk_accuracy", "per_class_accuracy", "mean_class_accuracy",
    "save_checkpoint", "load_checkpoint",
    "DistributedContext", "init_distributed",
    "build_optimizer", "build_scheduler", "WarmupCosine",
    "load_model", "load_model_with_source", "LoadedModel", "predict_videos", "topk_predictions", "Prediction",
]
