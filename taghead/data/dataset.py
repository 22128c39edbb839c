"""``VideoClipDataset``: labelled video files -> ``(video float [3, T, H, W], label)`` for a model.

Two layouts:

- the reference split CSV (:meth:`VideoClipDataset.from_csv`): columns ``FileName, Class,
  TotalFrames, ClassEncoded``, videos at ``video_dir/<Class>/<FileName>``;
- one folder per class (:meth:`VideoClipDataset.from_folder`): ``root/<class>/*.mp4`` (also
  ``.avi .mkv .mov .webm .m4v``); class names sorted alphabetically give the label indices, unless
  ``class_names`` fixes them.

Each item is decoded with PyAV (:func:`taghead.data.video.read_clip`: ``num_frames`` frames uniformly
spread over the whole video, shrunk to ``resize_size`` while they are converted to RGB; one decoder
thread inside a DataLoader worker, automatic threading in the main process) and transformed
(:mod:`taghead.data.transforms`: the training pipeline when ``train=True``, the evaluation one
otherwise), with sizes, mean and std from the model's :class:`~taghead.DataConfig`.

**Unreadable videos** (missing, truncated, corrupt) never stop an epoch. Policy: the item is
replaced by the next readable item (index ``i + 1``, ``i + 2``, ... wrapping around) and its
label; the file is marked bad (never decoded again by this dataset object), a
:class:`CorruptVideoWarning` naming the file and the reason is issued once per file, and the
replacement is counted. The marks and counts live in shared-memory tensors, so items loaded in
DataLoader worker processes are counted in the main process too: after an epoch,
:meth:`~VideoClipDataset.failure_summary` (a line of text naming the bad files by their path relative to
the data root, or ``None`` when nothing failed),
:attr:`~VideoClipDataset.bad_files` and :attr:`~VideoClipDataset.num_replaced` describe it, and
:meth:`~VideoClipDataset.reset_failures` starts the next epoch's count (bad files stay marked).
Workers must be started after the dataset is built (the DataLoader's default; ``fork`` and
``spawn`` both share the tensors). Under ``torchrun`` each rank counts its own items.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .sampling import uniform_frame_indices
from .transforms import EvalTransform, TrainTransform, build_transform
from .video import VideoDecodeError, frame_rate, read_clip

__all__ = ["VideoClipDataset", "VideoSample", "CorruptVideoWarning", "load_clip", "load_clip_with_source", "ClipSource",
           "VIDEO_EXTENSIONS", "CSV_COLUMNS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
"""The file suffixes :meth:`VideoClipDataset.from_folder` takes as videos."""
CSV_COLUMNS = ("FileName", "Class", "TotalFrames", "ClassEncoded")
"""The columns of a reference split file (:meth:`VideoClipDataset.from_csv`)."""


class CorruptVideoWarning(RuntimeWarning):
    """A video could not be decoded; the dataset replaced its item by another one."""


class VideoSample(NamedTuple):
    """One labelled video: its path, label index and frame count (``None`` when unknown)."""

    path: str
    label: int
    total_frames: int | None = None


@dataclass(frozen=True)
class ClipSource:
    """Where the frames of a clip come from in its video file.

    Attributes:
        path: the video file.
        frame_indices: the source frame (0-based) of each clip frame, in clip order.
        total_frames: the frames the video has.
        fps: its average frame rate from the metadata (``None`` when unknown).
    """

    path: str
    frame_indices: tuple[int, ...]
    total_frames: int
    fps: float | None

    def times(self) -> list[float] | None:
        """The time of each clip frame in the video, in seconds (``None`` without a frame rate)."""
        return [i / self.fps for i in self.frame_indices] if self.fps else None

    def frame_labels(self, sep: str = ", ") -> list[str]:
        """One label per clip frame: ``"frame 37, 1.23 s"`` (the source frame number, and its time when known;
        ``sep`` between them).

        Args:
            sep: the text between frame number and time.
        """
        times = self.times()
        return [f"frame {i}" + (f"{sep}{times[k]:.2f} s" if times else "") for k, i in enumerate(self.frame_indices)]


def load_clip_with_source(path: str | os.PathLike, data_config: DataConfig, total_frames: int | None = None, *,
                          threads: int | None = None) -> tuple[torch.Tensor, ClipSource]:
    """:func:`load_clip`, and which source frames the clip holds and at what times (:class:`ClipSource`).

    Args:
        path: the video file.
        data_config: frames, crop, resize, mean and std of the model's input.
        total_frames: the video's frame count when known (spares counting).
        threads: decoder threads (``None``: automatic).
    """
    frames, total = read_clip(path, data_config.num_frames, total_frames, shrink_to=data_config.resize_size,
                              threads=threads)
    source = ClipSource(os.fspath(path), tuple(uniform_frame_indices(total, data_config.num_frames)), total,
                        frame_rate(path))
    return EvalTransform(data_config)(frames), source


def load_clip(path: str | os.PathLike, data_config: DataConfig, total_frames: int | None = None, *,
              threads: int | None = None) -> torch.Tensor:
    """One video as the model's evaluation input ``float [3, T, H, W]`` (for prediction).

    The same pixels as :class:`~taghead.data.EvalTransform` on the full-size frames (within the
    decoder's scaling, mean absolute difference about 0.005 in [0, 1] pixel units), at the decoder's speed:
    the frames are shrunk to ``data_config.resize_size`` while they are converted to RGB
    (:func:`~taghead.data.read_clip`'s ``shrink_to``). ``threads``: decoder threads (``None``:
    automatic, 1 inside a DataLoader worker). Raises :class:`~taghead.data.video.VideoDecodeError`
    for an unreadable file.

    Args:
        path: the video file.
        data_config: frames, crop, resize, mean and std of the model's input.
        total_frames: the video's frame count when known (spares counting).
        threads: decoder threads (``None``: automatic, 1 inside a DataLoader worker).
    """
    frames, _ = read_clip(path, data_config.num_frames, total_frames, shrink_to=data_config.resize_size,
                          threads=threads)
    check_fits_crop(path, frames, data_config)
    return EvalTransform(data_config)(frames)


def check_fits_crop(path: str | os.PathLike, frames: np.ndarray, data_config: DataConfig) -> None:
    """Raise :class:`VideoDecodeError` for decoded frames smaller than the evaluation crop with no resize to
    enlarge them (``resize_size`` is ``None``): such a video cannot give the model its input."""
    height, width = frames.shape[1:3]
    crop = data_config.crop_size
    if data_config.resize_size is None and min(height, width) < crop:
        raise VideoDecodeError(path, f"frames of {width}x{height} pixels are smaller than the model's {crop}x{crop} "
                                     "crop, and its data config has no resize_size to enlarge them")


def read_split_csv(csv_path: str | os.PathLike) -> list[tuple[int, dict[str, str]]]:
    """The lines of a reference split CSV as ``(line number, {column: stripped value})``.

    UTF-8 (a byte-order mark is accepted); the columns :data:`CSV_COLUMNS` must each appear exactly once
    (others are ignored). A file that is missing, not UTF-8 or not CSV is an error naming it.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"split CSV {str(csv_path)!r} does not exist")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            duplicates = sorted({h for h in header if header.count(h) > 1})
            if duplicates:
                raise ValueError(f"{csv_path} has the columns {duplicates} more than once; expected each of "
                                 f"{list(CSV_COLUMNS)} once")
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{csv_path} lacks the columns {missing}; expected {list(CSV_COLUMNS)}, got {header}")
            where = {c: header.index(c) for c in CSV_COLUMNS}
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue  # a blank line
                if len(values) < len(header):
                    raise ValueError(f"{csv_path}:{reader.line_num}: {len(values)} fields, the header has {len(header)}")
                rows.append((reader.line_num, {c: values[i].strip() for c, i in where.items()}))
    except UnicodeDecodeError as err:
        raise ValueError(f"{csv_path} is not UTF-8 text ({err}); save the split file as UTF-8") from None
    except csv.Error as err:
        raise ValueError(f"{csv_path} is not a readable CSV file ({err})") from None
    return rows


