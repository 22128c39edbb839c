"""Does the default TAG-Head learn from scratch, and which settings do? (synthetic benchmark, tiny CNN, CPU)

Every row trains the same tiny 3D CNN (the ``taghead demo`` recipe: same rendered clips, seed, AdamW,
schedule and number of epochs) with a TAG-Head that differs from the default head
(``TAGHead(in_channels, t, h, w, num_classes=...)``: 2 post-norm layers of 8 heads, dropout 0.5,
feed-forward 512, the backbone's 32-channel tokens) in one or two settings: dropout, pre-norm, depth,
token width; the last row is the demo's own small head (64-d tokens, one layer of 4 heads, feed-forward
128, no dropout). The budget is a bit less than the demo's: 6 epochs instead of 10 (``--epochs``), as a
head with attention dropout cannot use PyTorch's fused attention on the CPU and trains more than twice as
slowly; ``--epochs 10 --row NAME ...`` reruns some rows with the demo's full budget. It prints one line per
row, writes the table to the ``default_head`` section of ``benchmarks/RESULTS.md`` and the training
curves to ``docs/images/default_head_study.png``.

    nice -n 5 python benchmarks/default_head_study.py --threads 1   # about an hour on a busy 2-core CPU
    python benchmarks/default_head_study.py --epochs 10 --row "default head" --row "dropout 0"   # demo's budget
    python benchmarks/default_head_study.py --quick                   # seconds: smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from taghead.commands.demo import DEMO_RECIPE, QUICK_RECIPE, DemoRecipe
from taghead.engine.plots import plot_training_curves
from taghead.engine.trainer import Trainer, seed_everything

HERE = Path(__file__).resolve().parent


def variants(recipe: DemoRecipe) -> list[tuple[str, dict[str, Any]]]:
    """``(row name, TAG-Head kwargs)``: the default head, then one or two settings changed, then the demo's head."""
    return [
        ("default head", {}),
        ("dropout 0.1", dict(dropout=0.1)),
        ("dropout 0", dict(dropout=0.0)),
        ("pre-norm, dropout 0", dict(norm_first=True, dropout=0.0)),
        ("depth 1, dropout 0", dict(depth=1, dropout=0.0)),
        ("64-d tokens, dropout 0", dict(embed_dim=64, dropout=0.0)),
        ("the demo's head", dict(recipe.head_kwargs["tag"])),
    ]


def run(recipe: DemoRecipe, seed: int, progress: bool,
        rows: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, list]]:
    t0 = time.time()
    sets = recipe.render(seed, progress)
    class_names = sets["train"].class_names
    print(f"rendered {recipe.train_samples} + {recipe.val_samples} clips ({recipe.classes} classes, chance "
          f"{100 / recipe.classes:.1f}%) in {time.time() - t0:.0f} s", flush=True)
    results, curves = [], {}
    for name, kwargs in variants(recipe):
        if rows is not None and name not in rows:
            continue
        seed_everything(seed)
        model = recipe.build_model("tag", class_names, **kwargs)
        config = recipe.train_config(seed, progress, plot=False)
        t = time.time()
        history = Trainer(model, sets["train"], sets["val"], config, log=lambda _: None).fit()
        curves[name] = history
        top1 = [r["val_top1"] for r in history]
        head = model.head.get_config()
        results.append(dict(
            name=name, top1=history[-1]["val_top1"], mca=history[-1]["val_mca"], best_top1=max(top1),
            mean_top1=sum(top1) / len(top1), train_top1=history[-1]["train_top1"],
            epochs_to_90=next((i + 1 for i, v in enumerate(top1) if v >= 0.9), None),
            config={k: head[k] for k in ("embed_dim", "depth", "num_heads", "mlp_dim", "dropout", "norm_first")},
            head_params=sum(p.numel() for p in model.head.parameters()), seconds=time.time() - t,
            features=(model.head.in_channels, *model.head.grid),
        ))
        r = results[-1]
        print(f"{name:30s} val Top-1 {100 * r['top1']:5.1f}% (best {100 * r['best_top1']:5.1f}%, mean over epochs "
              f"{100 * r['mean_top1']:5.1f}%, >= 90% at epoch {r['epochs_to_90'] or '-'}), train "
              f"{100 * r['train_top1']:5.1f}%, {r['head_params'] / 1e3:.1f} k params, {r['seconds']:.0f} s", flush=True)
    return results, curves


