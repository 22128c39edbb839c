"""What the ``taghead`` commands share: typed ``key=value`` options, building a model and the datasets."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..config import DataConfig

__all__ = ["parse_kwargs", "build_model", "DataSplits", "build_datasets", "add_data_arguments", "add_model_arguments",
           "SYNTHETIC_DEFAULTS", "weights_origin", "data_name"]

#: Clip and set sizes of ``--data synthetic`` unless given (``num_classes=None``: all the benchmark's classes).
SYNTHETIC_DEFAULTS = dict(num_frames=16, crop_size=64, train_samples=1200, val_samples=300, num_classes=None)


def _parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, null, lists, objects), the plain string otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kwargs(items: Sequence[str] | None, what: str = "--head-kwargs") -> dict[str, Any]:
    """Keyword arguments from repeated ``key=value`` items and/or JSON objects.

    ``["embed_dim=64", "dropout=0.1", "use_graph=false"]`` -> ``{"embed_dim": 64, "dropout": 0.1,
    "use_graph": False}``; ``['{"embed_dim": 64}']`` -> the same dict. Values are typed as JSON
    (``1`` int, ``1.0`` float, ``true``, ``null``, ``[1, 2]``); anything else stays a string. A key
    given twice is an error.
    """
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if not key.isidentifier():
            raise ValueError(f"{what}: {key!r} is not a valid argument name")
        if key in out:
            raise ValueError(f"{what}: {key!r} is given twice")
        out[key] = value

    for item in items or ():
        text = item.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{what}: {text!r} is not valid JSON ({err})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{what}: expected a JSON object, got {type(obj).__name__}")
            for key, value in obj.items():
                put(str(key), value)
        elif "=" in text:
            key, _, value = text.partition("=")
            put(key.strip(), _parse_value(value.strip()))
        else:
            raise ValueError(f"{what}: expected key=value or a JSON object, got {item!r}")
    return out


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from ..commands._args import positive_int

    g = parser.add_argument_group("model")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--model", default=None,
                       help="a registered model name (taghead.list_models(), e.g. tag_r2plus1d_34_gym99)")
    which.add_argument("--backbone", default=None,
                       help="a registered backbone name (taghead.list_backbones(), or timm/<name>), combined with "
                            "--head (default when neither is given: taghead/tiny_video_cnn)")
    which.add_argument("--init", default=None, metavar="DIR_OR_REPO",
                       help="start from a saved model (a save_pretrained folder, e.g. the best/ of a run or the "
                            "output of taghead convert, or a Hub repo id): its architecture, data config and "
                            "weights; a different class count re-initialises the class-dependent weights")
    g.add_argument("--head", default="tag", help="registered head name for --backbone (taghead.list_heads())")
    g.add_argument("--head-kwargs", action="append", metavar="K=V|JSON", default=None,
                   help="head options, repeated key=value (typed as JSON: 64, 0.1, true) or a JSON object, "
                        "e.g. --head-kwargs embed_dim=64 --head-kwargs depth=1")
    g.add_argument("--backbone-kwargs", action="append", metavar="K=V|JSON", default=None,
                   help="backbone builder options (same syntax), e.g. width=16")
    g.add_argument("--num-frames", type=positive_int, default=None, help="frames per clip (default: the backbone's)")
    g.add_argument("--crop-size", type=positive_int, default=None, help="crop side in pixels (default: the backbone's)")
    g.add_argument("--freeze-backbone", action="store_true", help="train the head only (backbone BN statistics fixed)")
    g.add_argument("--pretrained-backbone", nargs="?", const=True, default=None, metavar="TAG|FILE|hf-hub:REPO",
                   help="start the backbone of --backbone or --model from published weights (without a value: the "
                        "backbone's default tag, e.g. IG-65M for the reference presets, or the repository of "
                        "--backbone hf-hub:REPO; or a tag, see `taghead weights list`) or from a local weights file "
                        "(.pth, .pt, .pyth, .safetensors); for the transformers/... backbones also a Hugging Face "
                        "Hub repository hf-hub:OWNER/REPO or a local folder of its files. The head starts fresh. "
                        "Downloads go to the torch.hub / Hugging Face caches")
    b = parser.add_argument_group("backbone BatchNorm (default: as the architecture and its weights set it)")
    b.add_argument("--bn-momentum", type=float, default=None, metavar="M",
                   help="momentum of every backbone BatchNorm layer, in PyTorch's sense (weight of the current "
                        "batch); e.g. 0.1, where the IG-65M R(2+1)D-34 has 0.9 (the reference keeps 0.9)")
    b.add_argument("--bn-eps", type=float, default=None, metavar="EPS", help="eps of every backbone BatchNorm layer")
    b.add_argument("--freeze-bn-stats", action="store_true",
                   help="keep the backbone's BatchNorm running statistics fixed while training (for small batches)")


def _weights_name(weights: Any) -> str:
    """A spec's ``backbone_weights`` entry (a tag or file name, or a dict naming one) as text."""
    if isinstance(weights, dict):
        for key in ("tag", "file", "name", "source"):
            if weights.get(key):
                return str(weights[key])
        return json.dumps(weights, sort_keys=True)
    return str(weights)


