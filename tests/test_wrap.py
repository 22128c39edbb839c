"""``wrap_backbone`` and ``build_from_spec``: heads, freezing, optimizer groups, layouts, specs, registries."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import taghead
from taghead.adapters import FeatureExtractor, adapt, find_adapter, register_adapter
from taghead.adapters import registry as adapter_registry
from taghead.backbones import registry as backbone_registry
from taghead.heads import MeanPoolHead, TAGHead
from taghead.models.spec import OPTIONAL_SPEC_KEYS
from taghead.models.wrap import SPEC_KEYS, build_from_spec

TINY = "taghead/tiny_video_cnn"
SMALL = dict(num_frames=8, crop_size=32)  # tiny CNN: strides 4 (time) and 8 (space) -> grid (2, 4, 4)


def _video(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 32, 32)


def _changed_tiny_cnn() -> nn.Module:
    """The tiny CNN with one activation replaced: no registered builder makes it, so it is not recognised."""
    model = taghead.backbones.tiny_video_cnn()
    model.layer3[2] = nn.GELU()
    return model


# -- building ---------------------------------------------------------------------------------------------


def test_tiny_cnn_by_name_grid_from_strides_and_data_config() -> None:
    model = taghead.wrap_backbone(TINY, 7, **SMALL)
    assert isinstance(model, taghead.VideoClassifier)
    assert model.backbone.adapter_name == "taghead_tiny_video_cnn"
    assert (model.backbone.temporal_stride, model.backbone.spatial_stride) == (4, 8)  # TinyVideoCNN's strides
    assert model.head.grid == (8 // 4, 32 // 8, 32 // 8) and model.head.in_channels == model.backbone.out_channels
    assert (model.data_config.num_frames, model.data_config.crop_size) == (8, 32)
    # A new crop keeps the backbone's resize-to-crop ratio (128 / 112 for the default 112 crop).
    assert model.data_config.resize_size == round(32 * 128 / 112)
    assert model(_video()).shape == (2, 7)


def test_defaults_come_from_the_backbone_registry() -> None:
    model = taghead.wrap_backbone("taghead/r2plus1d_34", 99, head="meanpool")
    ref = backbone_registry.get_backbone_data_config("taghead/r2plus1d_34")
    assert model.data_config == ref and (ref.num_frames, ref.crop_size) == (32, 112)
    assert model.head.grid == (32 // 8, 112 // 16, 112 // 16)  # [B, 512, T/8, 7, 7] at 112x112


def test_head_as_name_class_and_factory_with_head_kwargs() -> None:
    by_name = taghead.wrap_backbone(TINY, 3, head="tag", mlp_dim=48, depth=1, **SMALL)
    assert isinstance(by_name.head, TAGHead) and by_name.spec["head"] == "tag"
    assert by_name.head.transformer.layers[0].linear1.out_features == 48 and len(by_name.head.transformer.layers) == 1
    assert by_name.spec["head_config"]["mlp_dim"] == 48

    by_class = taghead.wrap_backbone(TINY, 3, head=MeanPoolHead, drop_rate=0.25, **SMALL)
    assert isinstance(by_class.head, MeanPoolHead) and by_class.head.head_drop.p == 0.25
    assert by_class.spec["head"] == "meanpool"  # a registered class is recorded by its name

    calls = {}

    def factory(in_channels: int, t: int, h: int, w: int, *, num_classes: int, scale: float) -> nn.Module:
        calls.update(in_channels=in_channels, grid=(t, h, w), num_classes=num_classes, scale=scale)
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    custom = taghead.wrap_backbone(TINY, 4, head=factory, scale=2.0, **SMALL)
    assert calls == dict(in_channels=64, grid=(2, 4, 4), num_classes=4, scale=2.0)
    assert custom.spec["head"] is None and custom.spec["head_config"] is None
    assert custom.head(custom.forward_features(_video())).shape == (2, 4)

    # A factory that returns a registered head: the spec records the head itself, which rebuilds it.
    made = taghead.wrap_backbone(TINY, 4, head=lambda c, t, h, w, *, num_classes: MeanPoolHead(c, t, h, w,
                                 num_classes=num_classes, drop_rate=0.5), **SMALL)
    assert made.spec["head"] == "meanpool" and made.spec["head_config"]["drop_rate"] == 0.5
    assert isinstance(build_from_spec(made.spec, made.data_config).head, MeanPoolHead)


def test_label_names_need_a_head_with_num_classes() -> None:
    class Bare(nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.fc = nn.Linear(in_channels, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((2, 3, 4)))

    def factory(in_channels: int, t: int, h: int, w: int, *, num_classes: int) -> nn.Module:
        return Bare(in_channels)

    with pytest.raises(TypeError, match="label_names need a head with num_classes, and Bare has no num_classes"):
        taghead.wrap_backbone(TINY, 3, head=factory, label_names=["a", "b", "c"], **SMALL)
    model = taghead.wrap_backbone(TINY, 3, head=factory, **SMALL)  # without labels it is fine
    assert model.label_names is None and model(_video()).shape == (2, 3)


def test_head_that_does_not_fit_reports_the_feature_map() -> None:
    with pytest.raises(ValueError, match=r"feature map \[B, 64, 2, 4, 4\].*divisible"):
        taghead.wrap_backbone(TINY, 3, num_heads=7, **SMALL)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="nn.Module or a registered backbone name"):
        taghead.wrap_backbone(42, 3)
    with pytest.raises(ValueError, match="Did you mean 'taghead/tiny_video_cnn'"):
        taghead.wrap_backbone("taghead/tiny_videocnn", 3)
    with pytest.raises(ValueError, match="takes no weights=; published weights are tags"):
        taghead.create_backbone("torchvision/r3d_18", weights="KINETICS400_V1")
    with pytest.raises(ValueError, match="backbone_kwargs apply to a backbone given by name"):
        taghead.wrap_backbone(taghead.backbones.tiny_video_cnn(), 3, backbone_kwargs={"width": 8})
    with pytest.raises(ValueError, match=r"DataConfig\.num_frames must be an int >= 1, got 0 \(int\)"):
        taghead.wrap_backbone(TINY, 3, num_frames=0)


_RGB = r"3 finite real numbers \(RGB\)"


@pytest.mark.parametrize("field, value, expected", [
    ("num_frames", 16.5, "an int >= 1"), ("num_frames", True, "an int >= 1"), ("num_frames", "16", "an int >= 1"),
    ("crop_size", "112", "an int >= 1"), ("crop_size", 0, "an int >= 1"),
    ("resize_size", -5, "None or an int >= 1"), ("resize_size", 128.0, "None or an int >= 1"),
    ("mean", ["1", "2", "3"], _RGB), ("mean", "0.5", _RGB), ("mean", (0.5, 0.5), _RGB), ("mean", (0.5, True, 0.5), _RGB),
    ("std", (0.2, 0.0, 0.2), _RGB + " > 0"), ("std", (0.2, float("nan"), 0.2), _RGB + " > 0"),
])
def test_data_config_refuses_bad_values(field, value, expected) -> None:
    received = re.escape(f"got {value!r} ({type(value).__name__})")
    with pytest.raises(ValueError, match=rf"DataConfig\.{field} must be {expected}, {received}"):
        taghead.DataConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"DataConfig\.{field} must be"):  # config.json content
        taghead.DataConfig.from_dict(taghead.DataConfig().to_dict() | {field: value})


def test_data_config_keeps_good_values_and_scales_the_resize_with_the_crop() -> None:
    dc = taghead.DataConfig.from_dict({"num_frames": 8, "crop_size": 32, "resize_size": None, "mean": [0, 1, 0.5],
                                       "std": [1, 2, 0.5]})
    assert dc.mean == (0.0, 1.0, 0.5) and all(isinstance(v, float) for v in dc.mean + dc.std)
    assert dc.with_clip(crop_size=64).resize_size is None
    dc = taghead.DataConfig(num_frames=16, crop_size=112, resize_size=128)
    assert (dc.with_clip(4, 160).num_frames, dc.with_clip(4, 160).resize_size) == (4, 183)
    assert dc.with_clip() == dc


# -- layouts ------------------------------------------------------------------------------------------------


def test_wrong_video_layouts_name_the_expected_one() -> None:
    model = taghead.wrap_backbone(TINY, 3, **SMALL)
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\].*looks like \[B, T, 3, H, W\].*permute\(0, 2, 1, 3, 4\)"):
        model(torch.randn(2, 8, 3, 32, 32))
    with pytest.raises(ValueError, match=r"channels-last \[B, T, H, W, 3\]"):
        model(torch.randn(2, 8, 32, 32, 3))
    with pytest.raises(ValueError, match=r"5-D video \[B, 3, T, H, W\].*unsqueeze\(0\)"):
        model(torch.randn(3, 8, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"video tensor \[B, 3, T, H, W\]"):
        model([torch.randn(2, 3, 8, 32, 32)])


def test_clip_of_another_size_than_the_head_grid_is_an_error_with_shapes() -> None:
    model = taghead.wrap_backbone(TINY, 3, **SMALL)
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(1, 64, 2, 2, 2\)"):
        model(torch.randn(1, 3, 8, 16, 16))


# -- training controls -------------------------------------------------------------------------------------


def test_freeze_backbone_really_freezes() -> None:
    torch.manual_seed(0)
    model = taghead.wrap_backbone(TINY, 3, freeze_backbone=True, **SMALL)
    assert model.spec["freeze_backbone"] is True
    model.train()
    assert model.head.training and not model.backbone.model.training  # BatchNorm statistics fixed
    bn = model.backbone.model.stem[1]
    stats = bn.running_mean.clone()
    model(_video()).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert torch.equal(bn.running_mean, stats)
    assert model.head.fc.weight.grad is not None
    groups = model.param_groups(lr=1e-3, weight_decay=0.0)
    assert [g["name"] for g in groups] == ["head"]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.head.parameters()}
    model.backbone.freeze(False)
    assert [g["name"] for g in model.param_groups(lr=1e-3, weight_decay=0.0)] == ["backbone", "head"]


def test_param_groups_learning_rates() -> None:
    model = taghead.wrap_backbone(TINY, 3, **SMALL)
    groups = {g["name"]: g for g in model.param_groups(lr=1e-3, backbone_lr_scale=0.1, weight_decay=0.05)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone_no_decay"]["lr"] == pytest.approx(1e-4) and groups["head_no_decay"]["lr"] == pytest.approx(1e-3)
    assert all(g["weight_decay"] == (0.0 if name.endswith("_no_decay") else 0.05) for name, g in groups.items())
    n_backbone = sum(p.numel() for name in ("backbone", "backbone_no_decay") for p in groups[name]["params"])
    assert n_backbone == sum(p.numel() for p in model.backbone.parameters())
    n_head = sum(p.numel() for name in ("head", "head_no_decay") for p in groups[name]["params"])
    assert n_backbone + n_head == sum(p.numel() for p in model.parameters())


def test_reset_classifier() -> None:
    model = taghead.wrap_backbone(TINY, 3, label_names=["a", "b", "c"], **SMALL)
    assert model.label_names == ["a", "b", "c"]
    model.reset_classifier(11)
    assert model.num_classes == 11 and model(_video()).shape == (2, 11) and model.label_names is None
    model.reset_classifier(0)
    assert model(_video()).shape == (2, model.head_hidden_size)


def test_label_names_are_one_per_class_however_they_are_set() -> None:
    with pytest.raises(ValueError, match=r"label_names needs one name per class \(3\), got 2 names"):
        taghead.wrap_backbone(TINY, 3, label_names=["a", "b"], **SMALL)
    model = taghead.wrap_backbone(TINY, 3, **SMALL)
    with pytest.raises(ValueError, match=r"one name per class \(3\) as a list of str, got 'abc' \(a str\)"):
        model.label_names = "abc"
    with pytest.raises(ValueError, match=r"one name per class \(4\), got 2 names"):
        model.reset_classifier(4, label_names=["a", "b"])
    assert model.num_classes == 3 and model.label_names is None  # a failed reset changes nothing
    model.label_names = ("x", "y", "z")
    assert model.label_names == ["x", "y", "z"]


# -- specs --------------------------------------------------------------------------------------------------


def test_spec_round_trips_through_json() -> None:
    torch.manual_seed(0)
    model = taghead.wrap_backbone(TINY, 5, backbone_kwargs={"width": 8}, mlp_dim=32, **SMALL).eval()
    spec = json.loads(json.dumps(model.spec))
    assert set(spec) == set(SPEC_KEYS) | set(OPTIONAL_SPEC_KEYS) and spec["backbone_kwargs"] == {"width": 8}
    assert spec["backbone_weights"] is None and spec["batchnorm"] is None  # random start, BatchNorm as built
    rebuilt = build_from_spec(spec, json.loads(json.dumps(model.data_config.to_dict())), label_names=list("abcde"))
    assert rebuilt.spec == model.spec and rebuilt.label_names == list("abcde")
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    video = _video(1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(video), model(video))


def test_spec_keeps_freezing_and_adapter_arguments() -> None:
    model = taghead.wrap_backbone(TINY, 5, freeze_backbone=True, head="meanpool", **SMALL)
    rebuilt = build_from_spec(model.spec, model.data_config)
    assert rebuilt.backbone.frozen and not any(p.requires_grad for p in rebuilt.backbone.parameters())


def test_build_from_spec_errors() -> None:
    model = taghead.wrap_backbone(TINY, 5, **SMALL)
    with pytest.raises(ValueError, match="lacks"):
        build_from_spec({"backbone": TINY}, model.data_config)
    with pytest.raises(ValueError, match="do not pass backbone="):
        build_from_spec(model.spec, model.data_config, backbone=taghead.backbones.tiny_video_cnn())
    user = taghead.wrap_backbone(_changed_tiny_cnn(), 5, **SMALL)  # not a registered architecture
    assert user.spec["backbone"] is None and user.spec["adapter"] == "taghead_tiny_video_cnn"
    with pytest.raises(ValueError, match="pass backbone="):
        build_from_spec(user.spec, user.data_config)
    rebuilt = build_from_spec(user.spec, user.data_config, backbone=_changed_tiny_cnn())
    assert rebuilt.state_dict().keys() == user.state_dict().keys()
    no_config = dict(model.spec, head_config=None)
    with pytest.raises(ValueError, match=r"cannot rebuild its head \(spec\['head'\] is 'tag' but "
                                         r"spec\['head_config'\] is None\): pass head="):
        build_from_spec(no_config, model.data_config)
    with pytest.raises(ValueError, match=r"cannot rebuild its head \(spec\['head'\] is None: a custom head factory\)"):
        build_from_spec(dict(model.spec, head=None), model.data_config)
    other_clip = user.data_config.to_dict() | {"crop_size": 64}
    with pytest.raises(ValueError, match=r"\[B, 64, 2, 8, 8\].*\[B, 64, 2, 4, 4\]"):
        build_from_spec(user.spec, other_clip, backbone=_changed_tiny_cnn())


# -- registries ---------------------------------------------------------------------------------------------


class _Base3D(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv3d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3, 4)))


class _Special3D(_Base3D):
    pass


@pytest.fixture
def clean_adapter_registry(monkeypatch):
    monkeypatch.setattr(adapter_registry, "_ADAPTERS", dict(adapter_registry._ADAPTERS))
    monkeypatch.setattr(adapter_registry, "_BY_TYPE", list(adapter_registry._BY_TYPE))


def test_third_party_adapter_most_specific_class_first(clean_adapter_registry) -> None:
    @register_adapter("test_base3d", _Base3D, family="test Base3D")
    class BaseFeatures(FeatureExtractor):
        def __init__(self, model: nn.Module) -> None:
            super().__init__(model)
            model.head = nn.Identity()

        def extract(self, video: torch.Tensor) -> torch.Tensor:
            return self.model.body(video)

    @register_adapter(f"{__name__.rsplit('.', 1)[-1]}_special3d", f"{__name__}:_Special3D")  # by name string
    class SpecialFeatures(BaseFeatures):
        pass

    assert {"test_base3d", "test_wrap_special3d"} <= set(taghead.list_adapters())
    assert find_adapter(_Base3D()) is BaseFeatures
    assert find_adapter(_Special3D()) is SpecialFeatures
    model = taghead.wrap_backbone(_Special3D(), 3, num_frames=4, crop_size=8, head="meanpool")
    assert model.spec["adapter"] == "test_wrap_special3d" and model.head.in_channels == 8
    assert "backbone.model.head.weight" not in model.state_dict()
    assert "test Base3D" in "\n".join(adapter_registry.supported_families())
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("test_base3d", _Base3D)(SpecialFeatures)
    with pytest.raises(ValueError, match="does not fit"):
        adapt(nn.Conv3d(3, 3, 1), adapter="torchvision_video_resnet")


def test_backbone_registry(monkeypatch) -> None:
    monkeypatch.setattr(backbone_registry, "_BACKBONES", dict(backbone_registry._BACKBONES))
    names = taghead.list_backbones()
    for name in ("torchvision/r2plus1d_18", "pytorchvideo/slowfast_r50", "taghead/r2plus1d_34", "taghead/tiny_video_cnn"):
        assert name in names
    assert taghead.list_backbones("pytorchvideo/x3d_*") == [f"pytorchvideo/x3d_{s}" for s in ("l", "m", "s", "xs")]

    @taghead.backbones.register_backbone("test/tiny8", data_config=taghead.DataConfig(num_frames=4, crop_size=16))
    def tiny8(**kwargs) -> nn.Module:
        return taghead.backbones.tiny_video_cnn(width=8, **kwargs)

    model = taghead.wrap_backbone("test/tiny8", 2, head="meanpool")
    assert model.spec["backbone"] == "test/tiny8" and model.head.in_channels == 32 and model.head.grid == (1, 2, 2)
    with pytest.raises(ValueError, match="reserved for timm"):
        taghead.backbones.register_backbone("timm/mine")(tiny8)
