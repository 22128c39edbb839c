"""``taghead train``: train a backbone + head on video files or the synthetic benchmark (torchrun-aware)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..engine.builders import DataSplits
    from ..features import FeatureDataset

__all__ = ["register", "run"]

DESCRIPTION = """\
Train a video classifier: a registered model (--model) or a backbone + head (--backbone, --head), from random
weights, a pretrained backbone or a saved model (--init). The optimisation defaults follow the situation (see
"recipes" below); the recipe and where the weights come from are printed at the start. Writes metrics.csv,
curves.png, checkpoint_last.pt, checkpoint_best.pt and best/ (save_pretrained, its model card with the
validation metrics) to --output; an --output that holds an earlier run is refused unless --resume or
--overwrite. Under torchrun, runs DistributedDataParallel (NCCL on GPU, Gloo on CPU); --batch-size is per
process. With --features DIR (a cache of taghead extract-features) the head alone trains on the cached feature
maps, and the result is still a full model: the cache's backbone with its weights, frozen, and the trained head.
"""

EPILOG = """examples:
  taghead train --data synthetic --backbone taghead/tiny_video_cnn --head tag \\
      --head-kwargs embed_dim=64 --head-kwargs num_heads=4 --epochs 12 --batch-size 32 --output runs/tiny
  taghead train --model tag_r2plus1d_34_gym99 --pretrained-backbone --train-csv gym99_train.csv \\
      --val-csv gym99_val.csv --video-dir videos/ --epochs 60 --batch-size 8 --lr 1e-5 --amp bf16 \\
      --output runs/gym99                                 (the reference recipe: IG-65M backbone, new head)
  taghead train --data synthetic --backbone taghead/tiny_video_cnn --pretrained-backbone my_backbone.safetensors ...
  taghead train --data synthetic --head art --text-bank hashing:64 --head-kwargs embed_dim=64 --output runs/art
  torchrun --nproc_per_node 4 -m taghead.cli train ...     (DistributedDataParallel, one process per GPU)
  taghead train ... --output runs/gym99 --resume           (continue from runs/gym99/checkpoint_last.pt)
  taghead train ... --output runs/gym99 --overwrite        (start again: the earlier run's files are replaced)
  taghead train --features features/r2plus1d_18 --head tag --lr 1e-4 --epochs 30 --output runs/probe
                                     (a head on cached maps of taghead extract-features: DIR/train, DIR/val)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..engine.builders import add_data_arguments, add_model_arguments
    from ..engine.optim import OPTIMIZERS
    from ..engine.recipes import recipes_help
    from ._args import (
        add_command_parser,
        add_run_arguments,
        finite_float,
        non_negative_float,
        positive_float,
        positive_int,
        unit_float,
    )

    parser = add_command_parser(
        subparsers, "train", help="train a model (CSV, folder or synthetic data; DDP under torchrun)",
        description=DESCRIPTION, epilog=f"{recipes_help()}\n\n{EPILOG}",
    )
    add_model_arguments(parser)
    a = parser.add_argument_group("ART")
    a.add_argument("--text-bank", default=None, metavar="ENCODER",
                   help="ART heads only: build the text-constrained semantic bank from the training class names with "
                        "this text encoder (hashing:DIM, open_clip:MODEL[:PRETRAINED], hf:NAME; see "
                        "taghead.build_text_bank) and pass it as the head's text_bank")
    add_data_arguments(parser, train=True)
    f = parser.add_argument_group("cached feature maps")
    f.add_argument("--features", type=Path, default=None, metavar="DIR",
                   help="train the head on the feature maps cached by taghead extract-features in DIR (DIR/train, and "
                        "DIR/val when present) instead of videos; the model is the cache's frozen backbone with its "
                        "weights + --head; --backbone, --model or --init must match the cache")
    by_recipe = "default: by recipe, see 'recipes' below"
    g = parser.add_argument_group("optimisation (defaults by recipe: from scratch or fine-tuning, see below)")
    g.add_argument("--epochs", type=positive_int, default=None, help=f"passes over the training set ({by_recipe})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=by_recipe)
    g.add_argument("--lr", type=positive_float, default=None, help=f"peak learning rate of the head ({by_recipe})")
    g.add_argument("--weight-decay", type=non_negative_float, default=None, help=by_recipe)
    g.add_argument("--backbone-lr-scale", type=non_negative_float, default=1.0, help="backbone learning rate = lr x this")
    g.add_argument("--warmup-epochs", type=non_negative_float, default=None,
                   help=f"linear warm-up, then cosine decay per step ({by_recipe})")
    g.add_argument("--min-lr-ratio", type=unit_float, default=0.0, help="final learning rate / peak")
    g.add_argument("--accum-steps", type=positive_int, default=1, help="gradient accumulation micro-batches")
    g.add_argument("--clip-grad", type=positive_float, default=None, help="max global gradient norm")
    g.add_argument("--label-smoothing", type=finite_float, default=0.0)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--monitor", choices=("top1", "mca"), default="top1", help="metric of the best checkpoint")
    g.add_argument("--max-steps-per-epoch", type=positive_int, default=None,
                   help="cap on batches per epoch (quick runs)")
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
    r.add_argument("--overwrite", action="store_true",
                   help="an --output that holds an earlier run: replace that run's files (metrics.csv, checkpoints, "
                        "best/, curves.png, tensorboard/) instead of refusing")
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


def _check_no_video_options(args: argparse.Namespace) -> None:
    """``--features``: the data comes from the cache; video sources and their options are an error."""
    given = [flag for flag, value in (("--data", args.data), ("--train-csv", args.train_csv), ("--val-csv", args.val_csv),
                                      ("--train-dir", args.train_dir), ("--val-dir", args.val_dir),
                                      ("--video-dir", args.video_dir)) if value is not None]
    if args.hflip_p != 0.5:
        given.append("--hflip-p")
    if given:
        raise ValueError(f"--features reads the clips' feature maps from the cache; {', '.join(given)} cannot be "
                         "combined with it (the data and its augmentation were fixed at extraction: --views)")


def _open_feature_cache(root: Path, seed: int) -> DataSplits:
    """``root/train`` and, when present, ``root/val`` as feature datasets."""
    from ..engine.builders import DataSplits
    from ..features import FeatureDataset
    from ..features.cache import INDEX_JSON

    train = FeatureDataset(root, "train", seed=seed)
    val = FeatureDataset(root, "val", seed=seed) if (root / "val" / INDEX_JSON).is_file() else None
    if val is not None and val.class_names != train.class_names:
        raise ValueError(f"{root}: the val split's classes are not the train split's")
    return DataSplits(train, val, train.class_names)


def _model_from_cache(args: argparse.Namespace, train: FeatureDataset, head_kwargs: dict[str, Any],
                      backbone_kwargs: dict[str, Any], class_names: list[str]) -> torch.nn.Module:
    """``--features`` alone: the cache's backbone and weights + ``--head``; clip options must be the cache's."""
    from ..features.cache import FeatureCacheError

    if getattr(args, "pretrained_backbone", None) is not None:
        raise ValueError("--pretrained-backbone with --features needs the --backbone that claims those weights; without "
                         "both the model takes the cache's own backbone weights")
    cfg, cached_kwargs = train.data_config, train.spec.get("backbone_kwargs") or {}
    wrong = [f"{flag} {given} (the cache: {cached})" for flag, given, cached in (
        ("--num-frames", args.num_frames, cfg.num_frames), ("--crop-size", args.crop_size, cfg.crop_size),
        ("--backbone-kwargs", backbone_kwargs or None, cached_kwargs)) if given is not None and given != cached]
    if wrong:
        raise FeatureCacheError(f"{args.features} was made with another backbone or clip than given: {'; '.join(wrong)}")
    return train.build_model(args.head, label_names=class_names, **head_kwargs)


def _adopt_cached_backbone(model: torch.nn.Module, train: FeatureDataset, claims_weights: bool) -> None:
    """``--features`` with ``--backbone``/``--model``/``--init``: the model must claim the cache's backbone and data
    config; a freshly built backbone takes the cache's weights, one with its own weights (``--init``) must have them."""
    from ..features.cache import FeatureCacheError, cache_differences

    lines = cache_differences(train.info, model)
    if lines:
        raise FeatureCacheError(f"{train.root} was made with another backbone or data config than the model claims:\n  "
                                + "\n  ".join(lines))
    if not claims_weights:
        train.load_backbone_weights(model.backbone)
    model.backbone.freeze()
    model.spec["freeze_backbone"] = True


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..engine.builders import (
        build_datasets,
        build_model,
        class_names_for,
        clip_size,
        data_name,
        data_source,
        parse_kwargs,
        weights_origin,
    )
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.recipes import resolve_recipe
    from ..engine.trainer import LAST_CHECKPOINT, TrainConfig, Trainer, check_output_dir, seed_everything
    from ..weights import check_output_folder

    check_output_folder(args.output, "--output")
    head_kwargs = parse_kwargs(args.head_kwargs, "--head-kwargs")
    backbone_kwargs = parse_kwargs(args.backbone_kwargs, "--backbone-kwargs")
    recipe = resolve_recipe(args, head_kwargs)
    head_kwargs = recipe.head_kwargs
    o = recipe.options
    config = TrainConfig(
        epochs=o["epochs"], batch_size=args.batch_size, optimizer=o["optimizer"], lr=o["lr"],
        weight_decay=o["weight_decay"], backbone_lr_scale=args.backbone_lr_scale, warmup_epochs=o["warmup_epochs"],
        min_lr_ratio=args.min_lr_ratio, amp=args.amp, accum_steps=args.accum_steps, clip_grad=args.clip_grad,
        label_smoothing=args.label_smoothing, seed=args.seed, workers=args.workers, monitor=args.monitor,
        max_steps_per_epoch=args.max_steps_per_epoch, find_unused_parameters=args.find_unused_parameters,
        channels_last=args.channels_last,
        progress=not args.no_progress, tensorboard=not args.no_tensorboard,
    )
    check_output_dir(args.output, resume=args.resume is not None, overwrite=args.overwrite)  # before any work
    resume = None
    if args.resume is not None:
        resume = args.output / LAST_CHECKPOINT if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            raise FileNotFoundError(f"--resume: checkpoint {str(resume)!r} does not exist")
    source = "features" if args.features is not None else data_source(args)
    num_frames, crop_size = clip_size(args, source)
    if source == "features":
        _check_no_video_options(args)

    if args.text_bank is not None:
        if "text_bank" in head_kwargs:
            raise ValueError("give the text bank with --text-bank ENCODER or in --head-kwargs, not both")
        if args.model is None and args.init is None:
            _check_art_head(args.head)

    ctx = init_distributed(args.device)
    if source == "synthetic" and args.hflip_p != 0.5 and ctx.is_main:
        print("note: --hflip-p has no effect on synthetic data (rendered clips are not augmented)")
    if ctx.is_main:
        print(recipe.describe(), flush=True)
    try:
        cache = _open_feature_cache(args.features, args.seed) if source == "features" else None
        class_names = cache.train.class_names if cache is not None else class_names_for(args)
        text_bank = None
        if args.text_bank is not None:
            from ..text import build_text_bank

            text_bank = build_text_bank(class_names, encoder=args.text_bank, progress=False)
            if args.model is None and args.init is None:
                head_kwargs["text_bank"] = text_bank
        seed_everything(args.seed)  # the same initial weights in every process (DDP also broadcasts rank 0's)
        if cache is not None and args.model is None and args.backbone is None and args.init is None:
            model = _model_from_cache(args, cache.train, head_kwargs, backbone_kwargs, class_names)
        else:
            if cache is not None and args.init is None:  # the clip the cache was made for, unless given
                num_frames = num_frames or cache.train.data_config.num_frames
                crop_size = crop_size or cache.train.data_config.crop_size
            model = build_model(num_classes=len(class_names), model=args.model, backbone=args.backbone, head=args.head,
                                head_kwargs=head_kwargs, backbone_kwargs=backbone_kwargs, num_frames=num_frames,
                                crop_size=crop_size, freeze_backbone=args.freeze_backbone or cache is not None,
                                label_names=class_names, init=args.init,
                                pretrained_backbone=args.pretrained_backbone, bn_momentum=args.bn_momentum,
                                bn_eps=args.bn_eps, freeze_bn_stats=args.freeze_bn_stats)
            if cache is not None:  # a backbone with weights of its own (--init, --pretrained-backbone) must have the cache's
                claims = args.init is not None or getattr(args, "pretrained_backbone", None) is not None
                _adopt_cached_backbone(model, cache.train, claims_weights=claims)
        if text_bank is not None and (args.model or args.init):
            _set_model_text_bank(model, text_bank, f"--model {args.model}" if args.model else f"--init {args.init}")
        if ctx.is_main:
            print(f"resuming from {resume}: the weights of that checkpoint" if resume is not None else
                  weights_origin(model, init=args.init, seed=args.seed, features=args.features), flush=True)
        if args.sync_bn:
            if ctx.device.type != "cuda":
                raise ValueError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        splits = cache or build_datasets(args, model.data_config, class_names, progress=ctx.is_main and not args.no_progress)
        trainer = Trainer(model, splits.train, splits.val, config, output_dir=args.output, ctx=ctx,
                          class_names=class_names, overwrite=args.overwrite, data_name=data_name(args))
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
