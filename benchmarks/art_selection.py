"""Does ART's top-k selection of class semantics learn? The true class among the selected ones, before and after training.

ART appends to every frame the ``top_k`` class semantics of its text bank that the frame is most
related to (and anchors the aggregation saliency on the video's top-``k``). This script trains an
``ARTHead`` alone (no backbone) on separable synthetic features and reports, on held-out clips in eval
mode, how often the true class is among the selected semantics (chance ``top_k / num_classes``),
per frame (``head.selected_classes``) and per video (``head.selected_video_classes``), before and
after training, with the classification accuracy and the text-space accuracy of the video
representation (``video_to_text`` against the bank, the scores the video-consistency term trains),
for both ``selection`` modes (``"video"``: the clip's top-``k`` for every frame; ``"frame"``: per frame).

Task: ``num_classes`` random unit directions in the ``C``-channel feature space; every token of every
frame of a clip of class ``k`` is ``signal * mu_k + noise`` (standard normal). The class names are
gymnastics elements, encoded by the hashing text encoder (no downloads).

    python benchmarks/art_selection.py            # the issue-13 setting: 10 classes, top-3, 400 Adam steps
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from taghead import ARTHead, HashingTextEncoder, build_text_bank
from taghead.heads.art_losses import winner_take_all_scores

NAMES = (
    "salto backward tucked", "salto backward piked", "salto backward stretched with 1 twist",
    "salto forward tucked", "split jump", "switch leap", "ring leap", "handspring forward",
    "round-off", "wolf jump",
)
C, GRID = 32, (4, 3, 3)
HEAD = dict(embed_dim=32, num_heads=4, se_depth=1, rssa_depth=1, mlp_dim=64, num_queries=2, dropout=0.0,
            drop_rate=0.0)


def separable_features(n: int, num_classes: int, signal: float, seed: int,
                       directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, C, T, H, W]`` features whose every token is ``signal * mu_y + noise``, and the labels ``y``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = torch.randn(n, C, *GRID, generator=g) + signal * directions[y].view(n, C, 1, 1, 1)
    return x, y


@torch.no_grad()
def selection_report(head: ARTHead, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Eval-mode rates: true class among the selected semantics per frame and per video; top-1; text-space top-1."""
    head.eval()
    logits = head(x)
    frames = head.selected_classes  # [B, T, k]
    videos = head.selected_video_classes  # [B, k]
    out = {
        "frames": float((frames == y.view(-1, 1, 1)).any(-1).float().mean()),
        "videos": float((videos == y.view(-1, 1)).any(-1).float().mean()),
        "top1": float((logits.argmax(1) == y).float().mean()),
    }
    features = head.forward_features(x)
    video_global = features[:, : head.embed_dim]
    scores = winner_take_all_scores(head.video_to_text(video_global), head.text_bank, 1.0)
    out["text_top1"] = float((scores.argmax(1) == y).float().mean())
    return out


def run(num_classes: int, top_k: int, steps: int, lr: float, signal: float, seed: int, dim: int,
        selection: str) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(num_classes, C, generator=g), dim=-1)
    x_train, y_train = separable_features(320, num_classes, signal, seed + 1, directions)
    x_val, y_val = separable_features(200, num_classes, signal, seed + 2, directions)
    bank = build_text_bank(list(NAMES[:num_classes]), encoder=HashingTextEncoder(dim), progress=False)
    torch.manual_seed(seed)
    head = ARTHead(C, *GRID, num_classes=num_classes, text_bank=bank, top_k=top_k, selection=selection, **HEAD)
    before = selection_report(head, x_val, y_val)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    batch = 64
    t0 = time.time()
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (batch,), generator=g)
        head.train()
        logits = head(x_train[idx])
        loss = F.cross_entropy(logits, y_train[idx]) + sum(head.losses(logits, y_train[idx]).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        head.update_ema()
    after = selection_report(head, x_val, y_val)
    return {"before": before, "after": after, "seconds": time.time() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--signal", type=float, default=1.0, help="class signal per token (noise std 1)")
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--selection", nargs="+", default=["video", "frame"], choices=["video", "frame"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.classes} classes, top-{args.top_k} (chance {args.top_k / args.classes:.2f}), {args.steps} Adam steps "
          f"(lr {args.lr:g}, batch 64), separable features (signal {args.signal:g}), hashing text bank "
          f"(dim {args.text_dim}); held-out clips, eval mode")
    print("selection | seed | when   | true class selected: frames | videos | Top-1 | text-space Top-1")
    for selection in args.selection:
        for seed in args.seeds:
            result = run(args.classes, args.top_k, args.steps, args.lr, args.signal, seed, args.text_dim, selection)
            for when in ("before", "after"):
                r = result[when]
                print(f"{selection:9s} | {seed:4d} | {when:6s} | {r['frames']:27.2f} | {r['videos']:6.2f} | "
                      f"{r['top1']:5.2f} | {r['text_top1']:16.2f}", flush=True)


if __name__ == "__main__":
    main()
