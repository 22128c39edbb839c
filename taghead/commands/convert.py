"""``taghead convert SRC.pth --preset gym99 --out DIR [--push-to-hub REPO]``: reference checkpoint -> Hub folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a TAG-Head reference checkpoint into a Hub-ready taghead folder",
        description=(
            "Convert a checkpoint of the TAG-Head reference implementation (haa500_best.pth, gym99_best.pth, "
            "gym288_last.pth, the checkpoints the authors train and name, of which no public copy exists yet; or "
            "any state dict in their layout) into a folder holding model.safetensors, "
            "config.json and a model card, loadable with taghead.from_pretrained(DIR). The file is read with "
            "torch.load(weights_only=True); files holding pickled objects are refused."
        ),
    )
    parser.add_argument("src", type=Path, help="reference .pth file (bare state dict or under model_state_dict)")
    parser.add_argument("--preset", choices=("haa500", "gym99", "gym288"), default=None,
                        help="reference preset (default: inferred from the checkpoint's shapes)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None,
                        help="also upload the folder to this Hugging Face Hub repository (org/name)")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.add_argument("--token", default=None, help="Hub token (default: the one saved by `hf auth login`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import load_official
    from ..weights import CheckpointError, StateDictMismatchError

    try:
        model = load_official(args.src, preset=args.preset)
    except (CheckpointError, StateDictMismatchError, ValueError) as err:
        print(f"taghead convert: error: {err}", file=sys.stderr)
        return 1
    model.save_pretrained(args.out, repo_id=args.push_to_hub)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.src} ({model.architecture}, {model.num_classes} classes, {n_params / 1e6:.1f} M "
          f"parameters) -> {args.out}")
    if args.push_to_hub:
        info = model.push_to_hub(args.push_to_hub, private=args.private or None, token=args.token,
                                 commit_message=f"Convert {args.src.name} (TAG-Head reference) with taghead")
        print(f"uploaded to {getattr(info, 'commit_url', None) or args.push_to_hub}")
    return 0
