"""torchvision video models (and taghead's R(2+1)D-34) wrapped with a head: shapes, gradients, oracles."""

from __future__ import annotations

import pytest
import torch
from _adapter_checks import SMALL_HEAD, check_forward_backward, fast_trunc_normal
from _helpers import adapt_and_capture

import taghead
from taghead.adapters import adapt, resample_separable_pos_embed

pytest.importorskip("torchvision")

# name, frames, crop, batch, channels, temporal stride, spatial stride: the architectures' known
# strides (VideoResNet: stem (1,2,2) + three stride-2 stages; mc3_18's 2D stages keep time; S3D /8, /32;
# MViT patch stride (2,4,4) + three 2x spatial poolings; Swin3D patch (2,4,4) + three 2x mergings).
CASES = [
    ("torchvision/r3d_18", 8, 32, 2, 512, 8, 16),
    ("torchvision/mc3_18", 4, 32, 1, 512, 1, 16),
    ("torchvision/r2plus1d_18", 8, 32, 1, 512, 8, 16),
    ("taghead/r2plus1d_34", 8, 32, 1, 512, 8, 16),
    ("torchvision/s3d", 16, 64, 1, 1024, 8, 32),
    ("torchvision/mvit_v1_b", 4, 32, 1, 768, 2, 32),
    ("torchvision/mvit_v2_s", 4, 32, 1, 768, 2, 32),
    ("torchvision/swin3d_t", 4, 64, 1, 768, 2, 32),
    ("torchvision/swin3d_s", 2, 32, 1, 768, 2, 32),
    ("torchvision/swin3d_b", 2, 32, 1, 1024, 2, 32),
]

FIRST_LAYER = {
    "VideoResNetFeatures": "model.stem.0.weight",
    "S3DFeatures": "model.features.0.0.0.weight",
    "MViTFeatures": "model.conv_proj.weight",
    "SwinTransformer3dFeatures": "model.patch_embed.proj.weight",
}
DROPPED = {
    "VideoResNetFeatures": ("fc.", "avgpool."),
    "S3DFeatures": ("classifier.",),
    "MViTFeatures": ("head.",),
    "SwinTransformer3dFeatures": ("head.", "avgpool."),
}


@pytest.mark.parametrize("name,frames,crop,batch,channels,t_stride,s_stride", CASES, ids=[c[0] for c in CASES])
def test_forward_backward(name: str, frames: int, crop: int, batch: int, channels: int, t_stride: int,
                          s_stride: int) -> None:
    torch.manual_seed(0)
    with fast_trunc_normal():
        model = taghead.wrap_backbone(name, num_classes=5, num_frames=frames, crop_size=crop, **SMALL_HEAD)
    expected = (channels, frames // t_stride, crop // s_stride, crop // s_stride)
    assert model.backbone.feature_shape(frames, crop) == expected
    assert model.head.grid == expected[1:] and model.head.in_channels == channels
    kind = type(model.backbone).__name__
    check_forward_backward(model, torch.randn(batch, 3, frames, crop, crop), (batch, *expected), 5,
                           FIRST_LAYER[kind], DROPPED[kind])


def test_video_resnet_features_equal_layer4_of_the_original() -> None:
    """Oracle: the map the head sees is the untouched model's ``layer4`` output."""
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    original = r3d_18().eval()
    extractor, features, layer4 = adapt_and_capture(original, "layer4", torch.randn(2, 3, 8, 32, 32))
    torch.testing.assert_close(features, layer4)
    assert extractor.temporal_stride == 8 and extractor.spatial_stride == 16 and extractor.out_channels == 512


def test_swin3d_features_equal_the_original_norm_output_channels_first() -> None:
    from torchvision.models.video import swin3d_t

    torch.manual_seed(0)
    with fast_trunc_normal():
        original = swin3d_t().eval()
    _, features, normed = adapt_and_capture(original, "norm", torch.randn(1, 3, 4, 64, 64))
    assert normed.shape == (1, 2, 2, 2, 768)  # channels-last in the original
    torch.testing.assert_close(features, normed.permute(0, 4, 1, 2, 3))


def test_mvit_positional_encoding_matches_torchvision_at_the_native_grid() -> None:
    """Oracle for the MViT-v1 embedding the adapter applies: torchvision's own ``PositionalEncoding``."""
    from torchvision.models.video.mvit import PositionalEncoding

    torch.manual_seed(0)
    pe = PositionalEncoding(embed_size=8, spatial_size=(3, 4), temporal_size=2, rel_pos_embed=False)
    for p in pe.parameters():
        torch.nn.init.normal_(p)
    tokens = torch.randn(2, 2 * 3 * 4, 8)
    expected = pe(tokens.clone())
    pos = resample_separable_pos_embed(pe.spatial_pos, pe.temporal_pos, (2, 3, 4), (2, 3, 4))
    torch.testing.assert_close(expected[:, 1:], tokens + pos)
    torch.testing.assert_close(expected[:, 0], (pe.class_token + pe.class_pos).expand(2, -1))


def test_separable_embedding_resamples_by_interpolation() -> None:
    """A linear ramp in time and space stays the same ramp on a finer grid (interpolation, not tiling)."""
    spatial = torch.arange(4.0).reshape(1, 2, 2, 1).expand(1, 2, 2, 3).reshape(4, 3) * 0  # constant space
    temporal = torch.tensor([[0.0], [2.0]]).expand(2, 3)
    pos = resample_separable_pos_embed(spatial, temporal, (2, 2, 2), (4, 2, 2)).reshape(4, 2, 2, 3)
    # align_corners=False linear interpolation of [0, 2] to 4 samples: [0, 0.5, 1.5, 2]
    torch.testing.assert_close(pos[:, 0, 0, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_mvit_data_config_reads_the_native_clip() -> None:
    from torchvision.models.video import mvit_v2_s

    with fast_trunc_normal():
        extractor = adapt(mvit_v2_s())
    cfg = extractor.default_data_config()
    assert (cfg.num_frames, cfg.crop_size) == (16, 224)
