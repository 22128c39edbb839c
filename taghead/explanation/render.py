"""Pictures of an :class:`~taghead.explanation.Explanation`: a PNG sheet and an overlay video.

- :func:`display_frames` turns a normalised model input ``[3, T, H, W]`` back into ``uint8 [T, H, W, 3]``.
- :func:`save_sheet`: sampled frames with the heatmap overlaid, the relevance over time, the top
  classes with the explained one marked, and for ART one colour per region query (its region in each
  sampled frame and its track over the clip) with the class semantics the frames selected.
- :func:`save_overlay_video`: every frame of the clip (the model's input frames) with the heatmap blended in
  (and ART's query peaks as coloured squares), as mp4 (:func:`taghead.data.write_video`; small clips are
  enlarged to at least 256 pixels).
- :func:`save_video_overlay`: every frame of the source *video* (cropped as the model saw it) with the
  heatmap interpolated linearly in time between the clip's frames, at the video's frame rate.

matplotlib (the ``plot`` extra) and PyAV (``video``) are imported when a picture is drawn.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .core import Explanation

if TYPE_CHECKING:
    from ..config import DataConfig
    from ..data.dataset import ClipSource

__all__ = ["display_frames", "save_sheet", "save_overlay_video", "save_video_overlay", "heat_at", "QUERY_COLOURS",
           "METHOD_TITLES"]

#: One colour per ART region query (matplotlib's tab10 without red and orange, which the heatmap uses).
QUERY_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f")
#: How the methods are named in titles.
METHOD_TITLES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "occlusion": "occlusion"}
_HEAT_CMAP = "inferno"
_HEAT_ALPHA = 0.75  # opacity of the heatmap colour where the relevance is 1


def display_frames(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised clip ``float [3, T, H, W]`` as ``uint8 [T, H, W, 3]`` RGB (``x * std + mean``, clipped to [0, 1]).

    Args:
        video: the normalised clip ``float [3, T, H, W]``.
        mean: the per-channel mean it was normalised with.
        std: the per-channel standard deviation it was normalised with.
    """
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"display_frames expects one normalised clip [3, T, H, W], got "
                         f"{tuple(getattr(video, 'shape', ())) or type(video).__name__}")
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    rgb = (video.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 3, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _check_frames(frames: Any, explanation: Explanation) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    shape = tuple(explanation.heatmap.shape)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.shape != (*shape, 3):
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"frames must be uint8 [T, H, W, 3] = {[*shape, 3]} like the explanation's heatmap (see "
                         f"display_frames), got {got}")
    return frames


def _blend(frames: np.ndarray, heat: np.ndarray, cmap: Any) -> np.ndarray:
    """``uint8 [..., H, W, 3]`` frames with ``heat [..., H, W]`` in [0, 1] blended in (opacity grows with the heat)."""
    colour = cmap(heat)[..., :3]
    alpha = (_HEAT_ALPHA * heat)[..., None]
    return ((1 - alpha) * frames / 255.0 + alpha * colour).clip(0, 1)


def _sampled(length: int, count: int) -> list[int]:
    count = max(1, min(count, length))
    return sorted({round(i * (length - 1) / max(1, count - 1)) for i in range(count)})


