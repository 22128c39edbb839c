"""Utilities: model accounting (parameters, FLOPs)."""

from .stats import ModelStats, count_flops, count_parameters, model_stats

__all__ = ["ModelStats", "model_stats", "count_parameters", "count_flops"]
