"""Temporal sampling: which frames of a video make the clip.

The reference samples ``num_frames`` indices spread uniformly over the *whole* video,

.. math:: i_k = \\left\\lfloor \\frac{k\\,(N - 1)}{n - 1} \\right\\rfloor, \\qquad k = 0, \\dots, n - 1,

i.e. ``linspace(0, N - 1, n)`` truncated to integers (``N`` = frames in the video, ``n`` = frames
in the clip). The first and the last frame are always included; a video shorter than the clip
repeats frames (the indices are non-decreasing). Like the reference, the indices are numpy's float64
``linspace`` truncated, so where the ratio above is an exact integer, rounding can give one less
(``linspace(0, 30, 23)[11] = 14.999...`` -> 14); ``torch.linspace`` would round differently.
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform_frame_indices"]


def uniform_frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """``num_frames`` frame indices uniformly spaced over ``[0, total_frames - 1]``, truncated to ints.

    >>> uniform_frame_indices(10, 4)
    [0, 3, 6, 9]
    >>> uniform_frame_indices(3, 5)
    [0, 0, 1, 1, 2]

    Args:
        total_frames: frames of the video.
        num_frames: frames of the clip.
    """
    for name, value in (("total_frames", total_frames), ("num_frames", num_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    # float64 linspace then truncation, exactly as the reference (np.linspace(...).astype(int)).
    return [int(i) for i in np.linspace(0, int(total_frames) - 1, int(num_frames)).astype(np.int64)]
