"""Explanations of video classifiers: relevance in space and time, and ART's region tracks.

- :func:`explain` ``(model, video, target=None, *, method="gradcam") -> Explanation`` (a list for a batch);
- :class:`Explanation`: class, probability, ``token_relevance``, ``heatmap``, ``frame_relevance``,
  ``regions`` and ``selected_classes`` (ART);
- :data:`METHODS`: ``"gradcam"``, ``"hirescam"`` and ``"occlusion"`` (gradient-free),
  :mod:`taghead.explanation.methods`;
- :func:`concentration_ratio`: how much of a heatmap falls inside a mask (the synthetic flashes);
- :func:`save_sheet`, :func:`save_overlay_video` (:mod:`taghead.explanation.render`; matplotlib and PyAV
  are imported when called).
"""

from .concentration import concentration_ratio
from .core import Explanation, explain
from .methods import METHODS, ExplanationMethodError
from .render import display_frames, save_overlay_video, save_sheet

__all__ = ["explain", "Explanation", "METHODS", "ExplanationMethodError", "concentration_ratio", "save_sheet",
           "save_overlay_video", "display_frames"]
