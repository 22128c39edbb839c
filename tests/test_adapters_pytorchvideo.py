"""pytorchvideo hub models wrapped with a head: shapes, gradients, SlowFast pathways, oracles."""

from __future__ import annotations

import copy

import pytest
import torch
from _adapter_checks import SMALL_HEAD, check_forward_backward, fast_trunc_normal
from _helpers import adapt_and_capture

import taghead
from taghead.adapters import SlowFastFeatures, adapt

pytest.importorskip("pytorchvideo")

SMALL_MVIT = {"spatial_size": 32, "temporal_size": 4}

# name, backbone kwargs, frames, crop, channels, temporal stride, spatial stride. Strides from the
# architectures: all end at 1/32 of the crop; time: slow_r50 keeps it, c2d/i3d pool it once after
# stage 1, r2plus1d_r50 strides it in stages 4 and 5, csn_r101 in stages 3-5; X3D keeps it; MViT's
# patch embedding strides it by 2; SlowFast's map has the slow pathway's length, T / alpha (alpha = 4).
CASES = [
    ("pytorchvideo/slow_r50", {}, 4, 64, 2048, 1, 32),
    ("pytorchvideo/c2d_r50", {}, 4, 64, 2048, 2, 32),
    ("pytorchvideo/i3d_r50", {}, 4, 64, 2048, 2, 32),
    ("pytorchvideo/r2plus1d_r50", {}, 8, 64, 2048, 4, 32),
    ("pytorchvideo/csn_r101", {}, 8, 64, 2048, 8, 32),
    ("pytorchvideo/x3d_xs", {}, 4, 64, 432, 1, 32),
    ("pytorchvideo/x3d_s", {}, 4, 64, 432, 1, 32),
    ("pytorchvideo/x3d_m", {}, 4, 64, 432, 1, 32),
    ("pytorchvideo/x3d_l", {}, 2, 32, 432, 1, 32),
    ("pytorchvideo/slowfast_r50", {}, 8, 64, 2304, 4, 32),
    ("pytorchvideo/slowfast_r101", {}, 8, 32, 2304, 4, 32),
    ("pytorchvideo/slowfast_16x8_r101_50_50", {}, 8, 32, 2304, 4, 32),
    ("pytorchvideo/mvit_base_16x4", SMALL_MVIT, 4, 32, 768, 2, 32),
    ("pytorchvideo/mvit_base_32x3", SMALL_MVIT, 4, 32, 768, 2, 32),
]
FIRST_LAYER = {
    "PTVResNetFeatures": "model.blocks.0.conv.weight",
    "X3DFeatures": "model.blocks.0.conv.conv_t.weight",
    "SlowFastFeatures": "model.blocks.0.multipathway_blocks.0.conv.weight",
    "PTVMViTFeatures": "model.patch_embed.patch_model.weight",
}