def markdown(results: list[dict[str, Any]], recipe: DemoRecipe, seed: int, total_s: float, command: str,
             plot: str | None) -> str:
    c, t, h, w = results[0]["features"]
    lines = [
        f"## Does the default TAG-Head learn from scratch? (`{command}`)",
        "",
        f"Seed {seed}, {total_s / 60:.1f} min on the CPU. Every row: the same tiny 3D CNN (width {recipe.width}, "
        f"feature map of {c}x{t}x{h}x{w}) trained from scratch with a TAG-Head on {recipe.train_samples} synthetic "
        f"clips ({recipe.num_frames} frames, {recipe.size}x{recipe.size}, {recipe.classes} classes, chance "
        f"{100 / recipe.classes:.1f}%), the `taghead demo` recipe: AdamW lr {recipe.lr:g}, weight decay "
        f"{recipe.weight_decay:g}, batch {recipe.batch_size}, {recipe.epochs} epochs"
        f"{'' if recipe.epochs == DEMO_RECIPE.epochs else f' (the demo trains {DEMO_RECIPE.epochs})'} with "
        f"{recipe.warmup_epochs:g} of warm-up and cosine decay; validation on {recipe.val_samples} clips after every epoch. The default head "
        "is `TAGHead(in_channels, t, h, w, num_classes=...)` with nothing else set; the other rows change what "
        "their name says.",
        "",
        "| head | settings (embed, depth, heads, ff, dropout, pre-norm) | val Top-1 (%) | val MCA (%) | "
        "best val Top-1 (%) | mean val Top-1 over epochs (%) | first epoch >= 90% | train Top-1 (%) | "
        "head params | train time (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        c = r["config"]
        settings = (f"{c['embed_dim']}, {c['depth']}, {c['num_heads']}, {c['mlp_dim']}, {c['dropout']:g}, "
                    f"{'yes' if c['norm_first'] else 'no'}")
        lines.append(f"| {r['name']} | {settings} | {100 * r['top1']:.1f} | {100 * r['mca']:.1f} | "
                     f"{100 * r['best_top1']:.1f} | {100 * r['mean_top1']:.1f} | {r['epochs_to_90'] or '-'} | "
                     f"{100 * r['train_top1']:.1f} | {r['head_params'] / 1e3:.1f} k | {r['seconds']:.0f} |")
    if plot:
        lines += ["", f"![training curves of the default-head study](../docs/images/{plot})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6, help="epochs (the demo recipe trains 10)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; RESULTS.md and the plot are not written")
    parser.add_argument("--row", action="append", default=None, dest="rows",
                        help="a row to run, by name (repeatable; default: all); a subset is written to its own "
                             "RESULTS.md section, default_head_<epochs>ep, without a plot")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = QUICK_RECIPE if args.quick else dataclasses.replace(DEMO_RECIPE, epochs=args.epochs)
    rows = args.rows
    known = [name for name, _ in variants(recipe)]
    if rows is not None and set(rows) - set(known):
        parser.error(f"unknown rows {sorted(set(rows) - set(known))}; choose among {known}")
    full = rows is None and args.epochs == 6
    command = "python benchmarks/default_head_study.py" + ("" if args.epochs == 6 else f" --epochs {args.epochs}") + (
        "".join(f' --row "{r}"' for r in rows or ()))
    plot = "default_head_study.png" if full else None
    t0 = time.time()
    results, curves = run(recipe, args.seed, progress=not args.no_progress, rows=rows)
    table = markdown(results, recipe, args.seed, time.time() - t0, command, plot)
    print("\n" + table)
    if args.quick:
        return
    from _results import IMAGES, write_section

    section = "default_head" if full else f"default_head_{args.epochs}ep"
    if plot:
        plot_training_curves(curves, IMAGES / plot, chance=1 / recipe.classes,
                             title="TAG-Head settings trained from scratch (synthetic benchmark, tiny CNN)")
    write_section(section, table)
    print(f"\nwrote {HERE / 'RESULTS.md'} (section {section!r})" + (f" and {IMAGES / plot}" if plot else ""))


if __name__ == "__main__":
    main()
