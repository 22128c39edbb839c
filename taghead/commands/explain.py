"""``taghead explain VIDEO... --model MODEL --output DIR``: where and when the model saw its class, as pictures."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsIndex

if TYPE_CHECKING:
    from ..models.classifier import VideoClassifier

__all__ = ["register", "run", "explain_videos"]

DESCRIPTION = """\
For each video (decoded like predict: num_frames frames uniformly over the whole clip, centre crop, the model's
normalisation) explain the predicted class, or --target, with --method, and write DIR/<video name>.png (sampled
frames with the heatmap overlaid, the relevance over time, the top classes; for ART heads one colour per region
query) and DIR/<video name>.mp4 (every frame with the heatmap blended in). An unreadable video is reported and
skipped.
"""

EPILOG = """examples:
  taghead explain clip.mp4 --model runs/gym99 --output explained/              (a training output folder)
  taghead explain videos/*.mp4 --model my-model/ --method occlusion --output explained/
  taghead explain clip.mp4 --model my-model/ --target "salto backward tucked" --output explained/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..explanation.methods import METHODS
    from ._args import add_command_parser, add_device_argument, add_video_model_arguments, positive_int

    parser = add_command_parser(
        subparsers, "explain", help="heatmaps of where and when a model saw its class, for video files",
        description=DESCRIPTION, epilog=EPILOG,
    )
    add_video_model_arguments(parser)
    parser.add_argument("--output", required=True, help="folder for the PNG sheets and the overlay videos")
    parser.add_argument("--target", default=None,
                        help="class name or index to explain (default: each video's predicted class)")
    parser.add_argument("--method", choices=sorted(METHODS), default="gradcam",
                        help="gradcam (default), hirescam (follows heads that read positions, such as TAG-Head), or "
                             "occlusion (no gradients; one head pass per 2x2 patch of tokens)")
    parser.add_argument("--frames", type=positive_int, default=8, help="frames shown on each sheet (default 8)")
    parser.add_argument("--fps", type=positive_int, default=8, help="frame rate of the overlay videos (default 8)")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _parse_target(target: str | None, label_names: list[str] | None) -> int | str | None:
    """A class name as given; digits that are not a class name are an index."""
    if target is None or (label_names and target in label_names):
        return target
    return int(target) if target.strip().lstrip("-").isdigit() else target


def explain_videos(model: VideoClassifier, paths: Iterable[str | os.PathLike[str]],
                   output: str | os.PathLike[str], *, target: SupportsIndex | str | None = None,
                   method: str = "gradcam", frames: int = 8, fps: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """Explain every video of ``paths`` and draw its sheet and overlay video into ``output``.

    Returns one record per video: ``source``, and either ``error`` or ``target``, ``target_name``,
    ``probability``, ``sheet``, ``video``. A video that fails (unreadable, or anything that goes wrong
    while it is explained or drawn) gets an ``error`` and the others go on; a bad ``target`` or
    ``method`` raises (it would fail for every video).
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    from ..data import VideoDecodeError, load_clip
    from ..explanation import display_frames, explain, save_overlay_video, save_sheet
    from ..explanation.core import class_index
    from ..explanation.methods import check_method

    data_config = getattr(model, "data_config", None)
    if data_config is None:
        raise ValueError("the model has no data_config (frames, crop, normalisation); use a taghead.VideoClassifier")
    if target is not None:
        target = class_index(model, target)  # a bad target fails before any video is decoded
    method = check_method(method)  # fails before any video is decoded too
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    used: set[str] = set()
    for path in tqdm([str(p) for p in paths], desc="explain", unit="video", disable=not progress):
        try:
            clip = load_clip(path, data_config)
        except (VideoDecodeError, FileNotFoundError, OSError) as err:
            records.append({"source": path, "error": str(err)})
            continue
        try:
            result = explain(model, clip, target, method=method)
            stem = Path(path).stem or "video"
            name, n = stem, 1
            while name in used:  # two videos with the same name from different folders
                n += 1
                name = f"{stem}_{n}"
            used.add(name)
            shown = display_frames(clip, data_config.mean, data_config.std)
            sheet = save_sheet(result, shown, output / f"{name}.png", title=path, num_frames=frames)
            video = save_overlay_video(result, shown, output / f"{name}.mp4", fps=fps)
        except Exception as err:  # one video's failure (a drawing error, memory) must not stop the others
            records.append({"source": path, "error": f"{type(err).__name__}: {err}"})
            continue
        records.append({"source": path, "target": result.target, "target_name": result.target_name,
                        "probability": result.probability, "sheet": str(sheet), "video": str(video)})
    return records


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("explain", _run, args)


def _run(args: argparse.Namespace) -> int:
    from ..engine.predict import load_model
    from ..utils.escape import terminal_text
    from ._args import check_output_folder, resolve_device

    output = check_output_folder(args.output)
    model = load_model(args.model, device=resolve_device(args.device))
    target = _parse_target(args.target, getattr(model, "label_names", None))
    records = explain_videos(model, args.videos, output, target=target, method=args.method,
                             frames=args.frames, fps=args.fps, progress=not args.no_progress)
    for r in records:
        source = terminal_text(r["source"])
        if "error" in r:
            print(f"{source}: error: {terminal_text(r['error'])}")
        else:
            label = r["target_name"] if r["target_name"] is not None else f"class {r['target']}"
            print(f"{source}: {terminal_text(label)} ({r['probability']:.3f}) -> {terminal_text(r['sheet'])}, "
                  f"{terminal_text(r['video'])}")
    return 1 if any("error" in r for r in records) else 0