#: Largest ``TotalFrames`` a split line may announce (a month of 60 fps video has 1.6e8 frames).
_MAX_TOTAL_FRAMES = 2**31 - 1


def _csv_int(row: dict[str, str], column: str, csv_path: Path, line: int) -> int:
    text = row[column]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{csv_path}:{line}: {column} must be an integer, got {text!r}") from None


def _csv_total_frames(row: dict[str, str], csv_path: Path, line: int) -> int:
    """``TotalFrames`` as an int (``0`` when empty); integral floats such as ``120.0`` are accepted."""
    text = row["TotalFrames"]
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= _MAX_TOTAL_FRAMES:
        raise ValueError(f"{csv_path}:{line}: TotalFrames must be empty or a whole number of frames in "
                         f"[0, {_MAX_TOTAL_FRAMES}], got {text!r}")
    return int(value)


def _video_path(video_dir: Path, class_name: str, file_name: str, where: str, allow_outside: bool) -> Path:
    """``video_dir / class_name / file_name``, refused when a part leaves ``video_dir`` (absolute, ``..``)."""
    for column, part in (("Class", class_name), ("FileName", file_name)):
        if not part:
            raise ValueError(f"{where}: {column} is empty")
        pure = PurePath(part)
        outside = pure.is_absolute() or PureWindowsPath(part).drive or ".." in PurePath(part.replace("\\", "/")).parts
        if outside and not allow_outside:
            raise ValueError(
                f"{where}: {column} {part!r} leads outside the video folder {str(video_dir)!r} (an absolute path or "
                "'..'); videos are read from <video-dir>/<Class>/<FileName> only, unless that is allowed explicitly "
                "(allow_outside_video_dir=True, --allow-outside-video-dir)")
    return video_dir / class_name / file_name


