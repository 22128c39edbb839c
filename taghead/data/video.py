"""Reading and writing video files with PyAV.

Why PyAV: it is a maintained binding to FFmpeg whose wheels bundle the FFmpeg libraries (H.264
included), so ``pip install av`` is all it takes, on any OS, CPU only. ``torchvision.io``'s video
API is deprecated, and torchcodec loads the system's FFmpeg libraries, which may be absent.

API:

- :func:`read_clip` ``(path, num_frames, total_frames=None, *, shrink_to=None, threads=None) ->
  (frames, total)``: the clip of ``num_frames`` frames uniformly sampled over the whole video
  (:mod:`taghead.data.sampling`) as ``uint8 [num_frames, H, W, 3]`` RGB, decoded in one pass that
  converts only the sampled frames (and, with ``shrink_to``, scales them down in the same step).
- :func:`count_frames` ``(path, threads=None) -> int``: the number of frames, by decoding (container
  metadata can be missing or wrong).
- :func:`frame_rate` ``(path) -> float | None``: the video's average frame rate from its metadata.
- :func:`iter_frames` ``(path, resize_to=None)``: every frame, one at a time, as ``uint8 [H, W, 3]`` RGB
  (shorter side scaled to ``resize_to``), for work on whole videos in bounded memory.
- :func:`write_video` ``(path, frames, fps=8, codec="libx264", crf=12)``: encode
  ``uint8 [T, H, W, 3]`` frames (or any iterable of ``[H, W, 3]`` frames) as mp4, atomically.
- :class:`VideoDecodeError`: raised for any file that cannot be opened or decoded.

Speed. Decoding every frame is unavoidable (H.264 frames depend on each other), so the decoder
sets the floor. Everything else is done on the sampled frames only and at the smallest size the
transforms need: with ``shrink_to`` each sampled frame is scaled and converted to RGB in one
swscale pass (``VideoReformatter.reformat``, one reused context; its bilinear filter widens with
the shrink factor, so it is antialiased like ``torch``'s ``interpolate(..., antialias=True)``: mean
absolute difference about 0.005 in [0, 1] pixel units on real clips, against up to 0.012 for
swscale's ``AREA`` or ``BICUBIC`` and up to 0.06 for ``FAST_BILINEAR``), into planar RGB
(swscale's fastest RGB output, and the channels-first layout the tensor transforms read). Without
it (or when the frames are not larger), the frames are converted at their own size, exactly as
``VideoFrame.to_ndarray(format="rgb24")``.

Threads. ``threads=None`` decodes with FFmpeg's automatic threading (frame and slice threads, as
many as it picks for the machine's cores; the scaler too) in the main process, and with one thread
inside a DataLoader worker, where the workers already keep the cores busy; an int forces that count
(``0``: automatic). ``benchmarks/bench_data.py`` measures both settings.

PyAV is imported on first use, so ``import taghead`` never needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..limits import MAX_DECODED_CLIP_BYTES
from ..weights import atomic_output
from .sampling import uniform_frame_indices
from .transforms import shorter_side_size

__all__ = ["VideoDecodeError", "read_clip", "count_frames", "frame_rate", "iter_frames", "write_video",
           "display_orientation"]


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or decoded (missing, truncated, corrupt, no video stream).

    Args:
        path: the file.
        reason: what went wrong, in words.
    """

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


def _resolve_threads(threads: int | None) -> int:
    """Decoder threads: ``None`` -> 1 inside a DataLoader worker, else 0 (FFmpeg's automatic choice)."""
    if threads is None:
        return 1 if torch.utils.data.get_worker_info() is not None else 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be None or an int >= 0 (0: automatic), got {threads!r}")
    return threads


def _open(path: str | os.PathLike, threads: int = 0) -> tuple[Any, Any]:
    """Open ``path`` and return ``(container, video_stream)``; errors become :class:`VideoDecodeError`.

    ``threads``: decoder threads (``1``: none; ``0``: automatic frame and slice threading).
    """
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
    if threads == 1:
        stream.thread_count = 1
    else:
        stream.thread_type = "AUTO"
        stream.thread_count = threads
    return container, stream


