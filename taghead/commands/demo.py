"""``taghead demo``: TAG-Head versus mean pooling on the synthetic fine-grained benchmark, on the CPU, in minutes.

Steps: render the synthetic clips (the order in which the four corners flash; every class has the
same local events, only *where* happens *when* differs), train each head on the same tiny 3D CNN
with the same seed and budget, evaluate, print a side-by-side table, draw the training curves, then
save the TAG-Head model with ``save_pretrained``, reload it with ``taghead.from_pretrained``, write
one validation clip as an mp4 file and predict it through the video decoding path.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "DemoRecipe", "DEMO_RECIPE", "QUICK_RECIPE", "run_demo", "head_kwargs_for",
           "DEMO_VARIANTS", "demo_outputs"]

#: Extra names ``--heads`` accepts: ``name -> (registered head, with a text bank)``.
DEMO_VARIANTS: dict[str, tuple[str, bool]] = {"art-notext": ("art", False)}


@dataclass(frozen=True)
class DemoRecipe:
    """Data sizes, model sizes and optimisation of the demo (shared by every head).

    The defaults give TAG-Head 100% and mean pooling chance level (12.5%) on the 8 classes, in about
    three minutes on 2 CPU cores (``benchmarks/RESULTS.md``). The TAG-Head is small (64-d tokens, one
    Transformer layer) and has no dropout, which lets PyTorch use its fused attention kernel on the
    CPU (about 3x faster than with attention dropout).
    """

    train_samples: int = 800
    val_samples: int = 200
    num_classes: int | None = None  # None: every class of the synthetic benchmark
    num_frames: int = 16
    size: int = 64
    width: int = 8
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    #: head options by head name (heads not listed use their defaults); ``"art"`` also gets a text
    #: bank from the class names (:func:`head_kwargs_for`).
    head_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "tag": dict(embed_dim=64, depth=1, num_heads=4, mlp_dim=128, dropout=0.0),
        "meanpool": {},
        # no classifier dropout, like the TAG rows: the paper's 0.5 (ART's default) slows 10-epoch runs
        "art": dict(embed_dim=64, num_heads=4, se_depth=1, rssa_depth=1, mlp_dim=128, dropout=0.0, drop_rate=0.0),
        # V-JEPA 2's design with one self-attention layer over the tokens, like the TAG-Head row (64-d, 4 heads,
        # feed-forward 128), so that the two differ in the graph and the query pooling only
        "attentive": dict(embed_dim=64, num_heads=4, depth=1, mlp_ratio=2.0),
    })

    @property
    def classes(self) -> int:
        """The number of classes (``num_classes``, else every class of the synthetic benchmark)."""
        from taghead.data import SYNTHETIC_CLASSES

        return self.num_classes or len(SYNTHETIC_CLASSES)

    def render(self, seed: int, progress: bool = True) -> dict[str, Any]:
        """The recipe's ``"train"`` and ``"val"`` clips of the synthetic benchmark, rendered into memory."""
        from taghead.data import SyntheticFineGrainedDataset
        from taghead.engine.datasets import RenderedClips

        return {split: RenderedClips.render(SyntheticFineGrainedDataset(n, self.num_frames, self.size, self.classes,
                                                                        seed, split),
                                            progress=progress, desc=f"rendering {split} clips")
                for split, n in (("train", self.train_samples), ("val", self.val_samples))}

    def build_model(self, head: str, class_names: list[str], **head_kwargs: Any) -> Any:
        """The tiny 3D CNN of the recipe with ``head`` (call ``seed_everything`` first for equal initial weights)."""
        import taghead

        return taghead.wrap_backbone("taghead/tiny_video_cnn", self.classes, head=head, num_frames=self.num_frames,
                                     crop_size=self.size, backbone_kwargs={"width": self.width},
                                     label_names=class_names, **head_kwargs)

    def train_config(self, seed: int, progress: bool, **overrides: Any) -> Any:
        """The recipe's :class:`~taghead.engine.trainer.TrainConfig` (AdamW, cosine with warm-up, channels-last)."""
        from taghead.engine.trainer import TrainConfig

        options = dict(epochs=self.epochs, batch_size=self.batch_size, optimizer="adamw", lr=self.lr,
                       weight_decay=self.weight_decay, warmup_epochs=self.warmup_epochs, seed=seed, channels_last=True,
                       progress=progress, tensorboard=False, save_best_pretrained=False)
        return TrainConfig(**{**options, **overrides})


def head_kwargs_for(head: str, recipe: DemoRecipe, class_names: list[str], text: bool = True) -> dict[str, Any]:
    """The recipe's options for ``head``; ART gets a text bank of the class names (hashing text encoder,
    no download) unless ``text`` is false."""
    kwargs = dict(recipe.head_kwargs.get(head, {}))
    if head == "art" and text:
        from taghead.text import HashingTextEncoder, build_text_bank

        dim = int(kwargs.get("embed_dim", 64))
        kwargs["text_bank"] = build_text_bank(class_names, encoder=HashingTextEncoder(dim), progress=False)
    return kwargs