def weights_origin(model: nn.Module, *, init: str | None = None, seed: int | None = None,
                   features: str | os.PathLike | None = None) -> str:
    """Where the weights a run starts from come from, as the start-up line of ``taghead train`` says it:
    random, a pretrained backbone (the spec's ``backbone_weights``), a saved model (``--init``), or the backbone
    of a feature cache (``--features``: the weights its maps were extracted with)."""
    spec = getattr(model, "spec", None) or {}
    backbone = spec.get("backbone") or type(getattr(model, "backbone", model)).__name__
    seeded = f" (seed {seed})" if seed is not None else ""
    if init is not None:
        return f"weights: from the saved model --init {init} (backbone and head)"
    pretrained = spec.get("backbone_weights")
    if features is not None:
        kind = f"pretrained ({_weights_name(pretrained)})" if pretrained else "as extracted"
        return (f"weights: backbone {backbone} from the feature cache {os.fspath(features)} ({kind}, frozen); head "
                f"random{seeded}")
    if pretrained:
        return (f"weights: backbone {backbone} pretrained ({_weights_name(pretrained)}); head random"
                f"{seeded}")
    return f"weights: random{seeded}, backbone {backbone} and head (nothing pretrained)"


def data_name(args: argparse.Namespace) -> str:
    """The training data of a ``taghead train`` command line, for the model card of ``best/``: ``taghead-synthetic``,
    the split CSV's name, or the last two parts of ``--train-dir`` or of ``--features`` (no full local path: a
    ``config.json`` travels)."""
    folder = getattr(args, "features", None)
    if folder is None:
        source = data_source(args)
        if source == "synthetic":
            return "taghead-synthetic"  # taghead.data.SyntheticFineGrainedDataset
        if source == "csv":
            return Path(args.train_csv).stem
        folder = args.train_dir
    return "/".join(Path(folder).resolve().parts[-2:])


def build_model(
    *,
    num_classes: int,
    model: str | None = None,
    backbone: str | None = None,
    head: str = "tag",
    head_kwargs: dict[str, Any] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    num_frames: int | None = None,
    crop_size: int | None = None,
    freeze_backbone: bool = False,
    label_names: list[str] | None = None,
    init: str | None = None,
    pretrained_backbone: bool | str | None = None,
    bn_momentum: float | None = None,
    bn_eps: float | None = None,
    freeze_bn_stats: bool = False,
) -> nn.Module:
    """A :class:`~taghead.VideoClassifier` from a registered model name, a backbone name + a head name, or
    (``init``) a saved model folder or Hub repo whose weights it loads.

    ``pretrained_backbone`` (``--pretrained-backbone``: ``True``, a tag, a file, a ``hf-hub:`` repository or
    a folder) starts the backbone of
    ``model`` or ``backbone`` from pretrained weights; ``bn_momentum``, ``bn_eps`` and ``freeze_bn_stats``
    set the backbone's BatchNorm layers (:func:`taghead.wrap_backbone`).
    """
    head_kwargs = dict(head_kwargs or {})
    batchnorm = dict(bn_momentum=bn_momentum, bn_eps=bn_eps, freeze_bn_stats=freeze_bn_stats)
    if init is not None:
        if pretrained_backbone is not None:
            raise ValueError(f"--init {init} starts from a saved model, backbone weights included; "
                             "--pretrained-backbone is for a new model (--model or --backbone): drop one of them")
        return _from_saved(init, num_classes, head_kwargs=head_kwargs, backbone_kwargs=backbone_kwargs,
                           num_frames=num_frames, crop_size=crop_size, freeze_backbone=freeze_backbone,
                           label_names=label_names, **batchnorm)
    if model is not None:
        from ..models.registry import create_model

        if backbone_kwargs:
            raise ValueError("--backbone-kwargs applies to --backbone, not to a registered --model")
        extra: dict[str, Any] = dict(head_kwargs)
        if num_frames is not None:
            extra["num_frames"] = num_frames
        if crop_size is not None:
            extra["crop_size"] = crop_size
        if freeze_backbone:
            extra["freeze_backbone"] = True
        extra.update({k: v for k, v in batchnorm.items() if v not in (None, False)})
        net = create_model(model, num_classes=num_classes, pretrained_backbone=pretrained_backbone, **extra)
        if label_names is not None:
            net.label_names = list(label_names)
        return net
    from ..models.wrap import wrap_backbone

    return wrap_backbone(backbone or "taghead/tiny_video_cnn", num_classes, head=head, num_frames=num_frames,
                         crop_size=crop_size, freeze_backbone=freeze_backbone,
                         backbone_kwargs=backbone_kwargs or None, label_names=label_names,
                         pretrained_backbone=pretrained_backbone, **batchnorm, **head_kwargs)