class VideoClipDataset(Dataset):
    """Labelled video files as ``(video, label)``: ``video`` float ``[3, T, H, W]`` normalised, ``label`` int.

    Build it with :meth:`from_csv` or :meth:`from_folder`, or directly from samples.

    Args:
        samples: the videos, as :class:`VideoSample` (or ``(path, label[, total_frames])`` tuples).
        class_names: names of the label indices (``num_classes = len(class_names)``).
        data_config: frames, crop, resize, mean and std (the model's ``data_config``).
        train: training transforms (random flip and resized crop) instead of the evaluation ones.
        hflip_p: flip probability of the training transforms (0.5 as the reference; use 0 when left
            and right matter for the label).
        scale: area range of the training random resized crop ((0.5, 1.0) as the reference).
        generator: randomness of the training transforms (``None``: torch's global RNG, which the
            DataLoader seeds per worker). A generator is not shared between workers.
        max_replacements: how many following items to try before giving up on a replacement
            (default: all of them; a dataset with no readable video raises ``RuntimeError``).
        root: the folder the videos are under (:meth:`from_folder`'s ``root``, :meth:`from_csv`'s
            ``video_dir``); messages name files by their path relative to it (``val/jump/c.mp4`` is
            ``jump/c.mp4``). ``None``: full paths.

    Attributes:
        samples: the videos, as :class:`VideoSample`.
        class_names: names of the label indices.
        num_classes: number of classes.
        data_config: the clip the model expects.
        train: whether the training transforms are applied.
        transform: the clip transform.
        root: the folder the videos' relative paths are named from (bad files are named relative to it).
    """

    def __init__(
        self,
        samples: Sequence[VideoSample | tuple],
        class_names: Sequence[str],
        data_config: DataConfig,
        train: bool = False,
        *,
        hflip_p: float = 0.5,
        scale: tuple[float, float] = (0.5, 1.0),
        generator: torch.Generator | None = None,
        max_replacements: int | None = None,
        root: str | os.PathLike | None = None,
    ) -> None:
        if not isinstance(data_config, DataConfig):
            raise TypeError(f"data_config must be a taghead.DataConfig, got {type(data_config).__name__}")
        self.class_names = [str(c) for c in class_names]
        self.num_classes = len(self.class_names)
        self.root = os.fspath(root) if root is not None else None
        self.samples = [VideoSample(*s) if not isinstance(s, VideoSample) else s for s in samples]
        if not self.samples:
            raise ValueError("VideoClipDataset needs at least one video; got an empty list of samples")
        for s in self.samples:
            if isinstance(s.label, bool) or not isinstance(s.label, int) or not 0 <= s.label < self.num_classes:
                raise ValueError(f"label {s.label!r} of {s.path!r} is not an int in [0, {self.num_classes})")
        self.data_config = data_config
        self.train = bool(train)
        self.transform: TrainTransform | EvalTransform = build_transform(
            data_config, self.train, hflip_p=hflip_p, scale=scale, generator=generator
        )
        self.max_replacements = len(self.samples) - 1 if max_replacements is None else int(max_replacements)
        # Shared with DataLoader workers: bad-file marks (persistent) and per-item replacement counts (per epoch).
        self._bad = torch.zeros(len(self.samples), dtype=torch.uint8).share_memory_()
        self._replaced = torch.zeros(len(self.samples), dtype=torch.int32).share_memory_()
        # Frame counts found by decoding (0: not yet): from the second epoch on, a video whose TotalFrames or
        # container metadata is slightly off is read in one decoding pass, like any other.
        self._decoded_frames = torch.zeros(len(self.samples), dtype=torch.int64).share_memory_()
        self._reasons: dict[int, str] = {}

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_csv(
        cls,
        csv_path: str | os.PathLike,
        video_dir: str | os.PathLike,
        data_config: DataConfig,
        train: bool = False,
        *,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        allow_outside_video_dir: bool = False,
        **kwargs: Any,
    ) -> VideoClipDataset:
        """A split file of the reference: columns ``FileName, Class, TotalFrames, ClassEncoded``.

        Videos are at ``video_dir/<Class>/<FileName>``; labels are ``ClassEncoded``.

        The class count is, in this order: ``num_classes`` (e.g. the model's, for a split that lacks
        some classes: a subset of a validation file, a test set missing rare classes), the length of
        ``class_names``, or ``max(ClassEncoded) + 1``. Every label must lie in ``[0, num_classes)``;
        a label outside is an error naming the CSV line. Without ``num_classes`` and ``class_names`` the
        file decides the count, and a label far beyond its distinct labels (more classes without a line
        than ``max(64, distinct labels)``) is an error naming its line, not a list of a billion classes.
        Class names are ``class_names`` when given (each line's ``Class`` must then be
        ``class_names[ClassEncoded]``), else the ``Class`` column's names, ``"class_<index>"`` for a
        class the split lacks. ``TotalFrames`` (when positive) spares counting frames.

        The file is read as UTF-8 (a byte-order mark is accepted); a duplicate or missing column is an
        error. ``FileName`` and ``Class`` must stay inside ``video_dir``: an absolute path or a ``..``
        component is an error naming the line unless ``allow_outside_video_dir``. Other keyword
        arguments go to the constructor.

        Args:
            csv_path: the split file.
            video_dir: the folder holding ``<Class>/<FileName>``.
            data_config: frames, crop, resize, mean and std of the model's input.
            train: training transform (random crop and flip) instead of the evaluation one.
            class_names: the model's class names in label order (checked against the ``Class`` column).
            num_classes: the class count (e.g. the model's), when the split lacks some classes.
            allow_outside_video_dir: accept absolute paths and ``..`` components in the file.
            **kwargs: passed to the constructor.
        """
        csv_path, video_dir = Path(csv_path), Path(video_dir)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names were given for num_classes={num_classes}")
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        samples, names, lines = [], {}, {}
        for line, row in read_split_csv(csv_path):
            label, total = _csv_int(row, "ClassEncoded", csv_path, line), _csv_total_frames(row, csv_path, line)
            if label < 0:
                raise ValueError(f"{csv_path}:{line}: ClassEncoded must be >= 0, got {label}")
            if num_classes is not None and label >= num_classes:
                raise ValueError(f"{csv_path}:{line}: ClassEncoded {label} ({row['Class']!r}) is outside the "
                                 f"{num_classes} classes, [0, {num_classes})")
            if class_names is not None and class_names[label] != row["Class"]:
                raise ValueError(f"{csv_path}:{line}: ClassEncoded {label} is {row['Class']!r} here but "
                                 f"{class_names[label]!r} in the given class names (the model's class order?)")
            if names.setdefault(label, row["Class"]) != row["Class"]:
                raise ValueError(f"{csv_path}:{line}: ClassEncoded {label} is {row['Class']!r} here but "
                                 f"{names[label]!r} earlier")
            lines.setdefault(label, line)
            path = _video_path(video_dir, row["Class"], row["FileName"], f"{csv_path}:{line}", allow_outside_video_dir)
            samples.append(VideoSample(str(path), label, total if total > 0 else None))
        if not samples:
            raise ValueError(f"{csv_path} lists no videos")
        if class_names is None:
            if num_classes is None:
                top = max(names)
                if top + 1 - len(names) > max(64, len(names)):
                    raise ValueError(
                        f"{csv_path}:{lines[top]}: ClassEncoded {top} would make {top + 1} classes, but the file holds "
                        f"only {len(names)} distinct labels; fix the label, or give the class count (num_classes, the "
                        "model's) or the class names if the gap is intended")
            count = max(names) + 1 if num_classes is None else num_classes
            class_names = [names.get(i, f"class_{i}") for i in range(count)]
        kwargs.setdefault("root", video_dir)
        return cls(samples, class_names, data_config, train, **kwargs)

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike,
        data_config: DataConfig,
        train: bool = False,
        *,
        class_names: Sequence[str] | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        **kwargs: Any,
    ) -> VideoClipDataset:
        """One sub-folder per class: ``root/<class name>/<video files>``.

        Label indices follow ``class_names`` when given (folders not listed are an error; listed
        classes without a folder simply have no videos), otherwise the alphabetically sorted
        folder names. Files are taken in sorted order. Other keyword arguments go to the constructor.

        Args:
            root: the folder holding one sub-folder per class.
            data_config: frames, crop, resize, mean and std of the model's input.
            train: training transform (random crop and flip) instead of the evaluation one.
            class_names: the class names in label order (``None``: the sorted folder names).
            extensions: the file suffixes taken as videos.
            **kwargs: passed to the constructor.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"video folder {str(root)!r} does not exist")
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_names is None:
            class_names = folders
        else:
            unknown = sorted(set(folders) - set(class_names))
            if unknown:
                raise ValueError(f"{root} has class folders {unknown} that are not in class_names")
        suffixes = {e.lower() for e in extensions}
        samples = []
        for label, name in enumerate(class_names):
            folder = root / name
            if folder.is_dir():
                for f in sorted(folder.iterdir()):
                    if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith("."):
                        samples.append(VideoSample(str(f), label, None))
        if not samples:
            raise ValueError(f"no video files ({', '.join(sorted(suffixes))}) in the class folders of {root}")
        kwargs.setdefault("root", root)
        return cls(samples, class_names, data_config, train, **kwargs)

    # ------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, index: int) -> np.ndarray:
        """The sampled frames of video ``index`` before the transform, ``uint8 [T, H, W, 3]`` (shorter side at
        ``resize_size``), without the replacement policy (raises :class:`VideoDecodeError`, also for frames
        smaller than the evaluation crop: :func:`check_fits_crop`).

        Args:
            index: the video's position in the dataset.
        """
        sample = self.samples[index]
        cfg = self.data_config
        known = int(self._decoded_frames[index]) or sample.total_frames
        frames, decoded = read_clip(sample.path, cfg.num_frames, known, shrink_to=cfg.resize_size)
        self._decoded_frames[index] = decoded
        if not self.train:  # the training crop takes any frame size
            check_fits_crop(sample.path, frames, cfg)
        return frames

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """Item ``index`` without the replacement policy (raises :class:`VideoDecodeError`).

        Args:
            index: the video's position in the dataset.
        """
        return self.transform(self.decode(index)), self.samples[index].label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} videos")
        index %= n
        for step in range(self.max_replacements + 1):
            j = (index + step) % n
            if self._bad[j]:
                continue
            try:
                item = self.load(j)
            except VideoDecodeError as err:
                self._mark_bad(j, err.reason)
                continue
            if j != index:
                self._replaced[index] += 1
            return item
        raise RuntimeError(
            f"no readable video among items {index}..{(index + self.max_replacements) % n} (of {n}); "
            f"{self.failure_summary()}"
        )

    # ---------------------------------------------------------------------------------- failures
    def _mark_bad(self, index: int, reason: str) -> None:
        self._reasons[index] = reason
        if not self._bad[index]:
            self._bad[index] = 1
            warnings.warn(f"skipping unreadable video {self.samples[index].path!r} ({reason}); its items are "
                          f"replaced by the next readable video", CorruptVideoWarning, stacklevel=3)

    @property
    def bad_files(self) -> list[str]:
        """Paths found unreadable so far (by this process or its DataLoader workers)."""
        return [self.samples[i].path for i in torch.nonzero(self._bad).flatten().tolist()]

    @property
    def num_replaced(self) -> int:
        """Items served by a replacement since the last :meth:`reset_failures`."""
        return int(self._replaced.sum())

    @property
    def failures(self) -> dict[str, int]:
        """``{path: times its item was replaced since the last reset}`` for the unreadable videos."""
        return {self.samples[i].path: int(self._replaced[i]) for i in torch.nonzero(self._bad).flatten().tolist()}

    def display_path(self, index: int) -> str:
        """The path of video ``index`` as messages show it: relative to :attr:`root` when it lies under it
        (``jump/c.mp4``, unambiguous across class folders), else as given.

        Args:
            index: the video's position in the dataset.
        """
        path = self.samples[index].path
        if self.root is not None:
            relative = os.path.relpath(path, self.root)
            if not relative.startswith(os.pardir):
                return relative
        return path

    def failure_summary(self) -> str | None:
        """One line for the end of an epoch: the items replaced since the last :meth:`reset_failures` and the
        unreadable files (up to 5, by :meth:`display_path`, with the reason).

        Returns:
            the line, or ``None`` when no file has been found unreadable and no item was replaced (so
            ``if (line := dataset.failure_summary()): print(line)`` prints only problems).
        """
        bad = torch.nonzero(self._bad).flatten().tolist()
        if not bad and not self.num_replaced:
            return None
        shown = ", ".join(
            self.display_path(i) + (f" ({self._reasons[i]})" if i in self._reasons else "")
            for i in bad[:5]
        )
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return (f"{self.num_replaced} item(s) replaced this epoch; {len(bad)} unreadable video(s) of "
                f"{len(self.samples)}: {shown}{more}")

    def reset_failures(self) -> None:
        """Zero the replacement counts (call at the start of an epoch); unreadable files stay marked."""
        self._replaced.zero_()

    def __repr__(self) -> str:
        return (f"VideoClipDataset({len(self.samples)} videos, {self.num_classes} classes, train={self.train}, "
                f"{self.data_config})")
