"""Backbones that taghead builds itself (the reference R(2+1)D-34, a tiny demo CNN)."""

from .r2plus1d import r2plus1d_34
from .tiny import TinyVideoCNN, tiny_video_cnn

__all__ = ["r2plus1d_34", "TinyVideoCNN", "tiny_video_cnn"]
