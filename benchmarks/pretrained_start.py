"""The paper's setting in small: a pretrained backbone fine-tuned on a small fine-grained set, TAG-Head vs mean pooling.

1. *Pretraining* (the analogue of Kinetics or IG-65M): the tiny 3D CNN with a TAG-Head learns a related,
   coarser task on many clips of the synthetic benchmark: *which two corners flash* (4 classes: the 8
   fine classes with the order merged). Its backbone weights are saved to a file.
2. *Fine-tuning* (the analogue of FineGym): the fine-grained task (*which corner flashes first*, 8 classes)
   with few training clips, through the command line a user runs:
   ``taghead train --data synthetic --backbone taghead/tiny_video_cnn --pretrained-backbone FILE ...``,
   for TAG-Head and for the mean-pool baseline, each from the pretrained file and from random weights.

The pretraining clips come from another seed than the fine-tuning clips, so no clip is seen twice.
Prints the table (and the machine's load, since timings are wall-clock on a shared machine);
``--write-results`` records it in ``benchmarks/RESULTS.md``.

    python benchmarks/pretrained_start.py                       # a few minutes of CPU time
    python benchmarks/pretrained_start.py --train-clips 128 --write-results
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import taghead
from taghead.cli import main as taghead_main
from taghead.data import SYNTHETIC_CLASSES, SyntheticFineGrainedDataset
from taghead.engine import TrainConfig, Trainer
from taghead.engine.datasets import RenderedClips
from taghead.weights import save_safetensors

sys.path.insert(0, str(Path(__file__).parent))
from _results import cpu_name, write_section  # noqa: E402

#: The coarse pretraining classes: the fine classes 2k and 2k+1 (the same two corners, both orders).
PAIR_NAMES = [SYNTHETIC_CLASSES[2 * k][0].replace(" then ", " and ") for k in range(4)]


def head_args(args: argparse.Namespace) -> dict:
    """The small TAG-Head of the demo (what learns on the synthetic benchmark in a few epochs)."""
    return dict(embed_dim=64, depth=1, num_heads=4, mlp_dim=128, dropout=0.0)


def pretrain(args: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Train the tiny CNN + TAG-Head on the coarse task; save the backbone's weights; return the file and a summary."""
    config = taghead.DataConfig(num_frames=args.frames, crop_size=args.size, resize_size=None)
    sets = []
    for split, n in (("train", args.pretrain_clips), ("val", args.val_clips)):
        fine = SyntheticFineGrainedDataset(n, args.frames, args.size, 8, args.pretrain_seed, split, data_config=config)
        rendered = RenderedClips.render(fine, progress=False)
        sets.append(RenderedClips(rendered.frames, rendered.labels // 2, PAIR_NAMES, config))
    torch.manual_seed(args.seed)
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", 4, head="tag", num_frames=args.frames,
                                  crop_size=args.size, backbone_kwargs={"width": args.width}, **head_args(args))
    recipe = TrainConfig(epochs=args.pretrain_epochs, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                         warmup_epochs=1, seed=args.seed, progress=False, tensorboard=False, plot=False,
                         save_best_pretrained=False)
    start = time.time()
    history = Trainer(model, sets[0], sets[1], recipe, output_dir=out / "pretrain", log=lambda _: None).fit()
    file = out / "tiny_video_cnn_pairs.safetensors"
    save_safetensors(model.backbone.model.state_dict(), file)  # the backbone alone, in its own key layout
    return file, {"val_top1": history[-1]["val_top1"], "seconds": time.time() - start}


def finetune(args: argparse.Namespace, head: str, start: Path | None, out: Path) -> dict:
    """``taghead train`` on the fine-grained task from ``start`` (a backbone file) or from random weights."""
    run = out / f"{head}-{'pretrained' if start else 'random'}"
    argv = ["train", "--data", "synthetic", "--train-samples", str(args.train_clips), "--val-samples",
            str(args.val_clips), "--num-frames", str(args.frames), "--crop-size", str(args.size),
            "--backbone", "taghead/tiny_video_cnn", "--backbone-kwargs", f"width={args.width}", "--head", head,
            "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--warmup-epochs", "1",
            "--epochs", str(args.epochs), "--batch-size", "16", "--seed", str(args.seed), "--output", str(run),
            "--no-progress", "--no-tensorboard"]
    if head == "tag":
        for key, value in head_args(args).items():
            argv += ["--head-kwargs", f"{key}={value}"]
    if start is not None:
        argv += ["--pretrained-backbone", str(start)]
    began = time.time()
    if taghead_main(argv) != 0:
        raise SystemExit(f"taghead {' '.join(argv)} failed")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    top1 = [100 * float(r["val_top1"]) for r in rows]
    return {"head": head, "start": "pretrained file" if start else "random", "best": max(top1), "last": top1[-1],
            "mean": sum(top1) / len(top1), "seconds": time.time() - began}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-clips", type=int, default=64, help="fine-tuning clips (8 per class by default)")
    p.add_argument("--val-clips", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    p.add_argument("--pretrain-clips", type=int, default=768)
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--pretrain-seed", type=int, default=1000, help="data seed of the pretraining clips")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-results", action="store_true", help="record the table in benchmarks/RESULTS.md")
    args = p.parse_args()

    load_before = os.getloadavg()
    t0, cpu0 = time.time(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="taghead-pretrained-start-") as tmp:
        out = Path(tmp)
        file, pre = pretrain(args, out)
        print(f"pretraining (4 corner pairs, {args.pretrain_clips} clips, {args.pretrain_epochs} epochs): val Top-1 "
              f"{100 * pre['val_top1']:.1f}% in {pre['seconds']:.0f} s; backbone saved to {file.name}", flush=True)
        results = []
        for head in ("tag", "meanpool"):
            for start in (file, None):
                results.append(finetune(args, head, start, out))
                r = results[-1]
                print(f"  {r['head']:8s} from {r['start']:15s}: best {r['best']:.1f}%, last {r['last']:.1f}% "
                      f"({r['seconds']:.0f} s)", flush=True)
    load_after = os.getloadavg()
    lines = ["| head | backbone start | val Top-1 best (%) | val Top-1 last (%) | mean over epochs (%) | seconds |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {'TAG-Head' if r['head'] == 'tag' else 'mean pool'} | {r['start']} | {r['best']:.1f} | {r['last']:.1f} "
              f"| {r['mean']:.1f} | {r['seconds']:.0f} |" for r in results]
    table = "\n".join(lines)
    machine = (f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
               f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {time.time() - t0:.0f} s wall-clock, "
               f"{time.process_time() - cpu0:.0f} s of CPU time in all")
    recipe = (f"Pretraining: TinyVideoCNN(width={args.width}) + TAG-Head (64-d, 1 layer, 4 heads) on {args.pretrain_clips} "
              f"clips of the coarse task *which two corners flash* (4 classes; data seed {args.pretrain_seed}), AdamW lr "
              f"1e-3, {args.pretrain_epochs} epochs; val Top-1 {100 * pre['val_top1']:.1f}% (chance 25%). Fine-tuning: "
              f"`taghead train --data synthetic --backbone taghead/tiny_video_cnn [--pretrained-backbone FILE]`, the "
              f"8-class task *which corner flashes first* (chance 12.5%), {args.train_clips} training clips, "
              f"{args.val_clips} validation clips, {args.frames} frames of {args.size}x{args.size}, AdamW lr 1e-3, "
              f"weight decay 0.05, batch 16, {args.epochs} epochs (1 warm-up, cosine), seed {args.seed}")
    print(f"\n{table}\n\n{machine}")
    if args.write_results:
        write_section("pretrained_start", "## A pretrained start in small (`python benchmarks/pretrained_start.py`)\n\n"
                      f"{recipe}. {machine}.\n\n{table}")


if __name__ == "__main__":
    main()
