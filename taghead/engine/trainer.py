r"""Training and evaluation loops: AMP, gradient accumulation and clipping, label smoothing, DDP, resumable checkpoints.

:class:`Trainer` trains any classifier ``video -> logits`` (normally a :class:`taghead.VideoClassifier`)
on datasets of ``(video, label)`` pairs. Per optimiser step the loss is

.. math:: \mathcal{L} = \mathrm{CE}_{\epsilon}(z, y) + \sum_j \mathcal{L}^{aux}_j

where ``CE_eps`` is cross-entropy with label smoothing ``eps`` and the auxiliary terms are whatever
the head returns from ``model.losses(logits, target)`` (``{}`` for TAG-Head and mean pooling; ART's
tracklet losses), averaged over ``accum_steps`` micro-batches. After every optimiser step the trainer
calls ``model.update_ema()`` when the model has it (ART's text bank follows its agent once per step).

Each epoch: train (tqdm bar, rank 0), evaluate on the validation set (metrics exact across
processes), print one line, append to ``metrics.csv``, log to TensorBoard when it is installed,
save ``checkpoint_last.pt`` (and ``checkpoint_best.pt`` + a ``best/`` ``save_pretrained`` folder when
the monitored metric improved, or stayed equal with a lower validation loss; the model card of
``best/`` records the epoch and its validation metrics), redraw ``curves.png`` (after the last epoch,
and after any epoch longer than 30 s). The learning rate logged for an epoch is the one its last
optimiser step used. :meth:`Trainer.resume` continues from a
checkpoint: a run killed at any point and resumed gives the same result as an uninterrupted one
(bit-identical in a deterministic CPU set-up, see ``tests/test_checkpoint.py``).

**Nothing of an earlier run is lost.** A fresh run (not resumed) refuses an output folder that already
holds a run's files (:data:`RUN_OUTPUTS`) with a :class:`RunExistsError`, unless ``overwrite=True``,
which removes those files (and only those) before the first epoch.

Cached feature maps: when the datasets say ``inputs = "features"`` (a
:class:`taghead.features.FeatureDataset`), their items are the backbone's maps, so only ``model.head``
runs (and is wrapped by DDP); the backbone must be frozen, and each dataset's ``check_model(model)``
refuses a model its maps do not belong to. Everything else (losses, optimiser groups, checkpoints of the
whole model, ``best/``) is as for videos. A dataset's ``set_epoch(epoch)``, when it has one, is called
before each training epoch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..weights import atomic_output, check_output_folder
from .checkpoint import (
    capture_rng_state,
    load_checkpoint,
    model_config_json,
    restore_rng_state,
    save_checkpoint,
)
from .distributed import (
    DistributedContext,
    ShardSampler,
    all_gather_objects,
    all_reduce_meter,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    build_train_sampler,
)
from .metrics import ClassificationMeter
from .optim import OPTIMIZERS, build_optimizer, build_scheduler

__all__ = ["TrainConfig", "Trainer", "seed_everything", "AMP_MODES", "METRICS_CSV", "LAST_CHECKPOINT",
           "BEST_CHECKPOINT", "BEST_PRETRAINED", "CURVES_PNG", "TENSORBOARD_DIR", "RUN_OUTPUTS", "RunExistsError",
           "existing_run_outputs", "check_output_dir", "is_improvement"]

AMP_MODES = ("none", "bf16", "fp16")
METRICS_CSV = "metrics.csv"
LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
BEST_PRETRAINED = "best"
CURVES_PNG = "curves.png"
TENSORBOARD_DIR = "tensorboard"
#: What a run writes into its output folder: a fresh run refuses a folder holding any of them (unless told to
#: overwrite, which removes exactly these).
RUN_OUTPUTS = (METRICS_CSV, LAST_CHECKPOINT, BEST_CHECKPOINT, BEST_PRETRAINED, CURVES_PNG, TENSORBOARD_DIR)
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class RunExistsError(FileExistsError):
    """The output folder already holds a training run, and the new run was neither resumed nor told to overwrite."""


def existing_run_outputs(folder: str | os.PathLike) -> list[str]:
    """The names of :data:`RUN_OUTPUTS` that exist in ``folder`` (``[]`` when it does not exist)."""
    folder = Path(folder)
    return [name for name in RUN_OUTPUTS if (folder / name).exists()] if folder.is_dir() else []


def check_output_dir(folder: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> list[str]:
    """Check that a run may write to ``folder``; returns the earlier run's files that ``overwrite`` will replace.

    Raises:
        NotADirectoryError: ``folder``, or a folder above it, is a file.
        RunExistsError: ``folder`` holds an earlier run's files (:data:`RUN_OUTPUTS`) and neither
            ``resume`` nor ``overwrite`` is set. Nothing is changed.
        ValueError: ``resume`` and ``overwrite`` together.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite replaces it; give one")
    check_output_folder(folder)
    found = existing_run_outputs(folder)
    if found and not resume and not overwrite:
        raise RunExistsError(
            f"{str(folder)!r} already holds a training run ({', '.join(found)}); nothing was changed. Continue it "
            "with --resume, write to another --output, or pass --overwrite to replace it")
    return found if overwrite else []


