"""``taghead explain VIDEO... --model MODEL --output DIR``: where and when the model saw its class, as pictures."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, SupportsIndex

if TYPE_CHECKING:
    from ..models.classifier import VideoClassifier

__all__ = ["register", "run", "explain_videos", "output_names", "plan_outputs"]

DESCRIPTION = """\
For each video (decoded like predict: num_frames frames uniformly over the whole clip, centre crop, the model's
normalisation) explain the predicted class, or --target, with --method (default: the method that suits the
model's head, printed at the start), and write two files named after the video's path below the videos'
common folder (val/jump/c.mp4 and val/spin/c.mp4 give jump/c.* and spin/c.*), with the method in the name:
DIR/<name>.<method>.png (the clip's frames, labelled with their frame number and time in the video, with the
heatmap overlaid; the relevance over time; the top classes; for ART heads one colour per region query) and
DIR/<name>.<method>.mp4 (every frame of the video, centre-cropped as the model saw it, with the heatmap
interpolated in time between the clip's frames, at the video's frame rate). Existing files are never replaced
unless --overwrite, and input videos never. An unreadable video is reported and skipped.
"""

EPILOG = """examples:
  taghead explain clip.mp4 --model runs/gym99 --output explained/              (a training output folder)
  taghead explain videos/*.mp4 --model my-model/ --method occlusion --output explained/
  taghead explain clip.mp4 --model my-model/ --target "salto backward tucked" --output explained/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..explanation.methods import AUTO, METHODS
    from ._args import (
        add_command_parser,
        add_device_argument,
        add_video_model_arguments,
        positive_float,
        positive_int,
    )

    parser = add_command_parser(
        subparsers, "explain", help="heatmaps of where and when a model saw its class, for video files",
        description=DESCRIPTION, epilog=EPILOG,
    )
    add_video_model_arguments(parser)
    parser.add_argument("--output", required=True, help="folder for the PNG sheets and the overlay videos")
    parser.add_argument("--target", default=None,
                        help="class name or index to explain (default: each video's predicted class)")
    parser.add_argument("--method", choices=[AUTO, *sorted(METHODS)], default=AUTO,
                        help="auto (default): hirescam for TAG-Head and unknown heads, occlusion for ART, gradcam "
                             "for mean pooling (what measured best on the synthetic benchmark); gradcam; hirescam "
                             "(follows heads that read positions, such as TAG-Head); occlusion (no gradients; one "
                             "head pass per 2x2 patch of tokens)")
    parser.add_argument("--frames", type=positive_int, default=8, help="frames shown on each sheet")
    parser.add_argument("--fps", type=positive_float, default=None,
                        help="frame rate of the overlay videos (default: the video's own, 8 when unknown)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files left by an earlier run (input videos are never replaced)")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


#: How the start-up line names the built-in heads.
_HEAD_NAMES = {"tag": "TAG-Head", "art": "ART", "meanpool": "mean pooling"}


def _parse_target(target: str | None, label_names: list[str] | None) -> int | str | None:
    """A class name as given; digits that are not a class name are an index."""
    if target is None or (label_names and target in label_names):
        return target
    return int(target) if target.strip().lstrip("-").isdigit() else target


def output_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Distinct, readable output names for the videos ``paths``: each path relative to the folder that holds them
    all, without its extension (``val/jump/c.mp4``, ``val/spin/c.mp4`` -> ``jump/c``, ``spin/c``; one video:
    ``c``). Two files that differ only in their extension keep it (``c_avi``); the same file twice gets ``_2``."""
    absolute = [os.path.abspath(os.fspath(p)) for p in paths]
    if not absolute:
        return []
    base = os.path.commonpath([os.path.dirname(a) for a in absolute])
    names: list[str] = []
    used: set[str] = set()
    first_ext: dict[str, str] = {}  # extension of the first file of each stem
    for a in absolute:
        stem, ext = os.path.splitext(os.path.relpath(a, base))
        name = stem or "video"
        if first_ext.setdefault(name, ext) != ext and ext:
            name = f"{name}_{ext.lstrip('.')}"
        n, unique = 1, name
        while unique in used:
            n += 1
            unique = f"{name}_{n}"
        used.add(unique)
        names.append(unique)
    return names


def plan_outputs(paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], method: str, *,
                 overwrite: bool = False) -> list[tuple[str, Path, Path]]:
    """``(name, sheet path, video path)`` for every video, checked before anything is written: no output may be an
    input video (never, whatever ``overwrite`` says), and no output may exist unless ``overwrite``.

    Raises:
        ValueError: an output path is one of the input videos.
        FileExistsError: outputs exist and ``overwrite`` is false (nothing is written).
    """
    output = Path(output)
    plan = [(name, output / f"{name}.{method}.png", output / f"{name}.{method}.mp4") for name in output_names(paths)]
    inputs = {os.path.realpath(os.fspath(p)) for p in paths}
    clash = [str(f) for _, *files in plan for f in files if os.path.realpath(f) in inputs]
    if clash:
        raise ValueError(f"the output {clash[0]!r} would replace an input video; choose another --output")
    existing = [str(f) for _, *files in plan for f in files if f.exists() or f.is_symlink()]
    if existing and not overwrite:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise FileExistsError(f"{len(existing)} output file(s) exist already ({', '.join(existing[:3])}{more}); nothing "
                              "was written. Choose another --output, or pass --overwrite to replace them")
    return plan


def explain_videos(model: VideoClassifier, paths: Iterable[str | os.PathLike[str]],
                   output: str | os.PathLike[str], *, target: SupportsIndex | str | None = None,
                   method: str = "auto", frames: int = 8, fps: float | None = None, progress: bool = True,
                   overwrite: bool = False) -> list[dict[str, Any]]:
    """Explain every video of ``paths`` and draw its sheet and overlay video into ``output``.

    Output names: :func:`output_names` plus ``.<method>.png`` / ``.<method>.mp4``, checked by :func:`plan_outputs`
    before any video is decoded. ``method="auto"`` takes the head's default
    (:func:`~taghead.explanation.methods.default_method`). Returns one record per video: ``source``, ``name``
    and either ``error`` or ``target``, ``target_name``, ``probability``, ``method``, ``sheet``, ``video``. A
    video that fails (unreadable, or anything that goes wrong while it is explained or drawn) gets an ``error``
    and the others go on; a bad ``target`` or ``method`` raises (it would fail for every video).
    """
    from tqdm.auto import tqdm

    from ..data import VideoDecodeError, load_clip_with_source
    from ..explanation import display_frames, explain, save_sheet
    from ..explanation.core import class_index
    from ..explanation.methods import resolve_method
    from ..explanation.render import save_video_overlay

    data_config = getattr(model, "data_config", None)
    if data_config is None:
        raise ValueError("the model has no data_config (frames, crop, normalisation); use a taghead.VideoClassifier")
    if target is not None:
        target = class_index(model, target)  # a bad target fails before any video is decoded
    method = resolve_method(method, model)  # fails before any video is decoded too
    paths = [os.fspath(p) for p in paths]
    plan = plan_outputs(paths, output, method, overwrite=overwrite)
    records: list[dict[str, Any]] = []
    for path, (name, sheet_path, video_path) in tqdm(list(zip(paths, plan)), desc="explain", unit="video",
                                                    disable=not progress):
        try:
            clip, source = load_clip_with_source(path, data_config)
        except (VideoDecodeError, FileNotFoundError, OSError) as err:
            records.append({"source": path, "name": name, "error": str(err)})
            continue
        try:
            result = explain(model, clip, target, method=method)
            sheet_path.parent.mkdir(parents=True, exist_ok=True)
            shown = display_frames(clip, data_config.mean, data_config.std)
            title = name + os.path.splitext(path)[1]
            sheet = save_sheet(result, shown, sheet_path, title=title, num_frames=frames, source=source)
        except Exception as err:  # one video's failure (a drawing error, memory) must not stop the others
            records.append({"source": path, "name": name, "error": f"{type(err).__name__}: {err}"})
            continue
        try:
            video = save_video_overlay(result, source, data_config, video_path, fps=fps)
        except Exception as err:  # e.g. readable for the clip, but not to its end this time: the others go on
            why = str(err) if isinstance(err, VideoDecodeError) else f"{type(err).__name__}: {err}"
            records.append({"source": path, "name": name, "error": f"{why} (the sheet {sheet} was written)"})
            continue
        records.append({"source": path, "name": name, "target": result.target, "target_name": result.target_name,
                        "probability": result.probability, "method": result.method, "sheet": str(sheet),
                        "video": str(video)})
    return records


def run(args: argparse.Namespace) -> int:
    from ._args import run_reporting_errors

    return run_reporting_errors("explain", _run, args)


def _run(args: argparse.Namespace) -> int:
    from ..engine.predict import load_model_with_source
    from ..explanation.methods import AUTO, resolve_method
    from ..explanation.render import METHOD_TITLES
    from ..utils.escape import terminal_text
    from ..weights import check_output_folder
    from ._args import resolve_device

    output = check_output_folder(args.output, "--output")
    loaded = load_model_with_source(args.model, device=resolve_device(args.device))
    model = loaded.model
    print(terminal_text(loaded.line()))
    method = resolve_method(args.method, model)
    head = getattr(model, "head", model)
    head = _HEAD_NAMES.get(getattr(head, "head_name", ""), type(head).__name__)
    why = f"the default for {head}; --method to choose" if args.method == AUTO else "--method"
    print(f"method: {METHOD_TITLES.get(method, method)} ({terminal_text(why)})", flush=True)
    target = _parse_target(args.target, getattr(model, "label_names", None))
    # CheckpointError and bad targets are ValueErrors, existing outputs a FileExistsError: run_reporting_errors
    records = explain_videos(model, args.videos, output, target=target, method=method, frames=args.frames,
                             fps=args.fps, progress=not args.no_progress, overwrite=args.overwrite)
    for r in records:
        source = terminal_text(r["source"])
        if "error" in r:
            print(f"{source}: error: {terminal_text(r['error'])}")
        else:
            label = r["target_name"] if r["target_name"] is not None else f"class {r['target']}"
            print(f"{source}: {terminal_text(label)} ({r['probability']:.3f}) -> {terminal_text(r['sheet'])}, "
                  f"{terminal_text(r['video'])}")
    return 1 if any("error" in r for r in records) else 0
