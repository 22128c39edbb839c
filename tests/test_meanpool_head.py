"""MeanPoolHead: the baseline head with the TAGHead interface."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taghead import MeanPoolHead

C = 12


def make_head(**kwargs) -> MeanPoolHead:
    torch.manual_seed(0)
    return MeanPoolHead(C, 2, 3, 3, **{"num_classes": 4, **kwargs})


@pytest.mark.parametrize("grid", [(2, 3, 3), (1, 1, 1), (5, 7, 2)])
def test_any_grid_equals_mean_then_linear(grid, generator):
    head = make_head().eval()
    x = torch.randn(3, C, *grid, generator=generator)
    logits = head(x)
    assert logits.shape == (3, 4)
    expected = x.mean(dim=(2, 3, 4)) @ head.fc.weight.T + head.fc.bias
    assert torch.allclose(logits, expected, rtol=0, atol=1e-5)


def test_timm_methods(generator):
    head = make_head().eval()
    x = torch.randn(2, C, 2, 3, 3, generator=generator)
    tokens = head.forward_features(x)
    assert tokens.shape == (2, 18, C) and torch.equal(tokens, x.flatten(2).transpose(1, 2))
    pooled = head.forward_head(tokens, pre_logits=True)
    assert pooled.shape == (2, C) and head.num_features == C
    assert torch.equal(head.forward_head(tokens), head(x))
    assert head.get_classifier() is head.fc


def test_reset_classifier(generator):
    head = make_head().eval()
    x = torch.randn(2, C, 2, 3, 3, generator=generator)
    head.reset_classifier(9)
    assert head.num_classes == 9 and head(x).shape == (2, 9)
    head.reset_classifier(0)
    assert isinstance(head.fc, nn.Identity) and head.num_classes == 0
    assert torch.allclose(head(x), x.mean(dim=(2, 3, 4)), rtol=0, atol=1e-6)


def test_num_classes_zero_and_config():
    head = make_head(num_classes=0, drop_rate=0.2)
    assert head(torch.randn(2, C, 1, 2, 2)).shape == (2, C)
    rebuilt = MeanPoolHead(**head.get_config())
    assert repr(rebuilt) == repr(head) and rebuilt.get_config() == head.get_config()


@pytest.mark.parametrize("shape,error,match", [
    ((2, 18, C), ValueError, "5-D feature map.*3-D"),
    ((2, C, 3, 3), ValueError, "5-D feature map.*4-D"),
    ((2, 3, C, 3, 3), ValueError, r"12 channels at dim 1.*\[B, T, C, H, W\]"),
    ((2, 5, 2, 3, 3), ValueError, "12 channels at dim 1.*5 channels"),
])
def test_bad_input(shape, error, match):
    with pytest.raises(error, match=match):
        make_head()(torch.zeros(shape))


def test_integer_input():
    with pytest.raises(ValueError, match="floating-point feature map, got dtype torch.int32"):
        make_head()(torch.zeros(2, C, 2, 3, 3, dtype=torch.int32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=-1), "num_classes must be a non-negative int"),
    (dict(in_channels=0), "in_channels must be a positive int"),
    (dict(t=0), "t must be a positive int"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"in_channels": C, "t": 2, "h": 3, "w": 3, "num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        MeanPoolHead(**args)
