"""Fixtures any test may use."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU random generator with a fixed seed, for reproducible test data without touching global state."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face Hub cache under ``tmp_path``, with ``HF_HUB_OFFLINE=1`` (fill it with
    ``_hub_cache.populate_hub_cache``)."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache
