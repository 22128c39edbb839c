"""TAG-Head, ART, the attentive probe and mean pooling side by side: same backbone, seed, data and budget.

Two settings on the synthetic fine-grained benchmark (800 training and 200 validation clips of 16 frames at
64x64, 8 classes, chance 12.5%; AdamW lr 1e-3, weight decay 0.05, batch 32, 1 epoch of warm-up then cosine):

- **(a) end to end**, the ``taghead demo`` recipe: the tiny 3D CNN (width 8, map 32x4x8x8) trained from scratch
  with each head, 10 epochs;
- **(b) frozen backbone**: a small V-JEPA 2 (Hugging Face Transformers ``VJEPA2Model``: 2 layers, 64-d, 4 heads, tubelets
  2x8x8, map 64x8x8x8), randomly initialised and frozen; its feature maps are computed once and each head is
  trained on them alone, 20 epochs. Random rather than pretrained: what a frozen probe needs here is fixed tokens
  that hold the local events but not the answer, and a random V-JEPA 2 gives exactly that (each tubelet's
  embedding keeps its pixels' content; rotary positions put no absolute position into the tokens, as the tiny
  CNN's padding-free view does not either), while pretraining it on the synthetic clips would cost CPU time and
  make the result depend on how well a few epochs of self-supervision went.

The heads: TAG-Head and ART with the demo's settings (64-d tokens, one layer of 4 heads, feed-forward 128, no
dropout), the attentive probe as in V-JEPA 2 with one self-attention block (the demo's: 64-d, 4 heads, MLP 128,
so that it has TAG-Head's one Transformer layer) and as in V-JEPA (no self-attention block), and mean pooling.
Reported per head: validation Top-1 and mean class accuracy after the last epoch, the mean of the validation
Top-1 over the epochs (how fast it learns), parameters and FLOPs per clip (head, and backbone; multiply-add = 2),
and the median time of a training step (batch 32: forward, backward, AdamW; in (b) the head alone), measured
round-robin over the heads in one run so that the load of the machine affects all alike. The script also prints
the weights that TAG-Head's graph propagation followed by its mean pooling gives each frame (see
``docs/guides/attentive-probe.md``).

    nice -n 5 python benchmarks/head_comparison.py --threads 1     # 15 min on a quiet 2-core CPU, 40-60 on a busy one
    python benchmarks/head_comparison.py --setting b                # the frozen-backbone probe only
    python benchmarks/head_comparison.py --quick                    # seconds: smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import taghead  # noqa: E402
from taghead.commands.demo import DEMO_RECIPE, QUICK_RECIPE, DemoRecipe, head_kwargs_for  # noqa: E402
from taghead.data import SyntheticFineGrainedDataset  # noqa: E402
from taghead.engine.datasets import RenderedClips  # noqa: E402
from taghead.engine.optim import build_optimizer  # noqa: E402
from taghead.engine.trainer import Trainer, seed_everything  # noqa: E402
from taghead.ops import time_aligned_appnp  # noqa: E402
from taghead.utils import model_stats  # noqa: E402

HERE = Path(__file__).resolve().parent
PLOT = HERE.parent / "docs" / "images" / "head_comparison.png"

#: The frozen backbone of setting (b): a small V-JEPA 2 (64-d, 2 layers) on 16 frames of 64x64 -> 64x8x8x8.
VJEPA2_CONFIG = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, patch_size=8, crop_size=64,
                     frames_per_clip=16, tubelet_size=2, pred_hidden_size=16, pred_num_hidden_layers=1,
                     pred_num_attention_heads=2, num_pooler_layers=1)
QUICK_VJEPA2 = dict(VJEPA2_CONFIG, hidden_size=16, num_hidden_layers=1, patch_size=8, crop_size=32, frames_per_clip=8)


def rows(recipe: DemoRecipe) -> list[tuple[str, str, dict[str, Any]]]:
    """``(row name, registered head, head options)``; ART's text bank is added per run."""
    probe = dict(recipe.head_kwargs["attentive"])
    return [
        ("TAG-Head", "tag", dict(recipe.head_kwargs["tag"])),
        ("ART", "art", dict(recipe.head_kwargs["art"])),
        ("attentive probe, 1 self-attention block (V-JEPA 2 style)", "attentive", probe),
        ("attentive probe, cross-attention only (V-JEPA)", "attentive", dict(probe, depth=0)),
        ("mean pooling", "meanpool", {}),
    ]


