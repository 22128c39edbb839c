"""Sanity check of the synthetic fine-grained dataset: position-aware head vs mean pooling, same backbone.

Trains ``TinyVideoCNN + MeanPoolHead`` and ``TinyVideoCNN + TAGHead`` (small: 64-d tokens, 1 layer,
4 heads) from scratch on :class:`taghead.SyntheticFineGrainedDataset` with the same recipe and
wall-clock budget, and prints the validation accuracy of both. The design claim of the dataset is
that the mean-pooled head stays near chance (the classes share every local space-time patch)
while the head that knows where and when can solve it.

    python benchmarks/synthetic_sanity.py                 # defaults: the recipe the demo reuses
    python benchmarks/synthetic_sanity.py --budget 60     # quicker, per model

Clips are rendered once into memory (uint8) and normalised per batch; no flip or crop
augmentation (a flip would swap clockwise and counter-clockwise).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

import taghead
from taghead.backbones import tiny_video_cnn
from taghead.data import SyntheticFineGrainedDataset


def render_all(dataset: SyntheticFineGrainedDataset) -> tuple[torch.Tensor, torch.Tensor]:
    clips = torch.stack([dataset.render(i)[0] for i in range(len(dataset))])  # [N, T, H, W, 3] uint8
    return clips, torch.tensor(dataset.labels)


def to_input(clips: torch.Tensor, cfg: taghead.DataConfig) -> torch.Tensor:
    x = clips.permute(0, 4, 1, 2, 3).float().div_(255)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def accuracy(model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor, cfg: taghead.DataConfig,
             batch: int = 64) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(clips), batch):
        logits = model(to_input(clips[i:i + batch], cfg))
        correct += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return correct / len(clips)


def build(head: str, num_classes: int, args: argparse.Namespace) -> taghead.VideoClassifier:
    kwargs = {}
    if head == "tag":
        kwargs = dict(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads,
                      mlp_dim=2 * args.embed_dim, dropout=args.dropout)
    return taghead.wrap_backbone(tiny_video_cnn(width=args.width), num_classes, head=head,
                                 num_frames=args.frames, crop_size=args.size, **kwargs)


def train_one(head: str, data, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    (train_x, train_y), (val_x, val_y), num_classes = data
    model = build(head, num_classes, args)
    cfg = model.data_config
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / (warmup + 1) if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total_steps - warmup))))
    g = torch.Generator().manual_seed(args.seed)
    start, history, step = time.time(), [], 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=g)
        loss_sum = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = F.cross_entropy(model(to_input(train_x[idx], cfg)), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
        val = accuracy(model, val_x, val_y, cfg)
        elapsed = time.time() - start
        history.append((epoch + 1, loss_sum / len(train_x), val, elapsed))
        print(f"  [{head:8s}] epoch {epoch + 1:3d}  loss {loss_sum / len(train_x):.3f}  val acc {val:.3f}  "
              f"({elapsed:.0f} s)", flush=True)
        if elapsed > args.budget:
            break
    return {"head": head, "val_acc": history[-1][2], "best_val_acc": max(h[2] for h in history),
            "epochs": len(history), "seconds": history[-1][3], "train_acc": accuracy(model, train_x[:512], train_y[:512], cfg)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-samples", type=int, default=800)
    p.add_argument("--val-samples", type=int, default=240)
    p.add_argument("--num-classes", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=5, help="cosine schedule length")
    p.add_argument("--budget", type=float, default=3600, help="stop after the epoch that passes this many seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", default="tag,meanpool")
    p.add_argument("--write-results", action="store_true", help="record the table in benchmarks/RESULTS.md")
    args = p.parse_args()

    t0 = time.time()
    train = SyntheticFineGrainedDataset(args.train_samples, args.frames, args.size, args.num_classes, args.seed, "train")
    val = SyntheticFineGrainedDataset(args.val_samples, args.frames, args.size, args.num_classes, args.seed, "val")
    data = (render_all(train), render_all(val), args.num_classes)
    print(f"rendered {len(train)} + {len(val)} clips in {time.time() - t0:.1f} s; chance = {1 / args.num_classes:.3f}")
    results = [train_one(h, data, args) for h in args.heads.split(",")]
    lines = ["| head | val acc (last) | val acc (best) | train acc | epochs | seconds |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['head']} | {r['val_acc']:.3f} | {r['best_val_acc']:.3f} | {r['train_acc']:.3f} | "
              f"{r['epochs']} | {r['seconds']:.0f} |" for r in results]
    table = "\n".join(lines)
    print("\n" + table)
    if args.write_results:
        import platform
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).parent))
        from _results import write_section

        recipe = (f"{args.train_samples} train / {args.val_samples} val clips, {args.num_classes} classes (chance "
                  f"{1 / args.num_classes:.3f}), {args.frames} frames of {args.size}x{args.size}; TinyVideoCNN(width="
                  f"{args.width}); TAG-Head embed_dim={args.embed_dim}, depth={args.depth}, heads={args.num_heads}, "
                  f"mlp={2 * args.embed_dim}, dropout={args.dropout}; AdamW lr={args.lr}, wd={args.weight_decay}, batch "
                  f"{args.batch_size}, {args.epochs} epochs cosine with warm-up; seed {args.seed}; "
                  f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} threads")
        write_section("synthetic_sanity", f"## Synthetic dataset sanity check (`benchmarks/synthetic_sanity.py`)\n\n"
                      f"{recipe}. Seconds are wall-clock on a shared machine.\n\n{table}")


if __name__ == "__main__":
    main()
