"""Parameters and FLOPs of every built-in backbone with a TAG-Head, and the reference configuration.

Usage: ``.venv/bin/python benchmarks/model_stats.py [--no-write]``

Every registered backbone is wrapped with the default TAG-Head (2 post-norm layers, 8 heads,
feed-forward 512, tokens wider than 512 projected to 512) at the backbone's default clip, plus two timm
image models (8 frames), and the default head's size is checked against the target of at most 25 % of
the parameters of every backbone with 20 M or more. Models are built on the ``meta`` device where their
builders allow it (no memory, no initialisation) and counted
with ``torch.utils.flop_counter.FlopCounterMode`` on shape-only tensors, so the whole table takes
seconds. FLOPs count a multiply-add as 2; papers usually quote multiply-adds (GMACs = GFLOPs / 2).
The reference rows compare R(2+1)D-34 + TAG-Head (paper presets) with the paper's 69.9 M parameters
and 153.4 GFLOPs. The table is printed and written to ``benchmarks/RESULTS.md`` (section ``model_stats``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import taghead  # noqa: E402
from taghead.heads.tag import TAG_PRESETS  # noqa: E402
from taghead.utils import ModelStats, model_stats  # noqa: E402

TIMM_EXAMPLES = ("timm/resnet50", "timm/vit_base_patch16_224")
PAPER_PARAMS_M, PAPER_GFLOPS = 69.9, 153.4
#: The default head may add at most this fraction of parameters to a backbone of LARGE_BACKBONE parameters or more.
HEAD_PARAMS_TARGET, LARGE_BACKBONE = 0.25, 20e6


def _stats(name: str, num_classes: int = 99, **kwargs) -> tuple[taghead.VideoClassifier, ModelStats]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = taghead.wrap_backbone(name, num_classes, **kwargs)
        except RuntimeError:  # a builder that reads tensor values (e.g. pytorchvideo MViT): build for real
            model = taghead.wrap_backbone(name, num_classes, **kwargs)
    cfg = model.data_config
    return model, model_stats(model, (1, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size))


def _row(name: str, model: taghead.VideoClassifier, s: ModelStats) -> str:
    cfg = model.data_config
    _, c, t, h, w = s.feature_shape
    return (f"| `{name}` | {cfg.num_frames}x{cfg.crop_size}² | {c}x{t}x{h}x{w} | {s.backbone_params / 1e6:.1f} | "
            f"{s.head_params / 1e6:.2f} | {s.backbone_flops / 1e9:.1f} | {s.head_flops / 1e9:.2f} | "
            f"{s.head_params_overhead:.1f}% / {s.head_flops_overhead:.2f}% |")


def backbone_table() -> str:
    names = [n for n in taghead.list_backbones() if n != "taghead/tiny_video_cnn"] + list(TIMM_EXAMPLES)
    lines = [
        "| backbone | clip (frames x crop²) | feature map (C x T x H x W) | backbone params (M) | "
        "head params (M) | backbone GFLOPs | head GFLOPs | head overhead (params / FLOPs) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    large: dict[str, float] = {}
    for name in tqdm(names, desc="backbones", file=sys.stderr):
        model, s = _stats(name)
        lines.append(_row(name, model, s))
        if s.backbone_params >= LARGE_BACKBONE:
            large[name] = s.head_params / s.backbone_params
    worst = max(large, key=large.__getitem__)
    met = "met" if large[worst] <= HEAD_PARAMS_TARGET else "NOT met"
    lines += ["", f"Target of at most {100 * HEAD_PARAMS_TARGET:.0f} % head parameters on the {len(large)} backbones "
                  f"with {LARGE_BACKBONE / 1e6:.0f} M parameters or more: {met} (largest: `{worst}`, "
                  f"{100 * large[worst]:.1f} %)."]
    return "\n".join(lines)


def reference_table() -> str:
    lines = [
        "| configuration | params (M) | GFLOPs (multiply-add = 2) | GMACs (multiply-add = 1) | "
        "paper: params / GFLOPs |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for preset in ("haa500", "gym99", "gym288"):
        p = TAG_PRESETS[preset]
        model, s = _stats("taghead/r2plus1d_34", p["num_classes"], num_frames=p["num_frames"], crop_size=112,
                          mlp_dim=p["mlp_dim"])
        assert model.head.grid == (p["t"], p["h"], p["w"]), model.head.grid
        lines.append(
            f"| R(2+1)D-34 + TAG-Head `{preset}` ({p['num_frames']}x112², T={p['t']}, ff {p['mlp_dim']}, "
            f"{p['num_classes']} classes) | {s.params / 1e6:.1f} | {s.flops / 1e9:.1f} | {s.gmacs:.1f} | "
            f"{PAPER_PARAMS_M} / {PAPER_GFLOPS} |"
        )
        lines.append(
            f"| &nbsp;&nbsp;of which the head | {s.head_params / 1e6:.2f} | {s.head_flops / 1e9:.2f} | "
            f"{s.head_flops / 2e9:.2f} | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    reference = reference_table()
    backbones = backbone_table()
    markdown = (
        "### Model size: R(2+1)D-34 + TAG-Head (reference) vs the paper\n\n" + reference +
        "\n\n### Every built-in backbone with the default TAG-Head, at its default clip (batch 1)\n\n"
        "Default head: 2 post-norm layers of 8 heads, feed-forward 512, tokens wider than 512 projected to 512, 99 "
        "classes.\n\n" + backbones +
        "\n\nFLOPs from `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention; "
        "a multiply-add counts 2). Head overhead is relative to the backbone. Produced by "
        "`benchmarks/model_stats.py`."
    )
    print(markdown)
    if not args.no_write:
        from _results import write_section

        write_section("model_stats", markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