class FeatureMaps(Dataset):
    """Precomputed feature maps ``[N, C, T, H, W]`` and labels, served as ``(map, label)`` (setting b)."""

    def __init__(self, maps: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
        self.maps, self.labels, self.class_names = maps, labels, class_names

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.maps[index], int(self.labels[index])


@torch.no_grad()
def extract(backbone: nn.Module, clips: RenderedClips, batch: int = 50) -> FeatureMaps:
    backbone.eval()
    maps = [backbone(torch.stack([clips[i][0] for i in range(j, min(j + batch, len(clips)))]))
            for j in range(0, len(clips), batch)]
    return FeatureMaps(torch.cat(maps), clips.labels, clips.class_names)


def frozen_vjepa2(config: dict[str, Any], head: str, num_classes: int, names: list[str], **kwargs: Any) -> Any:
    return taghead.wrap_backbone("transformers/vjepa2", num_classes, head=head, freeze_backbone=True,
                                 backbone_kwargs={"config": config}, label_names=names, **kwargs)


def step_times(models: dict[str, nn.Module], batch: tuple[torch.Tensor, torch.Tensor], lr: float, repeats: int = 7,
               channels_last: bool = False) -> dict[str, float]:
    """Median seconds of one training step (forward, cross-entropy and the head's losses, backward, AdamW step) per
    model, measured round-robin (one step of each model in turn) after one warm-up step each."""
    video, target = batch
    if channels_last:
        video = video.contiguous(memory_format=torch.channels_last_3d)
    optimizers = {name: build_optimizer(m, "adamw", lr, 0.05, 1.0) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(repeats + 1):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            logits = model(video)
            loss = nn.functional.cross_entropy(logits, target) + sum(model.losses(logits, target).values())
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def run_setting(setting: str, recipe: DemoRecipe, epochs: int, seed: int, progress: bool,
                vjepa2: dict[str, Any]) -> dict[str, Any]:
    """Train every head of :func:`rows` in one setting; returns the table rows, curves and grid."""
    t0 = time.time()
    frozen = setting == "b"
    classes = recipe.classes
    if frozen:  # render with the backbone's normalisation: the background becomes 0, as for the CNN
        probe = frozen_vjepa2(vjepa2, "meanpool", classes, None)
        data_config = dataclasses.replace(probe.data_config.with_clip(recipe.num_frames, recipe.size), resize_size=None)
        sets = {split: RenderedClips.render(SyntheticFineGrainedDataset(n, recipe.num_frames, recipe.size, classes, seed,
                                                                        split, data_config=data_config),
                                            progress=progress, desc=f"rendering {split} clips")
                for split, n in (("train", recipe.train_samples), ("val", recipe.val_samples))}
        t_feat = time.time()
        maps = {split: extract(probe.backbone, clips) for split, clips in sets.items()}
        print(f"(b) feature maps of {len(sets['train'])} + {len(sets['val'])} clips from the frozen V-JEPA 2: "
              f"{tuple(maps['train'].maps.shape[1:])} each, {time.time() - t_feat:.0f} s", flush=True)
    else:
        sets = recipe.render(seed, progress)
    names = sets["train"].class_names
    results, curves, models = [], {}, {}
    for label, head, options in rows(recipe):
        kwargs = dict(options, **{k: v for k, v in head_kwargs_for(head, recipe, names).items() if k == "text_bank"})
        seed_everything(seed)
        if frozen:
            full = frozen_vjepa2(vjepa2, head, classes, names, **kwargs)
            # Same head (same seed, same initial weights), trained on the stored maps: the backbone is a constant.
            model = taghead.VideoClassifier(nn.Identity(), copy.deepcopy(full.head), full.data_config, label_names=names)
            train, val = maps["train"], maps["val"]
        else:
            full = model = recipe.build_model(head, names, **kwargs)
            train, val = sets["train"], sets["val"]
        config = recipe.train_config(seed, progress, plot=False, epochs=epochs, channels_last=not frozen)
        start = time.time()
        history = Trainer(model, train, val, config, log=lambda _: None).fit()
        stats = model_stats(full, (1, 3, recipe.num_frames, recipe.size, recipe.size))
        top1 = [r["val_top1"] for r in history]
        results.append(dict(name=label, head=head, top1=history[-1]["val_top1"], mca=history[-1]["val_mca"],
                            mean_top1=sum(top1) / len(top1), train_top1=history[-1]["train_top1"],
                            head_params=stats.head_params, backbone_params=stats.backbone_params,
                            head_flops=stats.head_flops, backbone_flops=stats.backbone_flops,
                            train_seconds=time.time() - start))
        curves[label], models[label] = history, model
        r = results[-1]
        print(f"({setting}) {label:58s} val Top-1 {100 * r['top1']:5.1f}%  MCA {100 * r['mca']:5.1f}%  mean over "
              f"epochs {100 * r['mean_top1']:5.1f}%  head {r['head_params'] / 1e3:6.1f} k params  "
              f"{r['train_seconds']:4.0f} s", flush=True)
    loader = torch.utils.data.DataLoader(maps["train"] if frozen else sets["train"], batch_size=recipe.batch_size)
    video, target = next(iter(loader))
    seconds = step_times(models, (video, torch.as_tensor(target)), recipe.lr, channels_last=not frozen)
    for r in results:
        r["step_seconds"] = seconds[r["name"]]
    grid = tuple(models[rows(recipe)[0][0]].head.grid)
    return dict(results=results, curves=curves, grid=grid, seconds=time.time() - t0, epochs=epochs)


def graph_frame_weights(grid: tuple[int, int, int], k: int = 2, alpha: float = 0.1) -> torch.Tensor:
    """``N w_t`` per frame: TAG-Head's APPNP over the time-aligned graph followed by the mean over all N nodes is the
    weighted mean ``sum_n w_n x_n``; the weights are equal within a frame (float64, exact up to rounding)."""
    t, h, w = grid
    n = t * h * w
    weights = time_aligned_appnp(torch.eye(n, dtype=torch.float64), t, h, w, k=k, alpha=alpha).mean(0)
    per_frame = weights.reshape(t, h * w)
    assert float((per_frame.amax(1) - per_frame.amin(1)).abs().max()) < 1e-12
    return per_frame[:, 0] * n


def markdown(settings: dict[str, dict[str, Any]], recipe: DemoRecipe, seed: int, load: tuple[tuple, tuple],
             threads: int, plot: str | None) -> str:
    titles = {"a": "(a) Tiny 3D CNN trained end to end (the `taghead demo` recipe)",
              "b": "(b) Frozen V-JEPA 2 (random weights), heads trained on its feature maps"}
    lines = [
        "## TAG-Head, ART, the attentive probe and mean pooling side by side (`benchmarks/head_comparison.py`)",
        "",
        f"Seed {seed}, torch {torch.__version__}, {threads} thread(s); load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.1f}' for v in load[0])} at the start and {', '.join(f'{v:.1f}' for v in load[1])} at the "
        f"end (a shared 2-core machine: time ratios within one table are comparable, absolute times are not). "
        f"{recipe.train_samples} training / {recipe.val_samples} validation synthetic clips ({recipe.num_frames} frames, "
        f"{recipe.size}x{recipe.size}, {recipe.classes} classes, chance {100 / recipe.classes:.1f}%), AdamW lr "
        f"{recipe.lr:g}, weight decay {recipe.weight_decay:g}, batch {recipe.batch_size}, {recipe.warmup_epochs:g} epoch "
        "of warm-up then cosine; every head starts from the same seed. FLOPs per clip, a multiply-add counts 2 "
        "(`taghead.utils.model_stats`); a step is one training step on a batch (median of 7, the heads in turn).",
    ]
    for key, s in settings.items():
        t, h, w = s["grid"]
        lines += ["", f"### {titles[key]}", "",
                  f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}, token map {t}x{h}x{w}, {s['seconds'] / 60:.1f} min. "
                  + ("Backbone trained with every head (lr as the head's)." if key == "a" else
                     "Backbone frozen: maps computed once; the step time is the head's alone."),
                  "",
                  "| head | val Top-1 (%) | val MCA (%) | mean val Top-1 over epochs (%) | train Top-1 (%) | head params | "
                  "head MFLOPs | backbone params | backbone MFLOPs | ms / step |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in s["results"]:
            lines.append(f"| {r['name']} | {100 * r['top1']:.1f} | {100 * r['mca']:.1f} | {100 * r['mean_top1']:.1f} | "
                         f"{100 * r['train_top1']:.1f} | {r['head_params'] / 1e3:.1f} k | {r['head_flops'] / 1e6:.1f} | "
                         f"{r['backbone_params'] / 1e3:.1f} k | {r['backbone_flops'] / 1e6:.1f} | "
                         f"{1e3 * r['step_seconds']:.0f} |")
        weights = graph_frame_weights(s["grid"])
        lines += ["", f"TAG-Head's graph (K=2, alpha=0.1) followed by its mean pooling weighs the {t} frames of this "
                      f"grid by {', '.join(f'{v:.5f}' for v in weights.tolist())} (times 1/N; 1 = the plain mean)."]
    if plot:
        lines += ["", f"![validation Top-1 per epoch, both settings]({plot})"]
    return "\n".join(lines)


def plot_curves(settings: dict[str, dict[str, Any]], path: Path, chance: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.7), layout="constrained", squeeze=False)
    titles = {"a": "(a) tiny 3D CNN, trained end to end", "b": "(b) frozen V-JEPA 2 (random), heads only"}
    for ax, (key, s) in zip(axes[0], settings.items()):
        for i, (name, history) in enumerate(s["curves"].items()):
            ax.plot([r["epoch"] for r in history], [100 * r["val_top1"] for r in history], color=f"C{i}", label=name,
                    marker="o", markersize=3)
        ax.axhline(100 * chance, color="grey", linestyle=":", label="chance")
        ax.set(title=titles[key], xlabel="epoch", ylabel="validation Top-1 (%)", ylim=(0, 102))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # One legend for both panels, under them: inside a panel it would cover the curves.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=("a", "b", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs-a", type=int, default=10, help="epochs of setting (a) (the demo recipe: 10)")
    parser.add_argument("--epochs-b", type=int, default=20, help="epochs of setting (b), heads only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run; RESULTS.md and the plot are not written")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start_load = os.getloadavg()
    print(f"load average at the start: {start_load}; torch threads: {torch.get_num_threads()}", flush=True)
    recipe = QUICK_RECIPE if args.quick else DEMO_RECIPE
    epochs = {"a": 1, "b": 1} if args.quick else {"a": args.epochs_a, "b": args.epochs_b}
    settings = {}
    for key in ("a", "b") if args.setting == "both" else (args.setting,):
        settings[key] = run_setting(key, recipe, epochs[key], args.seed, not args.no_progress,
                                    QUICK_VJEPA2 if args.quick else VJEPA2_CONFIG)
    load = (start_load, os.getloadavg())
    print(f"load average at the end: {load[1]}")
    full = args.setting == "both" and not args.quick
    rel_plot = os.path.relpath(PLOT, HERE) if full else None
    table = markdown(settings, recipe, args.seed, load, torch.get_num_threads(), rel_plot)
    print("\n" + table)
    if args.quick:
        return
    from _results import write_section

    if full:
        plot_curves(settings, PLOT, 1 / recipe.classes)
    section = "head_comparison" if full else f"head_comparison_{args.setting}"
    write_section(section, table)
    print(f"\nwrote {HERE / 'RESULTS.md'} (section {section!r})" + (f" and {PLOT}" if full else ""))


if __name__ == "__main__":
    main()