def display_orientation(frame: Any) -> tuple[bool, bool, bool]:
    """How to turn a decoded frame into the picture a player shows, from its display matrix (the rotation
    and mirroring that phones record instead of rotating the pixels): ``(transpose, flip_rows, flip_cols)``,
    applied in that order to an ``[H, W]`` image. ``(False, False, False)`` without a display matrix.

    FFmpeg's display matrix maps a pixel at ``(x, y)`` (``y`` down, centred) to
    ``(a x + c y, b x + d y)`` with ``[a b; c d]`` its linear part (libavutil ``display.h``); rounded to
    ``0, +-1`` it is one of the 8 right-angle rotations and mirrors. Matrices of other angles (not made by
    cameras) are rounded to the nearest of those.
    """
    try:
        from av.sidedata.sidedata import Type

        data = frame.side_data.get(Type.DISPLAYMATRIX)
    except (ImportError, AttributeError, KeyError):
        return False, False, False
    if data is None:
        return False, False, False
    raw = bytes(data)
    if len(raw) < 36:
        return False, False, False
    m = np.frombuffer(raw[:36], dtype="<i4").astype(np.float64) / 65536.0
    a, b, c, d = m[0], m[1], m[3], m[4]
    if abs(a) + abs(d) >= abs(b) + abs(c):  # axis-aligned: x' = a x, y' = d y
        return False, d < 0, a < 0
    return True, b < 0, c < 0  # axes swapped: x' = c y, y' = b x


def _turn_upright(frames: np.ndarray, orientation: tuple[bool, bool, bool]) -> np.ndarray:
    """``frames`` (``[..., H, W, 3]``) turned as :func:`display_orientation`'s ``(transpose, flip_rows,
    flip_cols)`` says; a copy without negative strides when flipped, else a view."""
    transpose, flip_rows, flip_cols = orientation
    if transpose:
        frames = frames.swapaxes(-3, -2)
    if flip_rows:
        frames = frames[..., ::-1, :, :]
    if flip_cols:
        frames = frames[..., ::-1, :]
    return np.ascontiguousarray(frames) if flip_rows or flip_cols else frames