def _from_saved(init: str, num_classes: int, *, head_kwargs: dict[str, Any], backbone_kwargs: dict[str, Any] | None,
                num_frames: int | None, crop_size: int | None, freeze_backbone: bool,
                label_names: list[str] | None, bn_momentum: float | None, bn_eps: float | None,
                freeze_bn_stats: bool) -> nn.Module:
    """``--init``: the saved model, with ``num_classes`` outputs; architecture options are not accepted."""
    given = [flag for flag, value in (("--head-kwargs", head_kwargs), ("--backbone-kwargs", backbone_kwargs),
                                      ("--num-frames", num_frames), ("--crop-size", crop_size)) if value]
    if given:
        raise ValueError(f"--init {init}: the saved model fixes the architecture and data config; "
                         f"{', '.join(given)} cannot change them (drop {'them' if len(given) > 1 else 'it'})")
    from ..models.classifier import VideoClassifier
    from ..models.loading import from_pretrained

    net = from_pretrained(init, num_classes=num_classes)
    if not isinstance(net, VideoClassifier):
        raise ValueError(f"--init {init}: expected a full model (backbone + head) saved with save_pretrained, "
                         f"got a {type(net).__name__} checkpoint")
    _override_batchnorm(net, bn_momentum, bn_eps, freeze_bn_stats)
    if freeze_backbone:
        net.backbone.freeze()
        net.spec["freeze_backbone"] = True
    if label_names is not None:
        net.label_names = list(label_names)
    return net.train()


def _override_batchnorm(net: nn.Module, momentum: float | None, eps: float | None, freeze_stats: bool) -> None:
    """``--bn-*`` with ``--init``: change the saved model's backbone BatchNorm settings and record them in its spec."""
    from ..models.spec import apply_batchnorm_spec, batchnorm_spec

    change = batchnorm_spec(momentum, eps, freeze_stats)
    if change is None:
        return
    saved = net.spec.get("batchnorm") or {"momentum": None, "eps": None, "freeze_stats": False}
    merged = {key: saved[key] if change[key] in (None, False) else change[key] for key in saved}
    apply_batchnorm_spec(net.backbone, merged)
    net.spec["batchnorm"] = merged


