"""Fixtures any test may use."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU random generator with a fixed seed, for reproducible test data without touching global state."""
    return torch.Generator().manual_seed(0)