class _FrameSink:
    """Converts the decoded frames that are kept and stores them: one slot per kept frame index.

    The first kept frame fixes the output size (``shrink_to`` applied to its size) and orientation (its
    display matrix, see :func:`display_orientation`); every kept frame is converted to that size, so a
    stream that changes resolution still gives one array. Scaled frames are stored planar
    (``[3, K, H, W]``: swscale's planar RGB output is its fastest, and the tensor transforms want
    channels first); unscaled ones interleaved (``[K, H, W, 3]``: the conversion
    ``to_ndarray(format="rgb24")`` does). Unscaled frames may take at most
    :data:`~taghead.limits.MAX_DECODED_CLIP_BYTES` together; larger ones are refused before any is stored.
    """

    def __init__(self, keep: Sequence[int], shrink_to: int | None, sws_threads: int,
                 path: str | os.PathLike = "") -> None:
        self.slot = {index: k for k, index in enumerate(keep)}
        self.shrink_to, self.sws_threads, self.path = shrink_to, sws_threads, path
        self.reformatter: Any = None  # one swscale context, made for the first kept frame, reused for the others
        self.buffer: np.ndarray | None = None
        self.size: tuple[int, int] = (0, 0)
        self.planar = False
        self.orientation = (False, False, False)

    def _allocate(self, height: int, width: int) -> None:
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()
        k = len(self.slot)
        if self.shrink_to is not None and min(height, width) > self.shrink_to:
            self.size, self.planar = shorter_side_size(height, width, self.shrink_to), True
            self.buffer = np.empty((3, k, *self.size), np.uint8)
        else:
            size = k * height * width * 3
            if size > MAX_DECODED_CLIP_BYTES:
                raise VideoDecodeError(
                    self.path, f"{k} frames of {width}x{height} pixels would take {size / 2**30:.1f} GiB decoded at "
                    f"their own size (limit: taghead.limits.MAX_DECODED_CLIP_BYTES = {MAX_DECODED_CLIP_BYTES / 2**30:.0f}"
                    " GiB); give the model's data config a resize_size, so that frames are shrunk while they are "
                    "decoded")
            self.size, self.planar = (height, width), False
            self.buffer = np.empty((k, height, width, 3), np.uint8)

    def put(self, index: int, frame: Any) -> None:
        if self.buffer is None:
            self._allocate(frame.height, frame.width)
            self.orientation = display_orientation(frame)
        h, w = self.size
        k = self.slot[index]
        if self.planar:
            planes = self.reformatter.reformat(frame, width=w, height=h, format="gbrp", interpolation="BILINEAR",
                                               threads=self.sws_threads).planes
            for channel, plane in zip((1, 2, 0), planes):  # gbrp stores G, B, R
                rows = np.frombuffer(plane, np.uint8, count=h * plane.line_size).reshape(h, plane.line_size)
                self.buffer[channel, k] = rows[:, :w]
        else:
            rgb = self.reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="BILINEAR",
                                            threads=self.sws_threads)
            self.buffer[k] = rgb.to_ndarray()

    def clip(self, indices: Sequence[int]) -> np.ndarray:
        """The frames of ``indices`` (all kept and decoded) as ``uint8 [len(indices), H, W, 3]``, turned as the
        display matrix says (a copy then, without negative strides)."""
        order = [self.slot[i] for i in indices]
        planar = self.buffer if self.planar else self.buffer.transpose(3, 0, 1, 2)
        if order != list(range(planar.shape[1])):
            planar = planar[:, order]
        return _turn_upright(planar.transpose(1, 2, 3, 0), self.orientation)


def _each_frame(path: str | os.PathLike, opened: tuple[Any, Any], visit: Callable[[int, Any], Any]) -> Iterator[Any]:
    """``visit(index, frame)`` for every decoded frame of the ``opened`` container (closed at the end), yielded in
    order; a decoding or conversion error and a stream without frames become :class:`VideoDecodeError`."""
    av = _av()
    container, stream = opened
    count = 0
    try:
        for frame in container.decode(stream):
            yield visit(count, frame)
            count += 1
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(path, f"decoding failed after {count} frames ({type(err).__name__}: {err})") from None
    finally:
        container.close()
    if count == 0:
        raise VideoDecodeError(path, "no decodable frames")


def _decode(path: str | os.PathLike, keep: Sequence[int], shrink_to: int | None = None, threads: int = 0,
            opened: tuple[Any, Any] | None = None) -> tuple[_FrameSink, int]:
    """Decode every frame of ``path`` (or of the already ``opened`` container, which is closed afterwards);
    convert those in ``keep`` (distinct indices). Returns them and the number of frames."""
    sink = _FrameSink(keep, shrink_to, sws_threads=threads, path=path)

    def convert_kept(index: int, frame: Any) -> None:
        if index in sink.slot:
            sink.put(index, frame)

    count = sum(1 for _ in _each_frame(path, opened or _open(path, threads), convert_kept))
    return sink, count


def frame_rate(path: str | os.PathLike) -> float | None:
    """The average frame rate of ``path``'s video stream from the container's metadata (``None`` when it has
    none). Raises :class:`VideoDecodeError` for a file that cannot be opened.

    Args:
        path: the video file.
    """
    container, stream = _open(path, threads=1)
    try:
        rate = stream.average_rate or stream.guessed_rate
    finally:
        container.close()
    return float(rate) if rate else None


