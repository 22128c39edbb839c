"""Small building blocks shared by the heads."""

from .pos_embed import PositionalEmbedding3d, resample_pos_embed_3d

__all__ = ["PositionalEmbedding3d", "resample_pos_embed_3d"]
