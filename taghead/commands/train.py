"""``taghead train``: train a backbone + head on video files or the synthetic benchmark (torchrun-aware)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["register", "run"]

DESCRIPTION = """\
Train a video classifier: a registered model (--model) or a backbone + head (--backbone, --head). Writes
metrics.csv, curves.png, checkpoint_last.pt, checkpoint_best.pt and best/ (save_pretrained) to --output. Under
torchrun, runs DistributedDataParallel (NCCL on GPU, Gloo on CPU); --batch-size is per process.
"""

EPILOG = """examples:
  taghead train --data synthetic --backbone taghead/tiny_video_cnn --head tag \\
      --head-kwargs embed_dim=64 --head-kwargs depth=1 --head-kwargs num_heads=4 \\
      --optimizer adamw --lr 1e-3 --epochs 12 --batch-size 32 --output runs/tiny
  taghead train --model tag_r2plus1d_34_gym99 --pretrained-backbone --train-csv gym99_train.csv \\
      --val-csv gym99_val.csv --video-dir videos/ --epochs 60 --batch-size 8 --lr 1e-5 --amp bf16 \\
      --output runs/gym99                                 (the reference recipe: IG-65M backbone, new head)
  taghead train --data synthetic --backbone taghead/tiny_video_cnn --pretrained-backbone my_backbone.safetensors ...
  taghead train --data synthetic --head art --text-bank hashing:64 --head-kwargs embed_dim=64 --output runs/art
  torchrun --nproc_per_node 4 -m taghead.cli train ...     (DistributedDataParallel, one process per GPU)
  taghead train ... --output runs/gym99 --resume           (continue from runs/gym99/checkpoint_last.pt)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..engine.builders import add_data_arguments, add_model_arguments
    from ..engine.optim import OPTIMIZERS
    from ._args import add_command_parser, add_run_arguments

    parser = add_command_parser(
        subparsers, "train", help="train a model (CSV, folder or synthetic data; DDP under torchrun)",
        description=DESCRIPTION, epilog=EPILOG,
    )
    add_model_arguments(parser)
    a = parser.add_argument_group("ART")
    a.add_argument("--text-bank", default=None, metavar="ENCODER",
                   help="ART heads only: build the text-constrained semantic bank from the training class names with "
                        "this text encoder (hashing:DIM, open_clip:MODEL[:PRETRAINED], hf:NAME; see "
                        "taghead.build_text_bank) and pass it as the head's text_bank")
    add_data_arguments(parser, train=True)
    g = parser.add_argument_group("optimisation (defaults: the reference recipe)")
    g.add_argument("--epochs", type=int, default=60)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    g.add_argument("--lr", type=float, default=1e-5, help="peak learning rate (head)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--backbone-lr-scale", type=float, default=1.0, help="backbone learning rate = lr x this")
    g.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up, then cosine decay per step")
    g.add_argument("--min-lr-ratio", type=float, default=0.0, help="final learning rate / peak")
    g.add_argument("--accum-steps", type=int, default=1, help="gradient accumulation micro-batches")
    g.add_argument("--clip-grad", type=float, default=None, help="max global gradient norm")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--monitor", choices=("top1", "mca"), default="top1", help="metric of the best checkpoint")
    g.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on batches per epoch (quick runs)")
    g.add_argument("--find-unused-parameters", action="store_true", help="DDP option for heads with unused branches")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun (CUDA only)")
    g.add_argument("--channels-last", action="store_true",
                   help="channels_last_3d memory format (faster 3D convolutions on CPUs with oneDNN)")
    r = parser.add_argument_group("run")
    add_run_arguments(r, batch_size_help="clips per process and step (default 8)",
                      amp_help="automatic mixed precision", workers_help="DataLoader worker processes",
                      progress_help="no progress bars")
    r.add_argument("--output", type=Path, default=Path("runs/train"), help="output folder (default: runs/train)")
    r.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue a run: a checkpoint file, or without value OUTPUT/checkpoint_last.pt")
    r.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("train", _run, args)


def _check_art_head(head: str) -> None:
    """``--text-bank`` with ``--backbone``/``--head``: the head must be ART (checked before anything is built)."""
    from ..heads import ARTHead
    from ..heads.registry import get_head_class

    cls = get_head_class(head)
    if not (isinstance(cls, type) and issubclass(cls, ARTHead)):
        raise ValueError(f"--text-bank needs an ART head (--head art, or a --model whose head is ART), got --head {head}")