def iter_frames(path: str | os.PathLike, resize_to: int | None = None, threads: int | None = None) -> Iterator[np.ndarray]:
    """Every frame of ``path`` in order, as ``uint8 [H, W, 3]`` RGB, decoded and converted one at a time, upright
    as a player shows it (the display matrix applied, as :func:`read_clip` does).

    ``resize_to``: scale each frame (up or down, bilinear) so that its shorter side is ``resize_to``, the
    aspect ratio kept as :func:`~taghead.data.transforms.shorter_side_size` rounds it. Raises
    :class:`VideoDecodeError` for a file that cannot be opened or decoded.

    Args:
        path: the video file.
        resize_to: the shorter side of every frame in pixels (``None``: as stored).
        threads: decoder threads (``None``: automatic).
    """
    from av.video.reformatter import VideoReformatter

    threads = _resolve_threads(threads)
    reformatter = VideoReformatter()

    def rgb(index: int, frame: Any) -> np.ndarray:
        h, w = (frame.height, frame.width) if resize_to is None else shorter_side_size(frame.height, frame.width,
                                                                                         resize_to)
        array = reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="BILINEAR",
                                     threads=threads).to_ndarray()
        return _turn_upright(array, display_orientation(frame))  # as read_clip gives the clip's frames

    yield from _each_frame(path, _open(path, threads), rgb)


def count_frames(path: str | os.PathLike, threads: int | None = None) -> int:
    """The number of frames of ``path``, found by decoding the whole stream (slow but always right).

    Args:
        path: the video file.
        threads: decoder threads (``None``: automatic).
    """
    return _decode(path, keep=(), threads=_resolve_threads(threads))[1]