def add_data_arguments(parser: argparse.ArgumentParser, *, train: bool = True) -> None:
    from ..commands._args import non_negative_int, positive_int, unit_float

    g = parser.add_argument_group("data")
    if train:
        g.add_argument("--data", choices=("synthetic",), default=None,
                       help="the synthetic fine-grained benchmark (rendered in memory) instead of video files")
        g.add_argument("--train-csv", type=Path, default=None,
                       help="reference split CSV (FileName, Class, TotalFrames, ClassEncoded) of the training set")
        g.add_argument("--val-csv", type=Path, default=None, help="split CSV of the validation set")
        g.add_argument("--train-dir", type=Path, default=None, help="training videos, one folder per class")
        g.add_argument("--val-dir", type=Path, default=None, help="validation videos, one folder per class")
        g.add_argument("--hflip-p", type=unit_float, default=0.5,
                       help="horizontal flip probability of the training transforms (0 when left/right matter)")
        g.add_argument("--train-samples", type=positive_int, default=SYNTHETIC_DEFAULTS["train_samples"],
                       help="synthetic: training clips")
        g.add_argument("--val-samples", type=non_negative_int, default=SYNTHETIC_DEFAULTS["val_samples"],
                       help="synthetic: validation clips (0: none)")
        g.add_argument("--num-classes", type=positive_int, default=SYNTHETIC_DEFAULTS["num_classes"],
                       help="synthetic: number of classes (default: all of taghead.data.SYNTHETIC_CLASSES)")
    else:
        g.add_argument("--data", choices=("synthetic",), default=None, help="the synthetic benchmark's split")
        g.add_argument("--csv", type=Path, default=None, help="reference split CSV of the evaluation set")
        g.add_argument("--dir", type=Path, default=None, help="evaluation videos, one folder per class")
        g.add_argument("--samples", type=positive_int, default=SYNTHETIC_DEFAULTS["val_samples"], help="synthetic: clips")
        g.add_argument("--split", choices=("train", "val", "test"), default="val", help="synthetic: split")
    g.add_argument("--video-dir", type=Path, default=None, help="root of the videos listed in the CSV files "
                   "(<video-dir>/<Class>/<FileName>)")
    g.add_argument("--allow-outside-video-dir", action="store_true",
                   help="accept CSV lines whose Class or FileName leads outside --video-dir (an absolute path or ..)")
    g.add_argument("--data-seed", type=int, default=0, help="synthetic: dataset seed")


@dataclass
class DataSplits:
    """Training and validation datasets and their class names."""

    train: Dataset | None
    val: Dataset | None
    class_names: list[str]


def _probe_class_names(args: argparse.Namespace) -> list[str]:
    """Class names of the training source, before the model (and thus the data config) exists."""
    from ..data import VideoClipDataset

    probe = DataConfig()
    if args.train_csv is not None:
        if args.video_dir is None:
            raise ValueError("--train-csv needs --video-dir (videos are at <video-dir>/<Class>/<FileName>)")
        return VideoClipDataset.from_csv(args.train_csv, args.video_dir, probe,
                                         allow_outside_video_dir=args.allow_outside_video_dir).class_names
    return VideoClipDataset.from_folder(args.train_dir, probe).class_names


def data_source(args: argparse.Namespace) -> str:
    """``"synthetic"``, ``"csv"`` or ``"folder"``; exactly one source must be given."""
    sources = [name for name, given in (("synthetic", args.data == "synthetic"), ("csv", args.train_csv is not None),
                                        ("folder", args.train_dir is not None)) if given]
    if len(sources) != 1:
        raise ValueError("give exactly one training data source: --data synthetic, --train-csv CSV --video-dir DIR, "
                         f"or --train-dir DIR; got {sources or 'none'}")
    return sources[0]


def clip_size(args: argparse.Namespace, source: str) -> tuple[int | None, int | None]:
    """``(--num-frames, --crop-size)``, with the synthetic clip's sizes when ``source`` is ``"synthetic"`` and no
    saved model (``--init``, which fixes its own clip) is given; ``None`` leaves the backbone's default."""
    num_frames, crop_size = args.num_frames, args.crop_size
    if source == "synthetic" and args.init is None:
        num_frames = num_frames or SYNTHETIC_DEFAULTS["num_frames"]
        crop_size = crop_size or SYNTHETIC_DEFAULTS["crop_size"]
    return num_frames, crop_size


def class_names_for(args: argparse.Namespace) -> list[str]:
    """The training classes (decides ``num_classes`` of the model)."""
    if data_source(args) == "synthetic":
        from ..data import SYNTHETIC_CLASSES

        n = len(SYNTHETIC_CLASSES) if args.num_classes is None else args.num_classes
        if not 2 <= n <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"--num-classes must be in [2, {len(SYNTHETIC_CLASSES)}] for synthetic data, got {n}")
        return [name for name, _ in SYNTHETIC_CLASSES[:n]]
    return _probe_class_names(args)


