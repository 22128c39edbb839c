"""``taghead predict VIDEO... --model DIR``: top-k labels with their probabilities for each video."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

DESCRIPTION = """\
Decode each video (num_frames frames uniformly over the whole clip, centre crop, normalisation from the
model's data config) and print its top-k classes with softmax probabilities. An unreadable video is reported
and skipped. Which weights were loaded is printed first, on stderr (a training output folder: the best
validation epoch's, with its epoch and metrics; pass DIR/checkpoint_last.pt for the final epoch's).
"""

EPILOG = """examples:
  taghead predict clip1.mp4 clip2.mp4 --model runs/gym99           (a training output folder: its best/ model)
  taghead predict clip1.mp4 --model runs/gym99/checkpoint_last.pt   (the final epoch's weights)
  taghead predict videos/*.mp4 --model my-model/ -k 3 --json        (one JSON object per video)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ._args import add_command_parser, add_device_argument, add_video_model_arguments, positive_int

    parser = add_command_parser(
        subparsers, "predict", help="top-k labels and scores for video files",
        description=DESCRIPTION, epilog=EPILOG,
    )
    add_video_model_arguments(parser)
    parser.add_argument("-k", "--topk", type=positive_int, default=5, help="labels per video (default 5)")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    add_device_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("predict", _run, args)


def _run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..engine.predict import load_model_with_source, predict_videos
    from ..utils.escape import terminal_text
    from ._args import resolve_device

    loaded = load_model_with_source(args.model, device=resolve_device(args.device))
    model = loaded.model
    # stderr: stdout stays the predictions (--json)
    print(f"taghead predict: {terminal_text(loaded.line())}", file=sys.stderr)
    results = predict_videos(model, args.videos, k=args.topk, batch_size=args.batch_size)
    for r in results:
        if args.json:
            print(json.dumps(r.to_dict()))  # JSON escapes control characters itself
        elif r.error:
            print(f"{terminal_text(r.source)}: error: {terminal_text(r.error)}")
        else:
            ranked = ", ".join(f"{terminal_text(label)} ({score:.3f})" for label, score in zip(r.labels, r.scores))
            print(f"{terminal_text(r.source)}: {ranked}")
    return 1 if any(r.error for r in results) else 0
