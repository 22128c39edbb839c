"""Ablations of TAG-Head on the synthetic fine-grained benchmark (the paper's ablation design, on a CPU).

Every row trains the same tiny 3D CNN from scratch with one head variant, on the same rendered
clips, with the same seed, optimiser, schedule and number of epochs (the ``taghead demo`` recipe):

- mean-pool baseline (``MeanPoolHead``);
- Transformer only: TAG-Head with ``use_graph=False``;
- graph only: TAG-Head with ``depth=0`` (positional embedding + APPNP, no Transformer);
- intra-frame edges only: ``temporal=False``;
- temporal edges only: ``intra=False``;
- full TAG-Head;
- ART (with a text bank of the class names from the hashing text encoder) and ART without its text
  bank, when the ``"art"`` head is registered.

It prints validation Top-1 and mean class accuracy per row (for ART with text also how often the true
class is among the ``top_k`` classes it selected, per video and per frame), writes the table to the
``ablations`` section of ``benchmarks/RESULTS.md`` and a bar plot to ``docs/images/ablations.png``.

    python benchmarks/ablations.py               # about 15 minutes on 2 CPU cores
    python benchmarks/ablations.py --quick       # seconds: smoke test, writes nothing
    python benchmarks/ablations.py --rows ART "ART (no text)"   # only these rows; writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from taghead.commands.demo import DEMO_RECIPE, QUICK_RECIPE, DemoRecipe, head_kwargs_for
from taghead.engine.plots import plot_bars
from taghead.engine.trainer import Trainer, seed_everything
from taghead.heads import list_heads

HERE = Path(__file__).resolve().parent


def variants(recipe: DemoRecipe, class_names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(row name, head, head kwargs)`` of every ablation row."""
    tag = dict(recipe.head_kwargs["tag"])
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("mean-pool baseline", "meanpool", dict(recipe.head_kwargs.get("meanpool", {}))),
        ("Transformer only (no graph)", "tag", dict(tag, use_graph=False)),
        ("graph only (no Transformer)", "tag", dict(tag, depth=0)),
        ("intra-frame edges only", "tag", dict(tag, temporal=False)),
        ("temporal edges only", "tag", dict(tag, intra=False)),
        ("full TAG-Head", "tag", tag),
    ]
    if "art" in list_heads():
        rows.append(("ART", "art", head_kwargs_for("art", recipe, class_names, text=True)))
        rows.append(("ART (no text)", "art", head_kwargs_for("art", recipe, class_names, text=False)))
    return rows


@torch.no_grad()
def selection_rates(model: torch.nn.Module, dataset: Any) -> tuple[float, float] | None:
    """ART with text: fractions of validation videos and frames whose selected classes contain the label."""
    if not getattr(model.head, "has_text", False):
        return None
    model.eval()
    videos = frames = total_frames = 0
    for video, y in DataLoader(dataset, batch_size=50):
        model(video)
        videos += int((model.head.selected_video_classes == y[:, None]).any(-1).sum())
        hits = (model.head.selected_classes == y[:, None, None]).any(-1)
        frames, total_frames = frames + int(hits.sum()), total_frames + hits.numel()
    return videos / len(dataset), frames / total_frames


def run(recipe: DemoRecipe, seed: int, progress: bool, rows: list[str] | None = None) -> list[dict[str, Any]]:
    num_classes = recipe.classes
    t0 = time.time()
    sets = recipe.render(seed, progress)
    class_names = sets["train"].class_names
    print(f"rendered {recipe.train_samples} + {recipe.val_samples} clips ({num_classes} classes, chance "
          f"{100 / num_classes:.1f}%) in {time.time() - t0:.0f} s", flush=True)
    results = []
    chosen = variants(recipe, class_names)
    if rows:
        unknown = sorted(set(rows) - {name for name, _, _ in chosen})
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; the rows are {[name for name, _, _ in chosen]}")
        chosen = [row for row in chosen if row[0] in rows]
    for name, head, kwargs in chosen:
        seed_everything(seed)
        model = recipe.build_model(head, class_names, **kwargs)
        config = recipe.train_config(seed, progress, plot=False)
        t = time.time()
        history = Trainer(model, sets["train"], sets["val"], config, log=lambda _: None).fit()
        last = history[-1]
        curve = [r["val_top1"] for r in history]
        reached = next((i + 1 for i, v in enumerate(curve) if v >= 0.9), None)
        seconds = time.time() - t
        results.append(dict(name=name, head=head, top1=last["val_top1"], mca=last["val_mca"], best_top1=max(curve),
                            mean_top1=sum(curve) / len(curve), epochs_to_90=reached,
                            head_params=sum(p.numel() for p in model.head.parameters()),
                            seconds=seconds, selection=selection_rates(model, sets["val"]),
                            top_k=getattr(model.head, "top_k", None)))
        r = results[-1]
        picked = "" if r["selection"] is None else (f", true class selected in {100 * r['selection'][0]:.0f}% of "
                                                    f"videos / {100 * r['selection'][1]:.0f}% of frames")
        print(f"{name:30s} Top-1 {100 * r['top1']:5.1f}%  MCA {100 * r['mca']:5.1f}%  "
              f"(mean over epochs {100 * r['mean_top1']:5.1f}%, >= 90% at epoch {reached or '-'}, "
              f"head {r['head_params'] / 1e3:.1f} k params, {r['seconds']:.0f} s{picked})", flush=True)
    return results


