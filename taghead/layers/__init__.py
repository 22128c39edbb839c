"""Small building blocks shared by the heads and backbones."""

from .batchnorm import configure_batchnorm
from .pos_embed import PositionalEmbedding3d, resample_pos_embed_3d

__all__ = ["PositionalEmbedding3d", "resample_pos_embed_3d", "configure_batchnorm"]