DEMO_RECIPE = DemoRecipe()
QUICK_RECIPE = DemoRecipe(train_samples=16, val_samples=8, num_frames=8, size=32, width=4, epochs=1, batch_size=8,
                          warmup_epochs=0.0,
                          head_kwargs={"tag": dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32, dropout=0.0),
                                       "art": dict(embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=32),
                                       "attentive": dict(embed_dim=16, num_heads=2, depth=1, mlp_ratio=2.0)})


def register(subparsers: argparse._SubParsersAction) -> None:
    from ._args import HelpFormatter, plain_text

    parser = subparsers.add_parser(
        "demo", help="TAG-Head vs mean pooling on a synthetic fine-grained task, on the CPU (a few minutes)",
        description=plain_text(__doc__), formatter_class=HelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=Path("taghead-demo"),
                        help="folder for the plots, runs and the saved model (default: ./taghead-demo)")
    parser.add_argument("--heads", default="tag,meanpool",
                        help="comma-separated registered heads to compare (default: tag,meanpool; also art, "
                             "attentive): ART gets a text bank of the class names, 'art-notext' is ART without it; "
                             "'attentive' is the attentive probe of V-JEPA")
    parser.add_argument("--quick", action="store_true", help="a few seconds: tiny data, one epoch (smoke test)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default: {DEMO_RECIPE.epochs}; --quick: {QUICK_RECIPE.epochs})")
    parser.add_argument("--train-samples", type=int, default=None,
                        help=f"training clips (default: {DEMO_RECIPE.train_samples}; --quick: "
                             f"{QUICK_RECIPE.train_samples})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core; 1 is faster on a busy machine)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier demo in --output (without it they are kept and the "
                             "demo stops)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    if args.threads is not None:
        if args.threads < 1:
            print(f"taghead demo: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    recipe = QUICK_RECIPE if args.quick else DEMO_RECIPE
    overrides = {k: v for k, v in (("epochs", args.epochs), ("train_samples", args.train_samples)) if v is not None}
    recipe = dataclasses.replace(recipe, **overrides)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    try:
        run_demo(heads, recipe, args.output, seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite)
    except (ValueError, TypeError, OSError) as err:  # OSError: an earlier demo's outputs (FileExistsError)
        print(f"taghead demo: error: {err}", file=sys.stderr)
        return 2
    return 0


def demo_outputs(heads: list[str]) -> list[str]:
    """The files and folders a demo of ``heads`` writes into its output folder."""
    return ["demo_curves.png", "runs", *(f"{h}_model" for h in heads), "example_clip.mp4", "example_explanation.png"]


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def run_demo(heads: list[str], recipe: DemoRecipe, output: Path, *, seed: int = 0, progress: bool = True,
             overwrite: bool = False) -> list[dict]:
    """Train and compare ``heads``; returns one result dict per head (``head``, ``top1``, ``mca``, ...).

    An ``output`` that holds an earlier demo's outputs (:func:`demo_outputs`) is refused with a
    ``FileExistsError`` before anything is done, unless ``overwrite``.
    """
    from taghead.engine.plots import plot_training_curves
    from taghead.engine.trainer import Trainer, seed_everything
    from taghead.heads import list_heads

    if not heads:
        raise ValueError("--heads is empty; give e.g. tag,meanpool")
    if len(set(heads)) != len(heads):
        raise ValueError(f"--heads names a head twice: {heads}")
    unknown = [h for h in heads if DEMO_VARIANTS.get(h, (h,))[0] not in list_heads()]
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}; registered heads: {list_heads()}, and {sorted(DEMO_VARIANTS)}")
    output = Path(output)
    earlier = [name for name in demo_outputs(heads) if (output / name).exists()]
    if earlier and not overwrite:
        raise FileExistsError(f"{str(output)!r} holds the outputs of an earlier demo ({', '.join(earlier)}); nothing was "
                              "changed. Pass --overwrite to replace them, or --output another folder")
    output.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    num_classes = recipe.classes
    chance = 1 / num_classes
    print(f"taghead demo: {num_classes} synthetic action classes that differ only in where and in which order two "
          f"small flashes happen (chance {100 * chance:.1f}%).")
    print(f"Rendering {recipe.train_samples} training + {recipe.val_samples} validation clips "
          f"({recipe.num_frames} frames, {recipe.size}x{recipe.size}) ...", flush=True)
    sets = recipe.render(seed, progress)
    class_names = sets["train"].class_names
    print(f"  done in {time.time() - t_start:.0f} s")

    results, histories, models = [], {}, {}
    for name in heads:
        head, text = DEMO_VARIANTS.get(name, (name, True))
        label = head if name == head else f"{head} (no text bank)"
        print(f"\n== {name}: tiny 3D CNN (width {recipe.width}) + {label} head, {recipe.epochs} epochs ==", flush=True)
        seed_everything(seed)
        model = recipe.build_model(head, class_names, **head_kwargs_for(head, recipe, class_names, text=text))
        trainer = Trainer(model, sets["train"], sets["val"], recipe.train_config(seed, progress), output_dir=output / "runs" / name,
                          ctx=None, class_names=class_names, overwrite=overwrite)
        t0 = time.time()
        history = trainer.fit()
        seconds = time.time() - t0
        last = history[-1]
        histories[name], models[name] = history, model
        results.append({
            "head": name, "top1": last["val_top1"], "mca": last["val_mca"],
            "best_top1": max(r["val_top1"] for r in history),
            "params": sum(p.numel() for p in model.parameters()),
            "head_params": sum(p.numel() for p in model.head.parameters()),
            "seconds": seconds,
        })

    print("\n| head | val Top-1 | val MCA | params (head) | train time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['head']} | {100 * r['top1']:.1f}% | {100 * r['mca']:.1f}% | {_fmt_params(r['params'])} "
              f"({_fmt_params(r['head_params'])}) | {r['seconds']:.0f} s |")
    print(f"chance: {100 * chance:.1f}%")
    curves = plot_training_curves(histories, output / "demo_curves.png", chance=chance,
                                  title="synthetic fine-grained benchmark: same backbone, different heads")
    print(f"training curves: {curves}")
    by_head = {r["head"]: r for r in results}
    for other, title in (("meanpool", "mean pooling"), ("attentive", "the attentive probe")):
        if "tag" in by_head and other in by_head:
            gap = 100 * (by_head["tag"]["top1"] - by_head[other]["top1"])
            print(f"TAG-Head vs {title}: {gap:+.1f} Top-1 points on the same backbone.")

    first = heads[0] if "tag" not in models else "tag"
    _save_reload_predict(models[first], first, sets["val"], output)
    _explain_example(models[first], first, sets["val"], output)
    print(f"\ntotal time {time.time() - t_start:.0f} s; outputs in {output}/")
    return results


def _save_reload_predict(model: Any, head: str, val: Any, output: Path) -> None:
    """save_pretrained -> from_pretrained -> write a clip as mp4 -> decode it -> predict."""
    import torch

    import taghead
    from taghead.engine.predict import predict_videos, topk_predictions

    folder = model.save_pretrained(output / f"{head}_model")
    reloaded = taghead.from_pretrained(folder)
    clip, label = val[0]
    with torch.no_grad():
        same = torch.allclose(model.eval()(clip[None]), reloaded(clip[None]), atol=1e-5)
    print(f"\nsaved the {head} model to {folder} and reloaded it with taghead.from_pretrained "
          f"(identical logits: {same})")
    try:
        from taghead.data import write_video
    except ImportError:  # pragma: no cover - PyAV missing: predict the in-memory clip
        write_video = None
    if write_video is not None:
        path = write_video(output / "example_clip.mp4", val.frames[0])
        prediction = predict_videos(reloaded, [path], k=3)[0]
        where = f"{path} (decoded with PyAV)"
    else:  # pragma: no cover
        prediction = topk_predictions(reloaded, clip[None], k=3, sources=["validation clip 0"])[0]
        where = "validation clip 0"
    if prediction.error:
        print(f"prediction on {where} failed: {prediction.error}")
        return
    ranked = ", ".join(f"{name} {100 * s:.1f}%" for name, s in zip(prediction.labels, prediction.scores))
    print(f"prediction on {where}: {ranked}  (true class: {val.class_names[label]})")


def _explain_example(model: Any, head: str, val: Any, output: Path) -> None:
    """``taghead.explain`` (HiResCAM, which follows a position-aware head such as TAG-Head) on validation clip 0: a
    sheet with the true flash boxes, and how concentrated the heatmap is on them."""
    from taghead.explanation import concentration_ratio, explain, save_sheet
    from taghead.explanation.render import METHOD_TITLES

    clip, label = val[0]
    result = explain(model, clip, method="hirescam")
    truth = val.source  # the SyntheticFineGrainedDataset the clips were rendered from
    events = truth.events(0)
    sheet = save_sheet(result, val.frames[0], output / "example_explanation.png",
                       title=f"taghead demo: the {head} model on validation clip 0 (dashed: where the flashes are)",
                       boxes=[(event.frames, event.box) for event in events], true_label=val.class_names[label])
    ratio = concentration_ratio(result.heatmap, truth.event_mask(0, events))
    print(f"explanation of that clip ({METHOD_TITLES.get(result.method, result.method)}): {sheet}; the heatmap is "
          f"{ratio:.1f}x as high inside the flashes (their boxes, during their frames) as elsewhere")
