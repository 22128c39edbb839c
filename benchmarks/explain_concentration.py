"""Do the explanations point at the flashes? Heatmap concentration on the synthetic benchmark's events.

The synthetic benchmark knows where and when its two flashes are
(:meth:`taghead.data.SyntheticFineGrainedDataset.events`). This script trains the demo's models (the
tiny 3D CNN with TAG-Head, and with ART; ``taghead.commands.demo.DEMO_RECIPE``), explains every
validation clip's true class with each method, and measures

    ratio = mean of the heatmap inside the flash boxes during the flash frames / its mean everywhere else

pooled over the validation clips (:func:`taghead.explanation.concentration_ratio`): 1 when the heatmap
ignores the flashes. The same for ART's region maps (the mean over the queries of each query's
attention, upsampled). Each model is also measured before training (the same seed's random
initialisation) as the contrast. Writes the table to ``benchmarks/RESULTS.md`` (section
``explain_concentration``) and the pictures of the explanations guide to ``docs/images/explain_tag.png`` and
``docs/images/explain_art.png``.

    python benchmarks/explain_concentration.py                      # the demo recipe, TAG and ART (~30 min, 2 cores)
    python benchmarks/explain_concentration.py --heads tag --epochs 3 --train-samples 200 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks._results import write_section  # noqa: E402
from taghead.commands.demo import DEMO_RECIPE, head_kwargs_for  # noqa: E402
from taghead.data import SyntheticFineGrainedDataset  # noqa: E402
from taghead.engine.trainer import Trainer, seed_everything  # noqa: E402
from taghead.explanation import concentration_ratio, explain, save_sheet  # noqa: E402

METHODS = ("gradcam", "hirescam", "occlusion")
HEAD_TITLES = {"tag": "TAG-Head", "art": "ART"}


def measure(model, val, truth: SyntheticFineGrainedDataset, clips: int, occlusion_clips: int,
            batch: int = 16) -> dict[str, float]:
    """Pooled concentration ratio of each method (and of ART's regions) over the first validation clips."""
    out: dict[str, float] = {}
    for method in METHODS:
        n = min(len(val), occlusion_clips if method == "occlusion" else clips)
        heat, regions, per_clip = [], [], []
        for start in range(0, n, batch):
            ids = range(start, min(n, start + batch))
            video = torch.stack([val[i][0] for i in ids])
            for i, result in zip(ids, explain(model, video, [int(val.labels[i]) for i in ids], method=method)):
                mask = truth.event_mask(i)
                heat.append(result.heatmap)
                per_clip.append(concentration_ratio(result.heatmap, mask))
                if result.regions is not None and method == "gradcam":
                    regions.append(result.region_heatmaps().mean(0))
        masks = torch.stack([truth.event_mask(i) for i in range(n)])
        out[method] = concentration_ratio(torch.stack(heat), masks)
        out[f"{method}_median_clip"] = statistics.median(per_clip)
        out[f"{method}_clips"] = n
        if regions:
            out["regions"] = concentration_ratio(torch.stack(regions), masks)
            out["regions_clips"] = n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", default="tag,art")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo recipe's epochs")
    parser.add_argument("--train-samples", type=int, default=None, help="override the demo recipe's training clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=200, help="validation clips explained (Grad-CAM, HiResCAM)")
    parser.add_argument("--occlusion-clips", type=int, default=48,
                        help="validation clips explained by occlusion (one head pass per token: the slow one)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and docs/images/ alone")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("train_samples", args.train_samples)) if v is not None}
    recipe = dataclasses.replace(DEMO_RECIPE, **overrides)
    progress = not args.no_progress
    t0 = time.time()
    sets = recipe.render(args.seed, progress)
    names = sets["train"].class_names
    truth = SyntheticFineGrainedDataset(recipe.val_samples, recipe.num_frames, recipe.size, recipe.classes, args.seed,
                                        "val")
    rows = []
    for head in [h.strip() for h in args.heads.split(",") if h.strip()]:
        seed_everything(args.seed)
        model = recipe.build_model(head, names, **head_kwargs_for(head, recipe, names))
        initial = copy.deepcopy(model)
        print(f"== {head}: random initialisation", flush=True)
        rows.append({"head": head, "state": "random initialisation", "top1": None,
                     **measure(initial, sets["val"], truth, args.clips, args.occlusion_clips)})
        print(rows[-1], flush=True)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(model, sets["train"], sets["val"], recipe.train_config(args.seed, progress),
                              output_dir=run_dir, ctx=None, class_names=names)
            history = trainer.fit()
        print(f"== {head}: trained ({recipe.epochs} epochs)", flush=True)
        rows.append({"head": head, "state": f"trained ({recipe.epochs} epochs)", "top1": history[-1]["val_top1"],
                     **measure(model, sets["val"], truth, args.clips, args.occlusion_clips)})
        print(rows[-1], flush=True)
        if not args.no_write:  # the explanations guide's pictures (TAG-Head, ART), of validation clip 0
            clip, label = sets["val"][0]
            method = "hirescam" if head == "tag" else "gradcam"
            result = explain(model, clip, label, method=method)
            path = save_sheet(result, sets["val"].frames[0], ROOT / "docs" / "images" / f"explain_{head}.png",
                              title=f"{HEAD_TITLES.get(head, head)} (the demo's model) on a validation clip; dashed "
                                    "boxes: where the flashes are",
                              boxes=[(e.frames, e.box) for e in truth.events(0)], true_label=names[label])
            print(f"picture: {path} ({path.stat().st_size / 1e3:.0f} kB)")

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.2f}" if key in row else "-"

    lines = [
        "## Do explanations point at the flashes? (`benchmarks/explain_concentration.py`)",
        "",
        f"The demo recipe ({recipe.train_samples} training clips, {recipe.epochs} epochs, seed {args.seed}) on the "
        f"synthetic benchmark. Ratio = mean heatmap inside the flash boxes during the flash frames / mean elsewhere, "
        f"pooled over the first {args.clips} validation clips ({args.occlusion_clips} for occlusion), explaining the "
        f"true class; 1 = the heatmap ignores the flashes. ART regions: the mean over the queries of each query's "
        f"decoder cross-attention, upsampled the same way. Median per-clip ratio in brackets.",
        "",
        "| head | weights | val Top-1 | Grad-CAM | HiResCAM | occlusion | ART regions |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        top1 = "-" if r["top1"] is None else f"{100 * r['top1']:.1f}%"
        methods = " | ".join(f"{cell(r, m)} ({r[m + '_median_clip']:.2f})" for m in METHODS)
        lines.append(f"| {HEAD_TITLES.get(r['head'], r['head'])} | {r['state']} | {top1} | {methods} | "
                     f"{cell(r, 'regions')} |")
    lines += ["", f"{time.time() - t0:.0f} s on {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}. "
              "Grad-CAM weighs the channels by the class logit's gradients averaged over all tokens, HiResCAM by each "
              "token's own gradients, occlusion hides 2 x 2 token patches of a frame (no gradients)."]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section("explain_concentration", table)


if __name__ == "__main__":
    main()
