"""``taghead extract-features``: run a frozen backbone once over the training (and validation) videos and keep its
feature maps, so that ``taghead train --features DIR`` trains heads without decoding or running the backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]

DESCRIPTION = """\
Run a backbone (a registered --backbone, the backbone of a registered --model, or of a saved --init model), frozen
and in eval mode, over the training set and, when given, the validation set, and write its feature maps [C, T, H, W]
with the labels and source file names to --output: DIR/train/ and DIR/val/ (safetensors shards, float16 unless
--dtype float32), DIR/cache.json (the backbone's spec, data config, weights provenance and fingerprint) and
DIR/backbone.safetensors (the backbone's weights, so that the trained result is a full model). A killed extraction
resumes where it stopped when run again with the same options. Under torchrun each process extracts its part.
Unreadable videos are skipped and listed. With --views N every training clip is stored N times with the training
transform (random crop and flip), and training draws one view per clip and epoch; with --views 1 (default) the
training clips get the evaluation transform (centre crop). Then: taghead train --features DIR --head ...
"""

EPILOG = """examples:
  taghead extract-features --backbone torchvision/r2plus1d_18 --train-dir videos/train --val-dir videos/val \\
      --output features/r2plus1d_18 --batch-size 8 --workers 2
  taghead train --features features/r2plus1d_18 --head tag --lr 1e-4 --epochs 30 --output runs/probe-tag
  taghead train --features features/r2plus1d_18 --head meanpool --lr 1e-3 --epochs 30 --output runs/probe-mean
  taghead extract-features --backbone taghead/tiny_video_cnn --data synthetic --output features/tiny
  taghead extract-features ... --views 4            (4 augmented views per training clip)
  torchrun --nproc_per_node 4 -m taghead.cli extract-features ...   (each process extracts a quarter)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..engine.builders import add_data_arguments, add_model_arguments
    from ..features.cache import FEATURE_DTYPES
    from ._args import add_command_parser, add_run_arguments, positive_int

    parser = add_command_parser(
        subparsers, "extract-features", help="run a frozen backbone once and cache its feature maps (for train --features)",
        description=DESCRIPTION, epilog=EPILOG,
    )
    add_model_arguments(parser)
    parser.set_defaults(head=None)  # the head is chosen when training on the cache
    add_data_arguments(parser, train=True)
    g = parser.add_argument_group("extraction")
    g.add_argument("--output", type=Path, default=Path("features"), help="cache folder (default: features)")
    g.add_argument("--views", type=positive_int, default=1,
                   help="augmented views per training clip (training transform); 1 = one centre-cropped view")
    g.add_argument("--dtype", choices=sorted(FEATURE_DTYPES), default="float16",
                   help="stored precision of the maps (default float16: half the disk)")
    g.add_argument("--shard-size", type=positive_int, default=None,
                   help="clips per shard and process (default 256, fewer above 256 MiB): the most a kill loses")
    g.add_argument("--seed", type=int, default=42,
                   help="seeds the model (a backbone without pretrained weights is random) and the views' transforms")
    r = parser.add_argument_group("run")
    add_run_arguments(r, batch_size_help="clips per backbone call and process (default 8)",
                      amp_help="autocast the backbone (GPU); the maps then differ slightly from float32",
                      workers_help="DataLoader worker processes (decoding in parallel)", progress_help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("extract-features", _run, args)


def _run(args: argparse.Namespace) -> int:
    from ..engine import builders
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.trainer import seed_everything
    from ..features import extract_features
    from ..weights import check_output_folder

    if args.head is not None or args.head_kwargs:
        raise ValueError("--head and --head-kwargs do not apply to extract-features: the head is chosen when training "
                         "on the cache (taghead train --features DIR --head ...)")
    check_output_folder(args.output, "--output")
    source = builders.data_source(args)
    if source == "synthetic" and args.views > 1:
        raise ValueError("--views > 1 needs video files: the synthetic clips are rendered without augmentation, so every "
                         "view would be the same")
    num_frames, crop_size = builders.clip_size(args, source)
    extra = {}
    if getattr(args, "pretrained_backbone", None) is not None:  # --pretrained-backbone, where this build has it
        extra["pretrained_backbone"] = args.pretrained_backbone

    ctx = init_distributed(args.device)
    try:
        class_names = builders.class_names_for(args)
        seed_everything(args.seed)  # as taghead train does: the same random backbone for the same seed
        model = builders.build_model(
            num_classes=len(class_names), model=args.model, backbone=args.backbone, head="meanpool",
            backbone_kwargs=builders.parse_kwargs(args.backbone_kwargs, "--backbone-kwargs"), num_frames=num_frames,
            crop_size=crop_size, freeze_backbone=True, label_names=class_names, init=args.init, **extra)
        progress = ctx.is_main and not args.no_progress
        splits = builders.build_datasets(args, model.data_config, class_names, progress=progress, augment=args.views > 1)
        for split, dataset, views in (("train", splits.train, args.views), ("val", splits.val, 1)):
            if dataset is not None:
                extract_features(model, dataset, args.output, split=split, views=views, dtype=args.dtype,
                                 batch_size=args.batch_size, workers=args.workers, shard_size=args.shard_size,
                                 seed=args.seed, amp=args.amp, ctx=ctx, progress=progress)
        if ctx.is_main:
            print(f"done. Train heads on the cache: taghead train --features {args.output} --head tag ...")
    finally:
        cleanup_distributed(ctx)
    return 0