def _peak_tracks(region_maps: torch.Tensor) -> np.ndarray:
    """``[num_queries, T, H, W]`` -> per query and frame the ``(x, y)`` of its region's peak: ``[num_queries, T, 2]``."""
    q, t, h, w = region_maps.shape
    flat = region_maps.reshape(q, t, h * w).argmax(-1)
    return torch.stack([flat % w, flat // w], dim=-1).numpy()


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def save_sheet(explanation: Explanation, frames: np.ndarray | torch.Tensor, path: str | os.PathLike, *,
               title: str | None = None, num_frames: int = 8, top_k: int = 5,
               boxes: Sequence[tuple[Sequence[int], tuple[int, int, int, int]]] | None = None,
               true_label: str | None = None, source: ClipSource | None = None) -> Path:
    """Draw ``explanation`` over ``frames`` (``uint8 [T, H, W, 3]``, e.g. :func:`display_frames`) into a PNG.

    Args:
        explanation: what :func:`~taghead.explain` found for the clip.
        frames: the clip's frames, ``uint8 [T, H, W, 3]``.
        path: the PNG file to write.
        title: first line of the title (e.g. the video's name).
        num_frames: frames shown (sampled uniformly over the clip).
        top_k: classes listed with their probabilities.
        boxes: ground truth to draw as dashed boxes, ``(frame indices, (x0, y0, x1, y1))`` each (e.g. the
            synthetic benchmark's :meth:`~taghead.data.SyntheticFineGrainedDataset.events`).
        true_label: the clip's true class, when known, for the title.
        source: where the clip's frames come from (:func:`taghead.data.load_clip_with_source`): frames are then
            labelled with their frame number in the video and its time, and the relevance plot's axis with
            the frame numbers; without it, with the clip's frame index ``0 .. T-1``.

    Every string (title, class names) is drawn as it is: ``$...$`` is not parsed as mathtext.
    """
    from ..engine.plots import plain_text

    return plain_text(_draw_sheet)(explanation, frames, path, title=title, num_frames=num_frames, top_k=top_k,
                                   boxes=boxes, true_label=true_label, source=source)


def _draw_sheet(explanation: Explanation, frames: np.ndarray | torch.Tensor, path: str | os.PathLike, *,
                title: str | None, num_frames: int, top_k: int,
                boxes: Sequence[tuple[Sequence[int], tuple[int, int, int, int]]] | None,
                true_label: str | None, source: ClipSource | None) -> Path:
    from ..engine.plots import _pyplot, _save

    plt = _pyplot()
    from matplotlib import colormaps
    from matplotlib.patches import Patch, Rectangle

    frames = _check_frames(frames, explanation)
    t_len, height, width = explanation.heatmap.shape
    if source is not None and len(source.frame_indices) != t_len:
        raise ValueError(f"source names {len(source.frame_indices)} frames, the explanation has {t_len}")
    labels = source.frame_labels(sep="\n") if source is not None else [f"frame {t}" for t in range(t_len)]
    shown = _sampled(t_len, num_frames)
    heat = explanation.heatmap.numpy()
    cmap = colormaps[_HEAT_CMAP]
    regions = explanation.region_heatmaps()
    art = regions is not None
    cols = len(shown)

    frame_rows = 2 if art else 1
    bottom_height = 1.9 if art else 1.35
    fig = plt.figure(figsize=(max(10.0, 1.45 * cols + 1.2), 2.0 * frame_rows + 1.75 + 1.35 * bottom_height),
                     layout="constrained")
    grid = fig.add_gridspec(frame_rows + 1, cols + 1, height_ratios=[1.0] * frame_rows + [bottom_height],
                            width_ratios=[1.0] * cols + [0.06])
    method = METHOD_TITLES.get(explanation.method, explanation.method)
    target = explanation.target_name or str(explanation.target)
    head = f"{title}\n" if title else ""
    truth = f"   ·   true class: {true_label}" if true_label is not None else ""
    fig.suptitle(f"{head}explained class: {target} (p = {explanation.probability:.2f})   ·   {method}{truth}",
                 fontsize=12)

    def draw_boxes(ax: Any, t: int) -> None:
        for frame_ids, (x0, y0, x1, y1) in boxes or ():
            if t in frame_ids:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.4,
                                       ls=(0, (3, 2))))

    for j, t in enumerate(shown):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(_blend(frames[t], heat[t], cmap), interpolation="nearest")
        draw_boxes(ax, t)
        ax.set_title(labels[t], fontsize=9 if source is not None else 10)
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel("heatmap", fontsize=10)
    cax = fig.add_subplot(grid[0, cols])
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)), cax=cax)
    bar.ax.tick_params(labelsize=8)

    tracks = None
    if art:
        region_np = regions.numpy()
        tracks = _peak_tracks(regions)
        num_queries = region_np.shape[0]
        colours = [QUERY_COLOURS[q % len(QUERY_COLOURS)] for q in range(num_queries)]
        for j, t in enumerate(shown):
            ax = fig.add_subplot(grid[1, j])
            grey = frames[t].mean(-1, keepdims=True).repeat(3, -1) / 255.0
            ax.imshow(0.35 + 0.5 * grey, interpolation="nearest")
            for q in range(num_queries):
                level = region_np[q, t]
                if level.max() > 0:
                    ax.contourf(level, levels=[0.5, 1.01], colors=[colours[q]], alpha=0.45)
                    ax.contour(level, levels=[0.5], colors=[colours[q]], linewidths=1.4)
                ax.plot(*tracks[q, t], marker="o", ms=4, color=colours[q], mec="white", mew=0.8)
            draw_boxes(ax, t)
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("ART queries", fontsize=10)
        fig.legend(handles=[Patch(color=c, alpha=0.7, label=f"query {q + 1}") for q, c in enumerate(colours)],
                   loc="outside lower center", ncols=min(num_queries, 8), fontsize=9,
                   title="ART region queries: region (attention >= half its peak) and peak, per frame",
                   title_fontsize=9)

    bottom = grid[frame_rows, :].subgridspec(1, 3 if art else 2, width_ratios=[1.4, 1.1, 0.8] if art else [1.6, 1.0])
    ax_time = fig.add_subplot(bottom[0, 0])
    steps = np.arange(t_len)
    share = 100 * explanation.frame_relevance.numpy()
    ax_time.bar(steps, share, color=cmap(0.6), width=0.85)
    ax_time.set(xlabel="frame of the video (clip frames, uniformly sampled)" if source is not None else "clip frame",
                ylabel="share of relevance (%)", title="relevance over time", xlim=(-0.6, t_len - 0.4))
    if source is not None:
        ticks = _sampled(t_len, 8)
        ax_time.set_xticks(ticks, labels=[str(source.frame_indices[t]) for t in ticks])
    for frame_ids, _ in boxes or ():
        ax_time.axvspan(min(frame_ids) - 0.5, max(frame_ids) + 0.5, color="0.6", alpha=0.25, lw=0)
    if boxes:
        ax_time.legend(handles=[Patch(color="0.6", alpha=0.4, label="ground-truth event frames")], fontsize=8,
                       loc="upper center")
    ax_time.grid(axis="y", alpha=0.3)
    ax_time.tick_params(labelsize=9)

    ax_top = fig.add_subplot(bottom[0, 1])
    top = explanation.top_classes(top_k)
    names = [_short(name) for _, name, _ in top][::-1]
    probs = [100 * p for _, _, p in top][::-1]
    colours_top = ["#d62728" if i == explanation.target else "0.6" for i, _, _ in top][::-1]
    bars = ax_top.barh(range(len(top)), probs, color=colours_top)
    ax_top.bar_label(bars, fmt="%.1f%%", fontsize=8, padding=2)
    ax_top.set_yticks(range(len(top)), labels=names, fontsize=9)
    ax_top.set(xlim=(0, 118), xlabel="probability (%)", title=f"top {len(top)} classes (red: explained)")
    ax_top.tick_params(axis="x", labelsize=9)

    if art:
        ax_track = fig.add_subplot(bottom[0, 2])
        mid = shown[len(shown) // 2]
        ax_track.imshow(0.35 + 0.5 * frames[mid].mean(-1, keepdims=True).repeat(3, -1) / 255.0,
                        interpolation="nearest")
        for q in range(tracks.shape[0]):
            xy = tracks[q]
            colour = QUERY_COLOURS[q % len(QUERY_COLOURS)]
            ax_track.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=1.5, alpha=0.9)
            ax_track.scatter(xy[:, 0], xy[:, 1], c=[colour], s=8 + 40 * np.linspace(0, 1, len(xy)), edgecolors="white",
                             linewidths=0.5, zorder=3)
        ax_track.set_xlim(-0.5, width - 0.5)
        ax_track.set_ylim(height - 0.5, -0.5)
        ax_track.set_xticks([])
        ax_track.set_yticks([])
        ax_track.set_title("query tracks (peak per frame,\nsmall = early, large = late)", fontsize=10)
        if explanation.selected_classes is not None:
            picked = explanation.selected_class_names
            counts: dict[str, int] = {}
            for row in picked:
                for name in row:
                    counts[name] = counts.get(name, 0) + 1
            common = sorted(counts, key=lambda n: -counts[n])[:3]
            lines = ["probability (%)", "", "text semantics the frames selected (top 3):"] + [
                textwrap.shorten(f"{name}: {counts[name]} of {len(picked)} steps", 48) for name in common]
            ax_top.set_xlabel("\n".join(lines), fontsize=9, loc="left")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def _mark_queries(frame: np.ndarray, peaks: np.ndarray, factor: int) -> None:
    """Draw each ART query's peak ``(x, y)`` (token-grid pixels of the clip) as a square in its colour with a white
    rim into one enlarged float frame ``[H * factor, W * factor, 3]``, in place."""
    half = max(2, factor)
    for q, (x, y) in enumerate(peaks):
        colour = np.array([int(QUERY_COLOURS[q % len(QUERY_COLOURS)][i:i + 2], 16) / 255 for i in (1, 3, 5)])
        cy, cx = y * factor + factor // 2, x * factor + factor // 2
        y0, y1 = max(0, cy - half), min(frame.shape[0], cy + half + 1)
        x0, x1 = max(0, cx - half), min(frame.shape[1], cx + half + 1)
        frame[y0:y1, x0:x1] = 1.0  # white rim
        frame[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = colour


def _to_uint8_even(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (``[..., H, W, 3]``) as ``uint8``, padded by edge pixels to even H and W (yuv420p)."""
    video = (frames * 255 + 0.5).astype(np.uint8)
    pad_h, pad_w = video.shape[-3] % 2, video.shape[-2] % 2
    if pad_h or pad_w:
        pad = [(0, 0)] * (video.ndim - 3) + [(0, pad_h), (0, pad_w), (0, 0)]
        video = np.pad(video, pad, mode="edge")
    return video


def save_overlay_video(explanation: Explanation, frames: np.ndarray | torch.Tensor, path: str | os.PathLike, *,
                       fps: int = 8, min_size: int = 256) -> Path:
    """The clip's frames ``frames`` (``uint8 [T, H, W, 3]``: the model's input frames, not every frame of a source
    video; :func:`save_video_overlay` does that) with the heatmap blended in, as an mp4 at ``path``, one video
    frame per clip frame.

    ART: each query's peak is marked by a small square in its colour (:data:`QUERY_COLOURS`). Clips
    smaller than ``min_size`` pixels are enlarged by an integer factor (nearest neighbour).

    Args:
        explanation: what :func:`~taghead.explain` found for the clip.
        frames: the clip's frames, ``uint8 [T, H, W, 3]``.
        path: the mp4 file to write.
        fps: frame rate of the video.
        min_size: clips smaller than this many pixels are enlarged.
    """
    from matplotlib import colormaps

    from ..data.video import write_video

    frames = _check_frames(frames, explanation)
    heat = explanation.heatmap.numpy()
    out = _blend(frames, heat, colormaps[_HEAT_CMAP])  # [T, H, W, 3] in [0, 1]
    regions = explanation.region_heatmaps()
    factor = max(1, math.ceil(min_size / min(out.shape[1:3])))
    out = out.repeat(factor, axis=1).repeat(factor, axis=2)
    if regions is not None:
        tracks = _peak_tracks(regions)  # [num_queries, T, 2]
        for t in range(out.shape[0]):
            _mark_queries(out[t], tracks[:, t], factor)
    return write_video(path, _to_uint8_even(out), fps=fps)


def heat_at(heatmap: np.ndarray, frame_indices: Sequence[int], frame: int) -> np.ndarray:
    """The heatmap ``[T, H, W]`` of a clip whose frames are the source frames ``frame_indices`` (non-decreasing), at
    source frame ``frame``: linear in time between the two clip frames around it, the first (last) clip frame's
    before (after) them."""
    idx = np.asarray(frame_indices, dtype=np.float64)
    if frame <= idx[0]:
        return heatmap[0]
    if frame >= idx[-1]:
        return heatmap[-1]
    k = int(np.searchsorted(idx, frame, side="right")) - 1  # idx[k] <= frame < idx[k + 1]
    w = (frame - idx[k]) / (idx[k + 1] - idx[k])
    return (1 - w) * heatmap[k] + w * heatmap[k + 1]


def save_video_overlay(explanation: Explanation, source: ClipSource, data_config: DataConfig,
                       path: str | os.PathLike, *, fps: float | None = None, min_size: int = 256) -> Path:
    """Every frame of the source video with the heatmap blended in, as an mp4 at ``path``.

    Each frame is decoded again, resized and centre-cropped as the model's input was (``data_config``), and
    gets the heatmap of :func:`heat_at`: the clip's heatmap interpolated linearly in time between the clip
    frames (``source.frame_indices``) around it. The video is decoded, blended and encoded one frame at a
    time, so its length costs time, not memory. ART: each query's peak (of the nearest clip frame) as a
    coloured square. ``fps``: default the source's frame rate (8 when unknown). Frames smaller than
    ``min_size`` pixels are enlarged by an integer factor (nearest neighbour).
    """
    from matplotlib import colormaps

    from ..data.video import iter_frames, write_video

    heat = explanation.heatmap.numpy()
    t_len, height, width = heat.shape
    if len(source.frame_indices) != t_len:
        raise ValueError(f"source names {len(source.frame_indices)} frames, the explanation has {t_len}")
    cmap = colormaps[_HEAT_CMAP]
    regions = explanation.region_heatmaps()
    tracks = _peak_tracks(regions) if regions is not None else None
    idx = np.asarray(source.frame_indices, dtype=np.float64)
    factor = max(1, math.ceil(min_size / min(height, width)))

    def blended() -> Any:
        for j, frame in enumerate(iter_frames(source.path, data_config.resize_size)):
            h, w = frame.shape[:2]
            if h < height or w < width:
                raise ValueError(f"frame {j} of {source.path!r} is {h}x{w}, smaller than the clip's {height}x{width}")
            top, left = (h - height) // 2, (w - width) // 2  # the centre crop of EvalTransform
            out = _blend(frame[top:top + height, left:left + width], heat_at(heat, idx, j), cmap)
            out = out.repeat(factor, axis=0).repeat(factor, axis=1)
            if tracks is not None:
                _mark_queries(out, tracks[:, int(np.abs(idx - j).argmin())], factor)
            yield _to_uint8_even(out)

    return write_video(path, blended(), fps=fps or source.fps or 8)
