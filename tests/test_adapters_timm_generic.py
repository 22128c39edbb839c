"""timm image models applied frame by frame, and the generic ``feature_layer`` adapter."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _adapter_checks import SMALL_HEAD, check_forward_backward
from torch import nn

import taghead
from taghead.adapters import FeatureMapError, LayerFeatures, adapt
from taghead.models.wrap import build_from_spec

timm = pytest.importorskip("timm")


# -- timm --------------------------------------------------------------------------------------------------

# name, create_model kwargs, crop, channels, spatial stride, first layer, classifier prefix
TIMM_CASES = [
    ("resnet18", {}, 64, 512, 32, "model.conv1.weight", "fc."),
    ("vit_tiny_patch16_224", {"img_size": 32}, 32, 192, 16, "model.patch_embed.proj.weight", "head."),
    ("deit_tiny_distilled_patch16_224", {"img_size": 32}, 32, 192, 16, "model.patch_embed.proj.weight", "head"),
    ("swin_tiny_patch4_window7_224", {"img_size": 56}, 56, 768, 28, "model.patch_embed.proj.weight", "head."),
]


def _per_frame_oracle(original: nn.Module, video: torch.Tensor, prefix: int, nhwc: bool) -> torch.Tensor:
    """The untouched timm model's ``forward_features`` on each frame separately, as ``[B, C, T, h, w]``."""
    maps = []
    for t in range(video.shape[2]):
        out = original.forward_features(video[:, :, t])
        if out.dim() == 3:
            side = int((out.shape[1] - prefix) ** 0.5)
            out = out[:, prefix:].transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
        elif nhwc:
            out = out.permute(0, 3, 1, 2)
        maps.append(out)
    return torch.stack(maps, dim=2)