def build_datasets(args: argparse.Namespace, data_config: DataConfig, class_names: list[str],
                   progress: bool = True, augment: bool = True) -> DataSplits:
    """The training and validation sets of a ``taghead train`` command line, for the model's data config.

    ``augment=False`` gives video files the evaluation transform in the training set too (centre crop, no
    flip), as ``taghead extract-features`` stores one view per clip.
    """
    from ..data import SyntheticFineGrainedDataset, VideoClipDataset

    source = data_source(args)
    if source == "synthetic":
        from .datasets import RenderedClips

        sets = []
        for split, n in (("train", args.train_samples), ("val", args.val_samples)):
            if n <= 0:
                sets.append(None)
                continue
            synthetic = SyntheticFineGrainedDataset(n, data_config.num_frames, data_config.crop_size, len(class_names),
                                                    args.data_seed, split, data_config=data_config)
            sets.append(RenderedClips.render(synthetic, progress=progress, desc=f"rendering {split} clips"))
        if sets[0] is None:
            raise ValueError("--train-samples must be positive")
        return DataSplits(sets[0], sets[1], class_names)
    if (source == "csv" and args.val_dir is not None) or (source == "folder" and args.val_csv is not None):
        raise ValueError("use --val-csv with --train-csv and --val-dir with --train-dir")
    kwargs = dict(hflip_p=args.hflip_p)
    if source == "csv":
        outside = dict(allow_outside_video_dir=args.allow_outside_video_dir)
        train = VideoClipDataset.from_csv(args.train_csv, args.video_dir, data_config, augment, class_names=class_names,
                                          **outside, **kwargs)
        # The model's class count (from the training split) fixes the validation labels' range; the
        # validation split may lack classes (a subset of a validation file): MCA counts only those present.
        val = (VideoClipDataset.from_csv(args.val_csv, args.video_dir, data_config, False, class_names=class_names,
                                         **outside)
               if args.val_csv is not None else None)
    else:
        train = VideoClipDataset.from_folder(args.train_dir, data_config, augment, class_names=class_names, **kwargs)
        val = (VideoClipDataset.from_folder(args.val_dir, data_config, False, class_names=class_names)
               if args.val_dir is not None else None)
    return DataSplits(train, val, class_names)


def build_eval_dataset(args: argparse.Namespace, data_config: DataConfig, class_names: list[str] | None,
                       progress: bool = True, num_classes: int | None = None) -> Dataset:
    """The evaluation set of ``taghead eval``: ``--csv``/``--video-dir``, ``--dir`` or ``--data synthetic``.

    ``num_classes`` (the model's) fixes the class count of a ``--csv`` split, which may lack classes;
    its labels must lie in ``[0, num_classes)``.
    """
    from ..data import SyntheticFineGrainedDataset, VideoClipDataset

    given = [n for n, v in (("--data synthetic", args.data), ("--csv", args.csv), ("--dir", args.dir)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one evaluation set: --csv CSV --video-dir DIR, --dir DIR or --data synthetic; "
                         f"got {given or 'none'}")
    if args.data == "synthetic":
        from ..data import SYNTHETIC_CLASSES
        from .datasets import RenderedClips

        n_classes = len(class_names) if class_names else num_classes or len(SYNTHETIC_CLASSES)
        if not 2 <= n_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(f"the synthetic benchmark has 2 to {len(SYNTHETIC_CLASSES)} classes; the model has "
                             f"{n_classes}")
        synthetic = SyntheticFineGrainedDataset(args.samples, data_config.num_frames, data_config.crop_size, n_classes,
                                                args.data_seed, args.split, data_config=data_config)
        if class_names and list(class_names) != synthetic.class_names:
            raise ValueError(f"the model's classes {class_names} are not the synthetic benchmark's {synthetic.class_names}")
        return RenderedClips.render(synthetic, progress=progress, desc=f"rendering {args.split} clips")
    if args.csv is not None:
        if args.video_dir is None:
            raise ValueError("--csv needs --video-dir (videos are at <video-dir>/<Class>/<FileName>)")
        return VideoClipDataset.from_csv(args.csv, args.video_dir, data_config, False, class_names=class_names,
                                         num_classes=num_classes, allow_outside_video_dir=args.allow_outside_video_dir)
    dataset = VideoClipDataset.from_folder(args.dir, data_config, False, class_names=class_names)
    if num_classes is not None and dataset.num_classes != num_classes:
        raise ValueError(f"{args.dir} has {dataset.num_classes} class folders, the model {num_classes} classes; a "
                         f"folder set needs one folder per model class (or a model with label names, or a --csv "
                         f"split whose ClassEncoded labels are the model's class indices)")
    return dataset