def _set_model_text_bank(model: torch.nn.Module, bank: torch.Tensor, name: str) -> None:
    """``--text-bank`` with a registered ``--model``: give its ART head the bank."""
    from ..heads import ARTHead

    head = getattr(model, "head", None)
    if not isinstance(head, ARTHead):
        raise ValueError(f"--text-bank needs an ART head (--head art, or a --model or --init whose head is ART), but the "
                         f"head of {name} is {type(head).__name__}")
    head.set_text_bank(bank)


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..engine.builders import (
        SYNTHETIC_DEFAULTS,
        build_datasets,
        build_model,
        class_names_for,
        data_source,
        parse_kwargs,
    )
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.trainer import LAST_CHECKPOINT, TrainConfig, Trainer, seed_everything

    head_kwargs = parse_kwargs(args.head_kwargs, "--head-kwargs")
    backbone_kwargs = parse_kwargs(args.backbone_kwargs, "--backbone-kwargs")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, backbone_lr_scale=args.backbone_lr_scale, warmup_epochs=args.warmup_epochs,
        min_lr_ratio=args.min_lr_ratio, amp=args.amp, accum_steps=args.accum_steps, clip_grad=args.clip_grad,
        label_smoothing=args.label_smoothing, seed=args.seed, workers=args.workers, monitor=args.monitor,
        max_steps_per_epoch=args.max_steps_per_epoch, find_unused_parameters=args.find_unused_parameters,
        channels_last=args.channels_last,
        progress=not args.no_progress, tensorboard=not args.no_tensorboard,
    )
    resume = None
    if args.resume is not None:
        resume = args.output / LAST_CHECKPOINT if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            raise FileNotFoundError(f"--resume: checkpoint {str(resume)!r} does not exist")
    source = data_source(args)
    num_frames, crop_size = args.num_frames, args.crop_size
    if source == "synthetic" and args.init is None:  # --init: the saved model's clip size
        num_frames = num_frames or SYNTHETIC_DEFAULTS["num_frames"]
        crop_size = crop_size or SYNTHETIC_DEFAULTS["crop_size"]

    if args.text_bank is not None:
        if "text_bank" in head_kwargs:
            raise ValueError("give the text bank with --text-bank ENCODER or in --head-kwargs, not both")
        if args.model is None and args.init is None:
            _check_art_head(args.head)

    ctx = init_distributed(args.device)
    if source == "synthetic" and args.hflip_p != 0.5 and ctx.is_main:
        print("note: --hflip-p has no effect on synthetic data (rendered clips are not augmented)")
    try:
        class_names = class_names_for(args)
        text_bank = None
        if args.text_bank is not None:
            from ..text import build_text_bank

            text_bank = build_text_bank(class_names, encoder=args.text_bank, progress=False)
            if args.model is None and args.init is None:
                head_kwargs["text_bank"] = text_bank
        seed_everything(args.seed)  # the same initial weights in every process (DDP also broadcasts rank 0's)
        model = build_model(num_classes=len(class_names), model=args.model, backbone=args.backbone, head=args.head,
                            head_kwargs=head_kwargs, backbone_kwargs=backbone_kwargs, num_frames=num_frames,
                            crop_size=crop_size, freeze_backbone=args.freeze_backbone, label_names=class_names,
                            init=args.init, pretrained_backbone=args.pretrained_backbone,
                            bn_momentum=args.bn_momentum, bn_eps=args.bn_eps, freeze_bn_stats=args.freeze_bn_stats)
        if text_bank is not None and (args.model or args.init):
            _set_model_text_bank(model, text_bank, f"--model {args.model}" if args.model else f"--init {args.init}")
        if args.sync_bn:
            if ctx.device.type != "cuda":
                raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        splits = build_datasets(args, model.data_config, class_names, progress=ctx.is_main and not args.no_progress)
        trainer = Trainer(model, splits.train, splits.val, config, output_dir=args.output, ctx=ctx,
                          class_names=class_names)
        if resume is not None:
            trainer.resume(resume)
        history = trainer.fit()
        if ctx.is_main and history:
            last = history[-1]
            summary = f"done: {len(history)} epochs"
            if "val_top1" in last:
                summary += (f"; last val Top-1 {100 * last['val_top1']:.1f}%, MCA {100 * last['val_mca']:.1f}%; "
                            f"best {config.monitor} {100 * (trainer.best_metric or 0):.1f}%")
            print(f"{summary}. Outputs in {args.output}")
    finally:
        cleanup_distributed(ctx)
    return 0