@pytest.mark.parametrize("name,kwargs,crop,channels,stride,first,classifier", TIMM_CASES, ids=[c[0] for c in TIMM_CASES])
def test_timm_frame_by_frame(name, kwargs, crop, channels, stride, first, classifier) -> None:
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False, **kwargs).eval()
    prefix, nhwc = getattr(original, "num_prefix_tokens", 0), getattr(original, "output_fmt", "NCHW") == "NHWC"
    extractor = adapt(copy.deepcopy(original)).eval()
    video = torch.randn(2, 3, 3, crop, crop)  # two clips of three frames: catches batch/time mix-ups
    with torch.no_grad():
        expected = _per_frame_oracle(original, video, prefix, nhwc)
        torch.testing.assert_close(extractor(video), expected)
    assert expected.shape == (2, channels, 3, crop // stride, crop // stride)

    if name == "resnet18":  # by name once (random weights from timm.create_model)
        model = taghead.wrap_backbone(f"timm/{name}", 6, num_frames=2, crop_size=crop, **SMALL_HEAD)
        assert model.spec["backbone"] == "timm/resnet18"
    else:  # a ready extractor is used as it is
        model = taghead.wrap_backbone(extractor, 6, num_frames=2, crop_size=crop, **SMALL_HEAD).train()
        assert model.backbone is extractor and model.spec["backbone"] is None
    assert model.spec["adapter"] == "timm_frames"
    check_forward_backward(model, torch.randn(1, 3, 2, crop, crop), (1, channels, 2, crop // stride, crop // stride),
                           6, first, (classifier,))


def test_timm_data_config_comes_from_the_pretrained_config() -> None:
    extractor = adapt(timm.create_model("resnet18", pretrained=False))
    cfg = extractor.default_data_config()
    pcfg = extractor.model.pretrained_cfg
    assert cfg.crop_size == pcfg["input_size"][-1] and cfg.mean == tuple(pcfg["mean"])
    assert cfg.resize_size == int(cfg.crop_size / pcfg["crop_pct"])


def test_unknown_timm_model_suggests_names() -> None:
    with pytest.raises(ValueError, match="timm/resnet18"):
        taghead.create_backbone("timm/resnet_18")


# -- generic feature_layer ---------------------------------------------------------------------------------


class Custom3DNet(nn.Module):
    """A user's 3D CNN: two conv stages, global pooling, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv3d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


def test_feature_layer_by_name_cuts_the_model_and_prunes_the_classifier() -> None:
    torch.manual_seed(0)
    net = Custom3DNet()
    original = copy.deepcopy(net).eval()
    model = taghead.wrap_backbone(net, 5, feature_layer="layer1", num_frames=4, crop_size=16, **SMALL_HEAD)
    assert model.backbone.feature_shape(4, 16) == (16, 2, 8, 8)
    assert model.backbone.pruned_modules == ["fc"]
    assert "backbone.model.fc.weight" not in model.state_dict()
    assert model.spec["backbone"] is None and model.spec["adapter"] == "generic"
    assert model.spec["adapter_kwargs"] == {"feature_layer": "layer1", "prune": True}
    video = torch.randn(2, 3, 4, 16, 16)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(video), original.layer1(original.stem(video)))
    model.train()
    check_forward_backward(model, video, (2, 16, 2, 8, 8), 5, "model.stem.0.weight", ("fc.",))


def test_feature_layer_callable_and_its_spec() -> None:
    torch.manual_seed(0)
    net = Custom3DNet()
    original = copy.deepcopy(net).eval()

    def features(model: nn.Module, video: torch.Tensor) -> torch.Tensor:
        return model.layer1(model.stem(video))

    model = taghead.wrap_backbone(net, 5, feature_layer=features, num_frames=4, crop_size=16).eval()
    video = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(video), original.layer1(original.stem(video)))
    assert "backbone.model.fc.weight" not in model.state_dict()
    assert model.spec["adapter_kwargs"]["callable"].endswith("features")
    with pytest.raises(ValueError, match="callable"):
        build_from_spec(model.spec, model.data_config, backbone=Custom3DNet())
    rebuilt = build_from_spec(model.spec, model.data_config, backbone=adapt(Custom3DNet(), feature_layer=features))
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_unsupported_model_lists_families_and_shows_feature_layer() -> None:
    with pytest.raises(TypeError) as info:
        taghead.wrap_backbone(Custom3DNet(), 5)
    message = str(info.value)
    assert "Custom3DNet" in message and 'feature_layer="layer4"' in message
    for family in ("torchvision VideoResNet", "pytorchvideo SlowFast", "torchvision Swin3D", "timm image models"):
        assert family in message
    assert "['stem', 'layer1', 'pool', 'fc']" in message


def test_unknown_feature_layer_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="Did you mean 'layer1'"):
        taghead.wrap_backbone(Custom3DNet(), 5, feature_layer="layer_1")
    with pytest.raises(TypeError, match="submodule name or a callable"):
        taghead.wrap_backbone(Custom3DNet(), 5, feature_layer=3)


def test_feature_map_that_is_not_5d_is_an_error_with_the_shape() -> None:
    with pytest.raises(FeatureMapError, match=r"5-D feature map \[B, C, T, H, W\].*\(1, 10\).*already pooled"):
        taghead.wrap_backbone(Custom3DNet(), 5, feature_layer="fc", num_frames=4, crop_size=16)

    class TokenNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv3d(3, 8, 4, stride=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(x).flatten(2).transpose(1, 2)

    with pytest.raises(FeatureMapError, match=r"3-D.*\(1, 16, 8\).*tokens"):
        taghead.wrap_backbone(TokenNet(), 5, feature_layer=lambda m, v: m(v), num_frames=4, crop_size=16)


def test_feature_layer_returning_a_tuple_is_an_error() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
            return x, 1

    class PairNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 1)
            self.pair = Pair()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pair(self.conv(x))[0]

    with pytest.raises(FeatureMapError, match="returned a tuple"):
        taghead.wrap_backbone(PairNet(), 5, feature_layer="pair", num_frames=2, crop_size=8)


def test_clip_too_small_for_the_backbone_is_an_error_with_the_shapes() -> None:
    net = nn.Sequential(nn.Conv3d(3, 8, 3), nn.ReLU(), nn.Conv3d(8, 8, 3))  # no padding: needs >= 5 pixels
    with pytest.raises(ValueError, match=r"cannot run a clip of 8 frames at 3x3 pixels \(input \[1, 3, 8, 3, 3\]\)"):
        taghead.wrap_backbone(net, 5, feature_layer="2", num_frames=8, crop_size=3)
    model = taghead.wrap_backbone(nn.Sequential(nn.Conv3d(3, 8, 3), nn.ReLU(), nn.Conv3d(8, 8, 3)), 5,
                                  feature_layer="2", num_frames=8, crop_size=5, **SMALL_HEAD)
    assert model.head.grid == (4, 1, 1)


def test_pruning_is_undone_when_the_forward_reads_weights_of_a_module_it_does_not_call() -> None:
    class SharedWeights(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 1)
            self.extra = nn.Conv3d(4, 4, 1)  # never called: its weight is used functionally

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv3d(self.conv(x), self.extra.weight)

    extractor = adapt(SharedWeights(), feature_layer=lambda m, v: m(v))
    assert isinstance(extractor, LayerFeatures)
    assert extractor.feature_shape(2, 4) == (4, 2, 4, 4)
    assert extractor.pruned_modules == [] and isinstance(extractor.model.extra, nn.Conv3d)


def test_generic_spec_round_trip_with_a_user_backbone() -> None:
    torch.manual_seed(0)
    model = taghead.wrap_backbone(Custom3DNet(), 5, feature_layer="layer1", num_frames=4, crop_size=16,
                                  head="meanpool").eval()
    rebuilt = build_from_spec(model.spec, model.data_config.to_dict(), backbone=Custom3DNet())
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    video = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(video), model(video))