@pytest.mark.parametrize("name,kwargs,frames,crop,channels,t_stride,s_stride", CASES, ids=[c[0] for c in CASES])
def test_forward_backward(name: str, kwargs: dict, frames: int, crop: int, channels: int, t_stride: int,
                          s_stride: int) -> None:
    torch.manual_seed(0)
    with fast_trunc_normal():
        model = taghead.wrap_backbone(name, 4, num_frames=frames, crop_size=crop, backbone_kwargs=kwargs, **SMALL_HEAD)
    expected = (channels, frames // t_stride, crop // s_stride, crop // s_stride)
    assert model.backbone.feature_shape(frames, crop) == expected
    assert model.spec["backbone"] == name and model.spec["backbone_kwargs"] == kwargs
    kind = type(model.backbone).__name__
    last = f"blocks.{len(model.backbone.model.blocks) - 1}." if kind != "PTVMViTFeatures" else ""
    dropped = {  # what the head replaces must be gone from the state dict
        "PTVResNetFeatures": (last,), "SlowFastFeatures": (last,), "PTVMViTFeatures": ("head.",),
        "X3DFeatures": (f"{last}proj.", f"{last}pool.post_conv."),
    }[kind]
    check_forward_backward(model, torch.randn(1, 3, frames, crop, crop), (1, *expected), 4, FIRST_LAYER[kind], dropped)
    if kind == "SlowFastFeatures":
        assert model.backbone.alpha == 4 and model.spec["adapter_kwargs"] == {"alpha": 4}


def test_resnet_features_equal_the_last_stage_of_the_original() -> None:
    from pytorchvideo.models.hub import slow_r50

    torch.manual_seed(0)
    original = slow_r50().eval()
    extractor = adapt(copy.deepcopy(original)).eval()
    video = torch.randn(1, 3, 4, 64, 64)  # too small for the original head's pooling: run its stages
    with torch.no_grad():
        expected = video
        for block in original.blocks[:5]:
            expected = block(expected)
        features = extractor(video)
    assert expected.shape == (1, 2048, 4, 2, 2)
    torch.testing.assert_close(features, expected)


def test_x3d_features_equal_conv5_of_the_original_head() -> None:
    from pytorchvideo.models.hub import x3d_xs

    torch.manual_seed(0)
    original = x3d_xs().eval()
    extractor, features, conv5 = adapt_and_capture(original, "blocks.5.pool.pre_act", torch.randn(1, 3, 4, 160, 160))
    assert features.shape == (1, 432, 4, 5, 5)
    torch.testing.assert_close(features, conv5)
    assert "model.blocks.5.pool.post_conv.weight" not in extractor.state_dict()


@pytest.fixture(scope="module")
def slowfast_pair() -> tuple[torch.nn.Module, SlowFastFeatures]:
    from pytorchvideo.models.hub import slowfast_r50

    torch.manual_seed(0)
    original = slowfast_r50().eval()
    return original, adapt(copy.deepcopy(original)).eval()


def test_slowfast_pools_the_fast_pathway_to_the_slow_length_and_concatenates(slowfast_pair) -> None:
    """Oracle: the original's two last maps; fast averaged over windows of alpha frames, then [slow, fast]."""
    original, extractor = slowfast_pair
    captured = {}
    handle = original.blocks[4].register_forward_hook(lambda m, i, o: captured.update(out=[t.clone() for t in o]))
    slow, fast = torch.randn(1, 3, 2, 64, 64), torch.randn(1, 3, 8, 64, 64)
    try:
        with torch.no_grad():
            _run_until(original, 5, [slow, fast])
            features = extractor([slow, fast])
    finally:
        handle.remove()
    s, f = captured["out"]
    assert s.shape == (1, 2048, 2, 2, 2) and f.shape == (1, 256, 8, 2, 2)
    expected = torch.cat([s, f.reshape(1, 256, 2, 4, 2, 2).mean(dim=3)], dim=1)
    torch.testing.assert_close(features, expected)


def _run_until(net: torch.nn.Module, n: int, x: list[torch.Tensor]) -> None:
    x = list(x)
    for block in net.blocks[:n]:
        x = block(x)


def test_slowfast_single_clip_is_split_like_pack_pathway(slowfast_pair) -> None:
    """pytorchvideo's PackPathway takes frames linspace(0, T - 1, T // alpha) for the slow pathway:
    frames 0 and 7 of an 8-frame clip with alpha = 4."""
    _, extractor = slowfast_pair
    video = torch.randn(1, 3, 8, 32, 32)
    slow = video[:, :, [0, 7]]
    with torch.no_grad():
        torch.testing.assert_close(extractor(video), extractor([slow, video]))
    assert extractor.default_data_config().num_frames == 32


def test_slowfast_input_errors(slowfast_pair) -> None:
    _, extractor = slowfast_pair
    with pytest.raises(ValueError, match=r"\[slow, fast\]"):
        extractor([torch.randn(1, 3, 2, 32, 32)] * 3)
    with pytest.raises(ValueError, match="share batch and frame size"):
        extractor([torch.randn(1, 3, 2, 32, 32), torch.randn(1, 3, 8, 64, 64)])
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        extractor([torch.randn(1, 2, 3, 32, 32), torch.randn(1, 8, 3, 32, 32)])
    with pytest.raises(ValueError, match="at least alpha=4 frames"):
        extractor(torch.randn(1, 3, 2, 32, 32))


def test_mvit_features_equal_the_original_norm_output_without_class_token() -> None:
    from pytorchvideo.models.hub import mvit_base_16x4

    torch.manual_seed(0)
    with fast_trunc_normal():
        original = mvit_base_16x4(**SMALL_MVIT).eval()
    extractor, features, tokens = adapt_and_capture(original, "norm_embed", torch.randn(1, 3, 4, 32, 32))
    assert tokens.shape == (1, 1 + 2 * 1 * 1, 768)
    torch.testing.assert_close(features, tokens[:, 1:].transpose(1, 2).reshape(1, 768, 2, 1, 1))
    cfg = extractor.default_data_config()
    assert (cfg.num_frames, cfg.crop_size) == (4, 32)
    # Another clip size runs too (resampled positional embedding): 8 frames at 64 px.
    with torch.no_grad():
        assert extractor(torch.randn(1, 3, 8, 64, 64)).shape == (1, 768, 4, 2, 2)


def test_mvit_with_a_joint_positional_embedding() -> None:
    """``sep_pos_embed=False``: one [1, 1 + T*H*W, C] embedding, resampled trilinearly off the native grid."""
    from pytorchvideo.models.vision_transformers import create_multiscale_vision_transformers

    torch.manual_seed(0)
    original = create_multiscale_vision_transformers(spatial_size=32, temporal_size=4, depth=2, sep_pos_embed=False,
                                                     patch_embed_dim=16, num_heads=2, head_num_classes=5).eval()
    torch.nn.init.normal_(original.cls_positional_encoding.pos_embed)
    extractor, features, tokens = adapt_and_capture(original, "norm_embed", torch.randn(1, 3, 4, 32, 32))
    # no pooling stages: 1 + 2 * 8 * 8 tokens
    torch.testing.assert_close(features, tokens[:, 1:].transpose(1, 2).reshape(1, 16, 2, 8, 8))
    with torch.no_grad():
        assert extractor(torch.randn(1, 3, 8, 64, 64)).shape == (1, 16, 4, 16, 16)
