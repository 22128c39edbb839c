"""Graph operators as plain torch functions (no extension, no adjacency matrix, no edge tensors)."""

from .time_aligned import time_aligned_adjacency, time_aligned_appnp, time_aligned_edge_index

__all__ = ["time_aligned_appnp", "time_aligned_edge_index", "time_aligned_adjacency"]