def _remove_run_outputs(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def is_improvement(value: float, loss: float, best: float | None, best_loss: float | None) -> bool:
    """Whether validation ``value`` (higher is better) with validation ``loss`` beats the best so far.

    A higher value wins; an equal value wins when its loss is lower (a run at 100 % keeps improving its
    loss, and the later weights are the better ones). NaN values never win.
    """
    if math.isnan(value):
        return False
    if best is None or value > best:
        return True
    if value < best:
        return False
    return not math.isnan(loss) and (best_loss is None or math.isnan(best_loss) or loss < best_loss)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global generators.

    Args:
        seed: the seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Training options (the defaults are the reference recipe: Adam, lr 1e-5, batch 8, cosine to 0, seed 42).

    Attributes:
        epochs: passes over the training set.
        batch_size: clips per process and forward pass (the global batch is
            ``batch_size * world_size * accum_steps``).
        optimizer: ``"adam"`` or ``"adamw"``.
        lr: peak learning rate of the head; the backbone gets ``lr * backbone_lr_scale``.
        weight_decay: (decoupled for AdamW, L2 for Adam).
        backbone_lr_scale: learning-rate factor of the backbone (1.0 = the reference; 0 = frozen in effect).
        warmup_epochs: linear warm-up length (fractions allowed), then cosine decay per step.
        min_lr_ratio: final learning rate as a fraction of the peak.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (fp16 uses a gradient scaler).
        accum_steps: micro-batches per optimiser step.
        clip_grad: maximum global gradient norm (``None``: no clipping).
        label_smoothing: of the training cross-entropy (validation loss is plain cross-entropy).
        seed: seeds the generators (process ``r`` uses ``seed + r``) and the sampling order.
        workers: DataLoader worker processes.
        eval_batch_size: evaluation batch (default: ``batch_size``).
        monitor: validation metric deciding the best checkpoint: ``"top1"`` or ``"mca"``.
        max_steps_per_epoch: cap on micro-batches per epoch (quick runs); ``None`` = the whole set.
        find_unused_parameters: passed to DistributedDataParallel (heads with branches unused in a step).
        channels_last: ``channels_last_3d`` memory format for the model and the clips (faster 3D
            convolutions on CPUs with oneDNN, often on GPUs too).
        progress: tqdm progress bars (rank 0).
        tensorboard: also log to ``output_dir/tensorboard`` when TensorBoard is installed.
        save_best_pretrained: write ``output_dir/best`` with ``save_pretrained`` when the metric improves.
        plot: draw ``output_dir/curves.png`` (after the last epoch, and after every epoch longer than 30 s).
    """

    epochs: int = 60
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 1e-5
    weight_decay: float = 0.0
    backbone_lr_scale: float = 1.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    amp: str = "none"
    accum_steps: int = 1
    clip_grad: float | None = None
    label_smoothing: float = 0.0
    seed: int = 42
    workers: int = 0
    eval_batch_size: int | None = None
    monitor: str = "top1"
    max_steps_per_epoch: int | None = None
    find_unused_parameters: bool = False
    channels_last: bool = False
    progress: bool = True
    tensorboard: bool = True
    save_best_pretrained: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")

        for name in ("epochs", "batch_size", "accum_steps"):
            positive_int(name)
        for name in ("eval_batch_size", "max_steps_per_epoch"):
            positive_int(name, allow_none=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.monitor not in ("top1", "mca"):
            raise ValueError(f"monitor must be 'top1' or 'mca', got {self.monitor!r}")
        for name in ("lr", "weight_decay", "backbone_lr_scale", "warmup_epochs", "min_lr_ratio", "label_smoothing",
                     "clip_grad"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.backbone_lr_scale < 0 or self.min_lr_ratio < 0:
            raise ValueError(f"weight_decay, backbone_lr_scale and min_lr_ratio must be >= 0, got {self.weight_decay}, "
                             f"{self.backbone_lr_scale}, {self.min_lr_ratio}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad must be > 0 or None, got {self.clip_grad}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an int >= 0, got {self.workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``config.json`` of a training run)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config :meth:`to_dict` wrote; unknown fields are an error.

        Args:
            d: the fields.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _num_classes(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    raise ValueError("the model must expose a positive int `num_classes` (a taghead.VideoClassifier does)")


def _fmt_pct(v: float) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.1f}%"


class Trainer:
    """Train and evaluate a classifier; see the module docstring for what each epoch does.

    Args:
        model: ``video [B, 3, T, H, W] -> logits [B, C]`` with ``num_classes`` (and, optionally,
            ``losses(logits, target)``, ``param_groups(...)``, ``update_ema()``, ``save_pretrained(dir)``).
        train_dataset: ``(video, label)`` items, or ``(feature map, label)`` from a dataset whose ``inputs``
            attribute is ``"features"`` (:class:`taghead.features.FeatureDataset`): the head alone trains then.
        val_dataset: evaluated after every epoch (optional; the same kind of items as the training set).
        config: a :class:`TrainConfig`.
        output_dir: where metrics, checkpoints and plots go (``None``: nothing is written).
        ctx: the process's :class:`~taghead.engine.distributed.DistributedContext` (default: one CPU
            process, or the first CUDA device when available).
        class_names: for the logs and plots (default: the model's ``label_names`` or the dataset's
            ``class_names``).
        log: where rank 0's text lines go (default ``print``).
        overwrite: a fresh run into an ``output_dir`` that holds an earlier run removes that run's files
            (:data:`RUN_OUTPUTS`) first; without it :meth:`fit` raises :class:`RunExistsError`.
        data_name: the training data, in words, for the model card of ``best/`` (e.g. ``"gym99_train"``).
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset,
        val_dataset: Dataset | None = None,
        config: TrainConfig | None = None,
        *,
        output_dir: str | os.PathLike | None = None,
        ctx: DistributedContext | None = None,
        class_names: list[str] | None = None,
        log: Callable[[str], None] = print,
        overwrite: bool = False,
        data_name: str | None = None,
    ) -> None:
        self.config = config = config or TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if ctx is None:
            ctx = DistributedContext(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        self.ctx = ctx
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._log = log
        self.num_classes = _num_classes(model)
        names = class_names or getattr(model, "label_names", None) or getattr(train_dataset, "class_names", None)
        self.class_names = list(names) if names else [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a model with {self.num_classes} classes")
        if len(train_dataset) == 0:
            raise ValueError("the training dataset is empty")
        if val_dataset is not None and len(val_dataset) == 0:
            raise ValueError("the validation dataset is empty")

        self.inputs = _inputs_of(train_dataset, val_dataset)
        self.model = model.to(ctx.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        #: What the items go through: the model, or its head alone when they are cached feature maps.
        self.forward_module = self.model if self.inputs == "videos" else _head_for_features(self.model)
        for dataset in (train_dataset, val_dataset):
            check = getattr(dataset, "check_model", None) if self.inputs == "features" else None
            if callable(check):
                check(self.model)  # the guard rails: maps of this backbone, weights, data config, head shape
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        seed_everything(config.seed + ctx.rank)
        if ctx.is_distributed:
            self.train_model: nn.Module = nn.parallel.DistributedDataParallel(
                self.forward_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters,
            )
        else:
            self.train_model = self.forward_module

        self.sampler = build_train_sampler(train_dataset, ctx, config.seed, shuffle=True)
        self.train_loader = self._loader(train_dataset, config.batch_size, self.sampler)
        batches = len(self.train_loader)
        if config.max_steps_per_epoch is not None:
            batches = min(batches, config.max_steps_per_epoch)
        self.batches_per_epoch = batches
        self.steps_per_epoch = math.ceil(batches / config.accum_steps)
        total = config.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.model, config.optimizer, config.lr, config.weight_decay,
                                         config.backbone_lr_scale)
        self.scheduler = build_scheduler(self.optimizer, total, round(config.warmup_epochs * self.steps_per_epoch),
                                         config.min_lr_ratio)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

        self.overwrite = bool(overwrite)
        self.data_name = data_name
        self.start_epoch = 0
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_loss: float | None = None  # validation loss of the best epoch (breaks ties of the metric)
        self.last_step_lr = self.lr  # the learning rate the latest optimiser step used
        self.history: list[dict[str, float]] = []
        self._tb: Any = None
        self._warned_pretrained = False

    # ------------------------------------------------------------------------------------------ utils
    def log(self, message: str) -> None:
        """Print ``message`` from the main process only (the others stay silent).

        Args:
            message: one line of progress.
        """
        if self.ctx.is_main:
            self._log(message)

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=self.config.workers,
            pin_memory=self.ctx.device.type == "cuda", drop_last=False,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _autocast(self) -> Any:
        amp = self.config.amp
        return torch.autocast(self.ctx.device.type, dtype=_AMP_DTYPES.get(amp, torch.float32), enabled=amp != "none")

    def _path(self, name: str) -> Path | None:
        return self.output_dir / name if self.output_dir is not None else None

    @property
    def lr(self) -> float:
        """Current learning rate of the last parameter group (the head's)."""
        return float(self.optimizer.param_groups[-1]["lr"])

    # ------------------------------------------------------------------------------------ training
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns ``{"train_loss", "train_top1", "train_<aux>"...}``.

        Args:
            epoch: the epoch's index (0-based; seeds its shuffle).
        """
        from tqdm.auto import tqdm

        cfg, ctx = self.config, self.ctx
        model = self.train_model
        model.train()
        self.sampler.set_epoch(epoch)
        # One worker seed per (seed, epoch, rank): the same augmentation whether or not the run was resumed.
        self.train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + ctx.rank)
        _reset_failures(self.train_dataset)
        set_epoch = getattr(self.train_dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)  # e.g. which cached view of each clip a FeatureDataset serves

        loss_sum = torch.zeros((), dtype=torch.float64)
        aux_sums: dict[str, float] = {}
        correct = seen = 0
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(total=self.batches_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and ctx.is_main), dynamic_ncols=True)
        iterator = iter(self.train_loader)
        for i in range(self.batches_per_epoch):
            video, target = next(iterator)
            video = _to_device(video, ctx.device, cfg.channels_last)
            target = torch.as_tensor(target).to(ctx.device, non_blocking=True)
            last_micro = (i + 1) % cfg.accum_steps == 0 or i + 1 == self.batches_per_epoch
            in_group = cfg.accum_steps if i < (self.batches_per_epoch // cfg.accum_steps) * cfg.accum_steps \
                else self.batches_per_epoch % cfg.accum_steps
            sync = ctx.is_distributed and not last_micro
            with model.no_sync() if sync else contextlib.nullcontext():
                with self._autocast():
                    logits = model(video)
                    loss = self.criterion(logits.float(), target)
                    aux = _aux_losses(self.model, logits, target)
                    for value in aux.values():
                        loss = loss + value.float()
                self.scaler.scale(loss / in_group).backward()
            if not torch.isfinite(loss.detach()):
                raise FloatingPointError(
                    f"non-finite training loss {float(loss):.4g} at epoch {epoch + 1}, batch {i + 1}; lower the learning "
                    "rate, enable --clip-grad, or use --amp bf16 instead of fp16"
                )
            n = int(target.shape[0])
            loss_sum += float(loss.detach()) * n
            for name, value in aux.items():
                aux_sums[name] = aux_sums.get(name, 0.0) + float(value.detach()) * n
            correct += int((logits.detach().argmax(1) == target).sum())
            seen += n
            if last_micro:
                self._optimizer_step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{self.last_step_lr:.2e}")
        bar.close()
        del iterator

        totals = all_reduce_sum(torch.tensor([float(loss_sum), float(correct), float(seen)], dtype=torch.float64), ctx)
        out = {"train_loss": float(totals[0] / totals[2]), "train_top1": float(totals[1] / totals[2])}
        for name in sorted(aux_sums):
            t = all_reduce_sum(torch.tensor([aux_sums[name]], dtype=torch.float64), ctx)
            out[f"train_{name}"] = float(t[0] / totals[2])
        self._report_failures(self.train_dataset, "train")
        return out

    def _optimizer_step(self) -> None:
        cfg = self.config
        if cfg.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.clip_grad)
        self.last_step_lr = self.lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        update_ema = getattr(self.model, "update_ema", None)  # self.model: never the DDP wrapper
        if callable(update_ema):
            update_ema()  # moving averages (ART's text bank) move once per optimiser step
        with warnings.catch_warnings():  # an fp16 step skipped by the scaler makes torch warn about the order
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.global_step += 1
        if self._tb is not None:
            self._tb.add_scalar("train/lr", self.last_step_lr, self.global_step)

    # ---------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None, desc: str = "eval") -> tuple[dict[str, Any], ClassificationMeter]:
        """Top-1, Top-5, MCA and loss on ``dataset`` (default: the validation set), exact across processes.

        Args:
            dataset: the clips to evaluate (``None``: the validation set).
            desc: the progress bar's label.
        """
        dataset = dataset if dataset is not None else self.val_dataset
        if dataset is None:
            raise ValueError("no dataset to evaluate: pass one or give the Trainer a val_dataset")
        # Buffers (BatchNorm running statistics) can drift apart between processes; evaluate rank 0's,
        # the ones its checkpoint saves.
        broadcast_buffers(self.model, self.ctx)
        return evaluate(self.forward_module, dataset, num_classes=self.num_classes, ctx=self.ctx,
                        batch_size=self.config.eval_batch_size or self.config.batch_size,
                        workers=self.config.workers, amp=self.config.amp,
                        progress=self.config.progress, desc=desc, channels_last=self.config.channels_last)

    # ------------------------------------------------------------------------------ fit and resume
    def fit(self) -> list[dict[str, float]]:
        """Train from :attr:`start_epoch` to ``config.epochs``; returns the per-epoch metric rows."""
        cfg = self.config
        if self.output_dir is not None:
            self._prepare_output_dir()
        if self.output_dir is not None and self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
        if self.start_epoch == 0:
            cached = " (cached feature maps: the head alone)" if self.inputs == "features" else ""
            self.log(f"training {_describe(self.model)} on {len(self.train_dataset)} clips{cached} "
                     f"({self.num_classes} classes), {cfg.epochs} epochs x {self.steps_per_epoch} steps; global batch "
                     f"{cfg.batch_size * self.ctx.world_size * cfg.accum_steps}, {self.ctx.world_size} process(es) on "
                     f"{self.ctx.device.type}")
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                t0 = time.time()
                row: dict[str, float] = {"epoch": epoch + 1, "step": self.global_step}
                row.update(self.train_one_epoch(epoch))
                row["step"] = self.global_step
                row["lr"] = self.last_step_lr  # what the epoch's last step used (the schedule has moved on since)
                improved = False
                if self.val_dataset is not None:
                    _reset_failures(self.val_dataset)
                    metrics, _ = self.evaluate(desc=f"val {epoch + 1}/{cfg.epochs}")
                    self._report_failures(self.val_dataset, "val")
                    row.update({f"val_{k}": float(v) for k, v in metrics.items() if k != "count"})
                    value, loss = float(metrics[cfg.monitor]), float(metrics["loss"])
                    improved = is_improvement(value, loss, self.best_metric, self.best_loss)
                    if improved:
                        self.best_metric, self.best_loss = value, loss
                row["epoch_seconds"] = time.time() - t0
                self.history.append(row)
                self.log(_epoch_line(row, cfg.epochs))
                self._end_of_epoch(epoch, improved)
        finally:
            if self._tb is not None:
                self._tb.close()
                self._tb = None
        barrier(self.ctx)
        return self.history

    def _prepare_output_dir(self) -> None:
        """A fresh run: refuse (or, with ``overwrite``, clear) an earlier run's files; rank 0's view decides."""
        if self.start_epoch > 0:
            return  # resumed: the folder is this run's
        found = existing_run_outputs(self.output_dir) if self.ctx.is_main else []
        found = all_gather_objects(found, self.ctx)[0]
        if found and not self.overwrite:
            raise RunExistsError(
                f"{str(self.output_dir)!r} already holds a training run ({', '.join(found)}); nothing was changed. "
                "Resume it (Trainer.resume), use another output_dir, or pass overwrite=True to replace it")
        if found and self.ctx.is_main:
            self.log(f"replacing the earlier run in {self.output_dir} ({', '.join(found)})")
            _remove_run_outputs(self.output_dir, found)
        barrier(self.ctx)

    def _end_of_epoch(self, epoch: int, improved: bool) -> None:
        # Every rank's generator state goes into the checkpoint (gathered even when nothing is written,
        # so that all ranks take part in the collective).
        rng = all_gather_objects(capture_rng_state(), self.ctx)
        _check_finite_weights(self.model, epoch)  # every rank (DDP keeps their weights equal): all stop together
        if self.output_dir is None or not self.ctx.is_main:
            return
        row = self.history[-1]
        self._write_metrics_csv()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and not math.isnan(value):
                    self._tb.add_scalar(key.replace("_", "/", 1), value, epoch + 1)
            self._tb.flush()
        state = self.state_dict(epoch + 1, rng)
        last = save_checkpoint(state, self.output_dir / LAST_CHECKPOINT)
        if improved:
            _atomic_copy(last, self.output_dir / BEST_CHECKPOINT)
            if self.config.save_best_pretrained:
                self._save_pretrained(self.output_dir / BEST_PRETRAINED, row)
        # Redraw the curves at the end, and after epochs long enough that drawing (~1 s) costs little.
        if self.config.plot and (epoch + 1 == self.config.epochs or row["epoch_seconds"] > 30):
            try:
                from .plots import plot_training_curves

                plot_training_curves({"run": self.history}, self.output_dir / CURVES_PNG, title=_describe(self.model))
            except ImportError:  # pragma: no cover - matplotlib missing
                pass

    def trained_cfg(self, row: dict[str, float]) -> Any:
        """The provenance of the weights after the epoch of metrics ``row``, for ``best/``'s ``config.json`` and
        model card: this run's data, epoch and validation metrics (in percent); ``None`` for a model without a
        ``data_config``.

        Args:
            row: the epoch's metrics, as written to ``metrics.csv``.
        """
        from ..config import PretrainedCfg
        from ..heads.io import weights_provenance

        dc = getattr(self.model, "data_config", None)
        if dc is None:
            return None
        before = weights_provenance(self.model)
        epoch = int(row["epoch"])
        metrics = {name: round(100 * row[key], 2) for name, key in (("top1_accuracy", "val_top1"),
                                                                    ("mean_class_accuracy", "val_mca"),
                                                                    ("top5_accuracy", "val_top5"))
                   if key in row and not math.isnan(row[key])}
        data = self.data_name or "the training data"
        source = (f"Trained with taghead (`taghead train`, {_describe(self.model)}) on {data}: the weights after epoch "
                  f"{epoch} of {self.config.epochs}, the best by validation {self.config.monitor} when saved "
                  f"(validation loss {row.get('val_loss', math.nan):.4g}, {len(self.val_dataset or ())} clips).")
        return PretrainedCfg(num_classes=self.num_classes, num_frames=dc.num_frames, crop_size=dc.crop_size,
                             resize_size=dc.resize_size, mean=dc.mean, std=dc.std, source=source,
                             citation=getattr(before, "citation", None), dataset=self.data_name, metrics=metrics,
                             split="validation", epoch=epoch)

    def _save_pretrained(self, folder: Path, row: dict[str, float] | None = None) -> None:
        save = getattr(self.model, "save_pretrained", None)
        if save is None:
            return
        from ..heads.io import weights_provenance

        before = weights_provenance(self.model)  # the provenance (a VideoClassifier's weights_cfg), not timm's view
        try:
            if getattr(self.model, "label_names", None) is None:
                self.model.label_names = list(self.class_names)
            if row is not None and hasattr(self.model, "pretrained_cfg"):
                self.model.pretrained_cfg = self.trained_cfg(row) or before
            save(folder)
        except (TypeError, ValueError) as err:
            if not self._warned_pretrained:
                self.log(f"warning: could not write {folder} with save_pretrained ({err}); the checkpoints are "
                         "still written")
                self._warned_pretrained = True
        finally:
            if hasattr(self.model, "pretrained_cfg"):
                self.model.pretrained_cfg = before

    def state_dict(self, epoch: int, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`taghead.engine.checkpoint`) after ``epoch`` completed epochs.

        Args:
            epoch: completed epochs.
            rng: the generator states of every process (``None``: this process's).
        """
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng if rng is not None else [capture_rng_state()],
            "world_size": self.ctx.world_size,
            "best_metric": self.best_metric,
            "best_loss": self.best_loss,
            "model_config": model_config_json(self.model),
            "train_config": json.dumps(self.config.to_dict()),
            "class_names": list(self.class_names),
        }

    def resume(self, path: str | os.PathLike) -> int:
        """Load a checkpoint written by this trainer and continue after its epoch; returns that epoch.

        The model, optimiser, scheduler and scaler states, the epoch and step counters, the best
        metric, every generator state and the metrics history (``metrics.csv`` rows up to that
        epoch) are restored. The number of steps per epoch must be the same as when it was saved.

        Args:
            path: a checkpoint written by :meth:`state_dict` (``last.pt``).
        """
        state = load_checkpoint(path, map_location="cpu")
        saved = json.loads(state.get("train_config") or "{}")
        for key in ("batch_size", "accum_steps", "max_steps_per_epoch"):
            if key in saved and saved[key] != getattr(self.config, key):
                self.log(f"warning: resuming with {key}={getattr(self.config, key)} but the checkpoint used {saved[key]}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        rng = rng if isinstance(rng, list) else [rng]
        if len(rng) == self.ctx.world_size:
            restore_rng_state(rng[self.ctx.rank])
        else:
            self.log(f"warning: the checkpoint was written by {len(rng)} process(es), this run has "
                     f"{self.ctx.world_size}; generators are re-seeded instead of restored")
            seed_everything(self.config.seed + 7919 * int(state["epoch"]) + self.ctx.rank)
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.best_metric = state.get("best_metric")
        self.best_loss = state.get("best_loss")
        self.history = self._read_history(self.start_epoch)
        self.log(f"resumed from {path} after epoch {self.start_epoch} (step {self.global_step})")
        return self.start_epoch

    # --------------------------------------------------------------------------------- bookkeeping
    def _read_history(self, up_to_epoch: int) -> list[dict[str, float]]:
        path = self._path(METRICS_CSV)
        if path is None or not path.is_file():
            return []
        from .plots import read_metrics_csv

        return [r for r in read_metrics_csv(path) if r.get("epoch", math.inf) <= up_to_epoch]

    def _write_metrics_csv(self) -> None:
        path = self._path(METRICS_CSV)
        if path is None:
            return
        header: list[str] = []
        for row in self.history:
            header += [k for k in row if k not in header]
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, restval="")
            writer.writeheader()
            for row in self.history:
                writer.writerow({k: (int(v) if k in ("epoch", "step") else f"{v:.10g}") for k, v in row.items()})

    def _open_tensorboard(self) -> None:
        if not self.config.tensorboard or self._tb is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            return
        self._tb = SummaryWriter(log_dir=str(self.output_dir / TENSORBOARD_DIR))

    def _report_failures(self, dataset: Dataset, split: str) -> None:
        summary = getattr(dataset, "failure_summary", None)
        text = summary() if callable(summary) else ""
        texts = all_gather_objects(text, self.ctx)
        for rank, t in enumerate(texts):
            if t:
                prefix = f"[rank {rank}] " if self.ctx.is_distributed else ""
                self.log(f"{prefix}{split} data: {t}")


def _to_device(video: Any, device: torch.device, channels_last: bool) -> Any:
    if not isinstance(video, torch.Tensor):
        return video  # e.g. a list of pathways; the model moves it
    if channels_last and video.dim() == 5:
        return video.to(device, non_blocking=True, memory_format=torch.channels_last_3d)
    return video.to(device, non_blocking=True)


def _inputs_of(train_dataset: Dataset, val_dataset: Dataset | None) -> str:
    """``"features"`` when the datasets serve cached feature maps (their ``inputs`` attribute), else ``"videos"``."""
    kinds = [getattr(d, "inputs", "videos") for d in (train_dataset, val_dataset) if d is not None]
    if any(k not in ("videos", "features") for k in kinds):
        raise ValueError(f"a dataset's inputs must be 'videos' or 'features', got {kinds}")
    if len(set(kinds)) > 1:
        raise ValueError("the training set serves " + kinds[0] + " and the validation set " + kinds[1] + "; give both "
                         "as videos or both as cached feature maps (taghead.features.FeatureDataset)")
    return kinds[0]


def _head_for_features(model: nn.Module) -> nn.Module:
    """The head that trains on cached feature maps; the backbone, which does not run, must be frozen."""
    head, backbone = getattr(model, "head", None), getattr(model, "backbone", None)
    if not isinstance(head, nn.Module) or not isinstance(backbone, nn.Module):
        raise TypeError(f"training on cached feature maps needs a model with .backbone and .head (a "
                        f"taghead.VideoClassifier), got {type(model).__name__}")
    if any(p.requires_grad for p in backbone.parameters()):
        raise ValueError("training on cached feature maps leaves the backbone as it was extracted, so it must be "
                         "frozen: build the model with FeatureDataset.build_model, or call model.backbone.freeze()")
    return head


def _reset_failures(dataset: Dataset | None) -> None:
    reset = getattr(dataset, "reset_failures", None)
    if callable(reset):
        reset()


def _aux_losses(model: nn.Module, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    fn = getattr(model, "losses", None)
    if not callable(fn):
        return {}
    losses = fn(logits, target)
    if not isinstance(losses, dict):
        raise TypeError(f"model.losses(logits, target) must return a dict of tensors, got {type(losses).__name__}")
    for name, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise TypeError(f"auxiliary loss {name!r} must be a scalar tensor, got {value!r}")
    return losses


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    """Raise ``FloatingPointError`` when a floating-point weight of ``model`` holds NaN or infinity: such a
    model is not saved over the last good checkpoint."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise FloatingPointError(
            f"after epoch {epoch + 1}, {len(bad)} weight tensor(s) hold NaN or infinity ({', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}); training diverged, and nothing of this epoch was saved (the earlier "
            "checkpoints are kept). Lower the learning rate or enable --clip-grad, then --resume or start again")


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)


def _describe(model: nn.Module) -> str:
    head = getattr(model, "head", None)
    spec = getattr(model, "spec", None) or {}
    backbone = spec.get("backbone") or type(getattr(model, "backbone", model)).__name__
    head_name = (getattr(head, "head_name", "") or type(head).__name__) if head is not None else ""
    return f"{backbone} + {head_name}" if head_name else type(model).__name__


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"loss {row['train_loss']:.4f}", f"train {_fmt_pct(row['train_top1'])}"]
    if "val_top1" in row:
        parts += [f"val top1 {_fmt_pct(row['val_top1'])}", f"top5 {_fmt_pct(row.get('val_top5', math.nan))}",
                  f"mca {_fmt_pct(row['val_mca'])}", f"val loss {row['val_loss']:.4f}"]
    parts += [f"lr {row['lr']:.2e}", f"{row['epoch_seconds']:.1f} s"]
    return "  ".join(parts)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    num_classes: int | None = None,
    ctx: DistributedContext | None = None,
    batch_size: int = 8,
    workers: int = 0,
    amp: str = "none",
    progress: bool = True,
    desc: str = "eval",
    channels_last: bool = False,
) -> tuple[dict[str, Any], ClassificationMeter]:
    """Evaluate ``model`` on ``dataset``: ``({"top1", "top5", "mca", "loss", "count"}, meter)``.

    Under torchrun each process evaluates its shard (no sample twice) and the counts are summed, so
    the metrics equal a single-process evaluation. ``meter.confusion`` holds the confusion matrix.

    Args:
        model: the classifier (wrapped in DDP or not).
        dataset: ``(video, label)`` items.
        num_classes: the class count (``None``: the model's).
        ctx: the process's place in a distributed run (``None``: one process on the model's device).
        batch_size: clips per batch (per process).
        workers: DataLoader worker processes.
        amp: mixed precision: ``"none"``, ``"bf16"`` or ``"fp16"``.
        progress: show a progress bar.
        desc: the progress bar's label.
        channels_last: feed the clips in the channels-last memory format.
    """
    from tqdm.auto import tqdm

    ctx = ctx or DistributedContext(device=next(model.parameters()).device)
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    model = _unwrap(model)
    num_classes = num_classes or _num_classes(model)
    meter = ClassificationMeter(num_classes)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), ctx.rank, ctx.world_size),
                        num_workers=workers, pin_memory=ctx.device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        for video, target in tqdm(loader, desc=desc, leave=False, disable=not (progress and ctx.is_main),
                                  dynamic_ncols=True):
            video = _to_device(video, ctx.device, channels_last)
            target = torch.as_tensor(target).to(ctx.device, non_blocking=True)
            with torch.autocast(ctx.device.type, dtype=_AMP_DTYPES.get(amp, torch.float32), enabled=amp != "none"):
                logits = model(video)
            logits = logits.float()
            meter.update(logits, target, F.cross_entropy(logits, target))
    finally:
        model.train(was_training)
    all_reduce_meter(meter, ctx)
    return meter.compute(), meter