def markdown(results: list[dict[str, Any]], recipe: DemoRecipe, seed: int, total_s: float) -> str:
    num_classes = recipe.classes
    lines = [
        "## Ablations on the synthetic fine-grained benchmark",
        "",
        f"`python benchmarks/ablations.py` (seed {seed}, {total_s / 60:.1f} min on the CPU with "
        f"{torch.get_num_threads()} thread(s)). Every row: the same tiny "
        f"3D CNN (width {recipe.width}) trained from scratch with one head on {recipe.train_samples} clips "
        f"({recipe.num_frames} frames, {recipe.size}x{recipe.size}, {num_classes} classes, chance "
        f"{100 / num_classes:.1f}%), AdamW lr {recipe.lr:g}, weight decay {recipe.weight_decay:g} (none on norms, "
        f"biases, positional embeddings, ART's prompts and text agent), batch "
        f"{recipe.batch_size}, {recipe.epochs} epochs with {recipe.warmup_epochs:g} of warm-up and cosine decay; "
        f"validation on {recipe.val_samples} clips after every epoch (Top-1 and MCA: after the last; the mean over "
        f"epochs and the first epoch at >= 90% measure how fast a variant learns). TAG variants share the demo "
        f"head settings {recipe.head_kwargs['tag']}; ART uses {recipe.head_kwargs.get('art', {})} and its other "
        f"defaults (top-3 classes chosen per video), with a bank of the class names from the hashing text encoder "
        f"for the row with text.",
        "",
        "| head | val Top-1 (%) | val MCA (%) | mean val Top-1 over epochs (%) | first epoch >= 90% | "
        "head params | train time (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {100 * r['top1']:.1f} | {100 * r['mca']:.1f} | {100 * r['mean_top1']:.1f} | "
                     f"{r['epochs_to_90'] or '-'} | {r['head_params'] / 1e3:.1f} k | {r['seconds']:.0f} |")
    for r in results:
        if r.get("selection") is not None:
            k = min(r["top_k"], num_classes)
            lines += ["", f"{r['name']}: the true class is among the top-{k} classes the head selected (in the text "
                      f"space the video-consistency loss trains) for {100 * r['selection'][0]:.1f}% of the validation "
                      f"videos and {100 * r['selection'][1]:.1f}% of their frames (chance {100 * k / num_classes:.1f}%)."]
    lines += ["", "![ablation bar plot](../docs/images/ablations.png)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the demo recipe's epochs")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; RESULTS.md and the plot are not written")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", nargs="+", default=None, metavar="NAME",
                        help="run only these rows (by name, e.g. ART 'ART (no text)'); RESULTS.md and the plot "
                             "are not written")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = QUICK_RECIPE if args.quick else DEMO_RECIPE
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    t0 = time.time()
    results = run(recipe, args.seed, progress=not args.no_progress, rows=args.rows)
    total = time.time() - t0
    table = markdown(results, recipe, args.seed, total)
    print("\n" + table)
    if args.quick or args.rows:
        return
    from _results import IMAGES, write_section

    num_classes = recipe.classes
    plot_bars(results, {"top1": "val Top-1 (last epoch)", "mca": "val MCA (last epoch)",
                        "mean_top1": "val Top-1 (mean over epochs)"},
              IMAGES / "ablations.png", title="TAG-Head ablations (synthetic benchmark)", chance=1 / num_classes)
    write_section("ablations", table)
    print(f"\nwrote {HERE / 'RESULTS.md'} (section 'ablations') and {IMAGES / 'ablations.png'}")


if __name__ == "__main__":
    main()
