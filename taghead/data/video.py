"""Reading and writing video files with PyAV.

Why PyAV: it is a maintained binding to FFmpeg whose wheels bundle the FFmpeg libraries (H.264
included), so ``pip install av`` is all it takes, on any OS, CPU only. ``torchvision.io``'s video
API is deprecated, and torchcodec loads the system's FFmpeg libraries, which may be absent.

API:

- :func:`read_clip` ``(path, num_frames, total_frames=None) -> (frames, total)``: the clip of
  ``num_frames`` frames uniformly sampled over the whole video (:mod:`taghead.data.sampling`) as
  ``uint8 [num_frames, H, W, 3]`` RGB, decoded in one pass that converts only the sampled frames.
- :func:`count_frames` ``(path) -> int``: the number of frames, by decoding (container metadata can
  be missing or wrong).
- :func:`write_video` ``(path, frames, fps=8, codec="libx264", crf=12)``: encode
  ``uint8 [T, H, W, 3]`` frames as mp4, atomically.
- :class:`VideoDecodeError`: raised for any file that cannot be opened or decoded.

PyAV is imported on first use, so ``import taghead`` never needs it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .sampling import uniform_frame_indices

__all__ = ["VideoDecodeError", "read_clip", "count_frames", "write_video"]


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or decoded (missing, truncated, corrupt, no video stream)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot decode video {os.fspath(path)!r}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _av() -> Any:
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a dependency of the [video] extra
        raise ImportError("reading and writing videos needs PyAV: pip install 'taghead[video]' (or pip install av)") from err
    return av


def _open(path: str | os.PathLike) -> tuple[Any, Any]:
    """Open ``path`` and return ``(container, video_stream)``; errors become :class:`VideoDecodeError`."""
    av = _av()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file")
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(path, f"cannot open ({type(err).__name__}: {err})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _decode(path: str | os.PathLike, keep: set[int] | None) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame of ``path``; return the RGB arrays of the indices in ``keep`` and the count."""
    av = _av()
    container, stream = _open(path)
    frames: dict[int, np.ndarray] = {}
    count = 0
    try:
        for frame in container.decode(stream):
            if keep is None or count in keep:
                frames[count] = frame.to_ndarray(format="rgb24")
            count += 1
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(path, f"decoding failed after {count} frames ({type(err).__name__}: {err})") from None
    finally:
        container.close()
    if count == 0:
        raise VideoDecodeError(path, "no decodable frames")
    return frames, count


def count_frames(path: str | os.PathLike) -> int:
    """The number of frames of ``path``, found by decoding the whole stream (slow but always right)."""
    return _decode(path, keep=set())[1]


def _metadata_frames(path: str | os.PathLike) -> int:
    container, stream = _open(path)
    try:
        return int(stream.frames or 0)
    finally:
        container.close()


def read_clip(path: str | os.PathLike, num_frames: int, total_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the ``num_frames``-frame clip of ``path`` uniformly sampled over the whole video.

    Args:
        path: a video file.
        num_frames: frames in the clip.
        total_frames: frames in the video, if known (the split CSV's ``TotalFrames``); otherwise the
            container's metadata is used, or the frames are counted by decoding when it has none.

    Returns:
        ``(frames, total)``: ``uint8 [num_frames, H, W, 3]`` RGB frames and the number of frames the
        video actually has. When ``total_frames`` (or the metadata) disagrees a little with the
        decoded count, the indices are recomputed from the decoded count (a second pass when
        needed), so the clip is spread over the whole video.

    Raises:
        VideoDecodeError: the file is missing, unreadable, corrupt, has no decodable frame, or is
            truncated: fewer frames decode than announced, by more than ``max(2, 5 %)`` of the
            announced count (a file cut short, or a wrong ``TotalFrames``).
    """
    if total_frames is not None and (isinstance(total_frames, bool) or int(total_frames) < 1):
        raise ValueError(f"total_frames must be a positive int or None, got {total_frames!r}")
    planned = int(total_frames) if total_frames else _metadata_frames(path)
    if planned < 1:
        planned = count_frames(path)
    indices = uniform_frame_indices(planned, num_frames)
    frames, actual = _decode(path, keep=set(indices))
    if planned - actual > max(2, 0.05 * planned):
        raise VideoDecodeError(path, f"truncated: {actual} frames decode but {planned} were announced "
                                     f"({'TotalFrames' if total_frames else 'container metadata'})")
    if actual != planned:
        indices = uniform_frame_indices(actual, num_frames)
        if not set(indices) <= frames.keys():
            frames, actual = _decode(path, keep=set(indices))
    return np.stack([frames[i] for i in indices]), actual


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor,
    fps: int = 8,
    codec: str = "libx264",
    crf: int | None = 12,
) -> Path:
    """Encode ``uint8 [T, H, W, 3]`` RGB frames to ``path`` (mp4; yuv420p, so ``H`` and ``W`` must be even).

    The file is written to a temporary name in the same folder and renamed, so a crash never
    leaves a partial file under ``path``. ``crf`` is the libx264 quality (0 = lossless, 23 =
    FFmpeg's default; ignored by other codecs). Returns ``Path(path)``.
    """
    av = _av()
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"write_video expects uint8 frames [T, H, W, 3], got {got}")
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"write_video needs at least one frame and even H, W (yuv420p), got T={t}, H={h}, W={w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if crf is not None and codec == "libx264":
                stream.options = {"crf": str(crf)}
            for array in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
            container.mux(stream.encode(None))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
