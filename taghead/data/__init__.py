"""Video data for training and evaluation: decoding, sampling, transforms, datasets, synthetic clips.

- :class:`VideoClipDataset` (``from_csv`` / ``from_folder``): labelled video files ->
  ``(video float [3, T, H, W], label)``, robust to unreadable files.
- :class:`SyntheticFineGrainedDataset`: a fine-grained benchmark rendered on the fly (no download);
  :func:`write_videos` writes it as mp4 files + a split CSV.
- :func:`load_clip`: one video file as a model input (prediction), at about the decoder's speed;
  :func:`load_clip_with_source` also says which source frames (and times) the clip holds (:class:`ClipSource`).
- :func:`read_clip` (``shrink_to=``: frames scaled down while converted to RGB; ``threads=``),
  :func:`count_frames`, :func:`frame_rate`, :func:`iter_frames`, :func:`write_video`: PyAV decoding/encoding
  (imported lazily).
- :func:`uniform_frame_indices`: the reference's temporal sampling.
- :class:`TrainTransform`, :class:`EvalTransform`, :func:`build_transform`: the clip transforms.
"""

from .dataset import (
    CSV_COLUMNS,
    VIDEO_EXTENSIONS,
    ClipSource,
    CorruptVideoWarning,
    VideoClipDataset,
    VideoSample,
    load_clip,
    load_clip_with_source,
)
from .sampling import uniform_frame_indices
from .synthetic import SYNTHETIC_CLASSES, SyntheticFineGrainedDataset, write_videos
from .transforms import EvalTransform, TrainTransform, build_transform
from .video import VideoDecodeError, count_frames, frame_rate, iter_frames, read_clip, write_video

__all__ = [
    "VideoClipDataset",
    "VideoSample",
    "CorruptVideoWarning",
    "load_clip",
    "load_clip_with_source",
    "ClipSource",
    "CSV_COLUMNS",
    "VIDEO_EXTENSIONS",
    "SyntheticFineGrainedDataset",
    "SYNTHETIC_CLASSES",
    "write_videos",
    "uniform_frame_indices",
    "TrainTransform",
    "EvalTransform",
    "build_transform",
    "VideoDecodeError",
    "read_clip",
    "count_frames",
    "frame_rate",
    "iter_frames",
    "write_video",
]