def read_clip(
    path: str | os.PathLike,
    num_frames: int,
    total_frames: int | None = None,
    *,
    shrink_to: int | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decode the ``num_frames``-frame clip of ``path`` uniformly sampled over the whole video.

    Args:
        path: a video file.
        num_frames: frames in the clip.
        total_frames: frames in the video, if known (the split CSV's ``TotalFrames``); otherwise the
            container's metadata is used, or the frames are counted by decoding when it has none.
        shrink_to: when the frames' shorter side is larger than this, scale them down while
            converting them to RGB so that it equals ``shrink_to`` (aspect ratio kept, the longer
            side rounded as :func:`~taghead.data.transforms.resize_shorter_side` does; antialiased
            bilinear). Frames that are not larger are returned at their own size. ``None``
            (default): native size.
        threads: decoder threads; ``None``: automatic, but 1 inside a DataLoader worker; ``0``:
            automatic; ``1``: single-threaded.

    Returns:
        ``(frames, total)``: ``uint8 [num_frames, H, W, 3]`` RGB frames and the number of frames the
        video actually has. When ``total_frames`` (or the metadata) disagrees a little with the
        decoded count, the indices are recomputed from the decoded count (a second pass when
        needed), so the clip is spread over the whole video. The array may be a channels-last view
        of channel-planar memory (as the scaled frames are stored), not C-contiguous;
        ``np.ascontiguousarray`` gives the interleaved layout where something needs it. Frames are
        upright as a player shows them: a display matrix (the rotation a phone records instead of
        rotating the pixels, and mirroring) is applied (:func:`display_orientation`).

    Raises:
        VideoDecodeError: the file is missing, unreadable, corrupt, has no decodable frame, or is
            truncated: fewer frames decode than announced, by more than ``max(2, 5 %)`` of the
            announced count (a file cut short, or a wrong ``TotalFrames``); or frames kept at their
            own size (no ``shrink_to``, or frames not larger) would take more than
            :data:`~taghead.limits.MAX_DECODED_CLIP_BYTES`.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if total_frames is not None and (isinstance(total_frames, bool) or int(total_frames) < 1):
        raise ValueError(f"total_frames must be a positive int or None, got {total_frames!r}")
    if shrink_to is not None and (isinstance(shrink_to, bool) or not isinstance(shrink_to, int) or shrink_to < 1):
        raise ValueError(f"shrink_to must be a positive int or None, got {shrink_to!r}")
    threads = _resolve_threads(threads)
    opened: tuple[Any, Any] | None = _open(path, threads)  # one open for the metadata and the decoding
    planned = int(total_frames) if total_frames else int(opened[1].frames or 0)
    if planned < 1:  # no frame count anywhere: count by decoding first
        opened[0].close()
        opened, planned = None, count_frames(path, threads)
    indices = uniform_frame_indices(planned, num_frames)
    sink, actual = _decode(path, sorted(set(indices)), shrink_to, threads, opened)
    if planned - actual > max(2, 0.05 * planned):
        raise VideoDecodeError(path, f"truncated: {actual} frames decode but {planned} were announced "
                                     f"({'TotalFrames' if total_frames else 'container metadata'})")
    if actual != planned:
        indices = uniform_frame_indices(actual, num_frames)
        if not set(indices) <= sink.slot.keys():  # (all < actual, so every kept one was decoded)
            sink, actual = _decode(path, sorted(set(indices)), shrink_to, threads)
    return sink.clip(indices), actual


def _check_frame(array: Any, index: int, size: tuple[int, int] | None) -> np.ndarray:
    """One frame to encode: ``uint8 [H, W, 3]`` with even ``H, W`` (yuv420p), the size of the first frame."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        got = f"{type(array).__name__} {getattr(array, 'dtype', '')} {tuple(getattr(array, 'shape', ()))}"
        raise ValueError(f"write_video expects uint8 frames [T, H, W, 3] (or frames [H, W, 3]), got {got} at frame {index}")
    h, w = array.shape[:2]
    if size is None and (h % 2 or w % 2):
        raise ValueError(f"write_video needs even H, W (yuv420p), got H={h}, W={w}")
    if size is not None and (h, w) != size:
        raise ValueError(f"write_video: frame {index} is {h}x{w}, the first frame {size[0]}x{size[1]}")
    return np.ascontiguousarray(array)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor | Iterable[np.ndarray],
    fps: float | Fraction = 8,
    codec: str = "libx264",
    crf: int | None = 12,
) -> Path:
    """Encode RGB frames to ``path`` (mp4; yuv420p, so ``H`` and ``W`` must be even).

    ``frames``: ``uint8 [T, H, W, 3]``, or any iterable of ``uint8 [H, W, 3]`` frames of one size (encoded as
    they come, so a long video never sits in memory). ``fps``: an int, a float (29.97) or a ``Fraction``.
    The file is written to a temporary name in the same folder and renamed, so a crash never
    leaves a partial file under ``path``. ``crf`` is the libx264 quality (0 = lossless, 23 =
    FFmpeg's default; ignored by other codecs). Returns ``Path(path)``.

    Args:
        path: the output file.
        frames: ``uint8 [T, H, W, 3]`` or an iterable of ``uint8 [H, W, 3]``.
        fps: frame rate: an int, a float (29.97) or a ``Fraction``.
        codec: the FFmpeg encoder.
        crf: libx264 quality (``None``: the encoder's default).
    """
    av = _av()
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"write_video expects uint8 frames [T, H, W, 3], got ndarray {frames.dtype} "
                             f"{tuple(frames.shape)}")
        if frames.shape[0] < 1:
            raise ValueError("write_video needs at least one frame")
    elif not isinstance(frames, Iterable):
        raise ValueError(f"write_video expects uint8 frames [T, H, W, 3] or an iterable of frames, got "
                         f"{type(frames).__name__}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    size: tuple[int, int] | None = None
    with atomic_output(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for index, array in enumerate(frames):
            array = _check_frame(array, index, size)
            if stream is None:
                size = array.shape[:2]
                stream = container.add_stream(codec, rate=rate)
                stream.height, stream.width = size
                stream.pix_fmt = "yuv420p"
                if crf is not None and codec == "libx264":
                    stream.options = {"crf": str(crf)}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        if stream is None:
            raise ValueError("write_video needs at least one frame")
        container.mux(stream.encode(None))
    return path
