"""``taghead.utils.model_stats`` against hand-counted models (FLOPs: a multiply-add counts 2)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import taghead
from taghead.adapters import FeatureExtractor, adapt
from taghead.backbones import create_backbone, get_backbone_data_config
from taghead.heads import TAGHead
from taghead.utils import count_parameters, model_stats


def test_single_linear() -> None:
    stats = model_stats(nn.Linear(10, 4), (3, 10))
    assert stats.backbone_flops == 2 * 3 * 10 * 4  # [3, 10] @ [10, 4]
    assert stats.params == 10 * 4 + 4 and stats.head_params == 0 and stats.head_flops == 0
    assert stats.feature_shape is None
    assert stats.gmacs == pytest.approx(3 * 10 * 4 / 1e9)


def _conv_model(head: str = "meanpool", **head_kwargs) -> taghead.VideoClassifier:
    backbone = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
    return taghead.wrap_backbone(backbone, 5, head=head, feature_layer="0", num_frames=4, crop_size=16, **head_kwargs)


def test_conv3d_backbone_and_linear_head() -> None:
    stats = model_stats(_conv_model(), (2, 3, 4, 16, 16))
    assert stats.feature_shape == (2, 8, 4, 8, 8)
    outputs = 2 * 8 * 4 * 8 * 8  # B * C_out * T * H * W
    assert stats.backbone_flops == 2 * outputs * (3 * 1 * 3 * 3)  # each output: C_in * kT * kH * kW multiply-adds
    assert stats.head_flops == 2 * 2 * 8 * 5  # Linear(8, 5) on two pooled clips
    assert stats.backbone_params == 3 * 8 * 9 + 8 and stats.head_params == 8 * 5 + 5
    assert stats.head_params_overhead == pytest.approx(100 * 45 / 224)
    assert stats.head_flops_overhead == pytest.approx(100 * 160 / stats.backbone_flops)
    d = stats.to_dict()
    assert d["params"] == 224 + 45 and d["flops"] == stats.backbone_flops + 160


def test_transformer_head_counts_projections_attention_and_feed_forward() -> None:
    b, d, m, k = 2, 8, 16, 5
    model = _conv_model(head="tag", depth=1, num_heads=2, mlp_dim=m, use_graph=False)
    n = 4 * 8 * 8  # tokens
    stats = model_stats(model, (b, 3, 4, 16, 16))
    real = model_stats(model, (b, 3, 4, 16, 16), fake=False)  # CPU attention kernel and MHA fast path
    assert real == stats
    per_token = 3 * d * d + d * d + 2 * d * m  # qkv + output projection + two feed-forward layers
    expected = 2 * b * n * per_token + 2 * (2 * b * n * n * d) + 2 * b * d * k  # + QK^T and AV + classifier
    assert stats.head_flops == expected


def test_meta_counting_equals_a_real_forward_and_leaves_the_model_untouched() -> None:
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", 3, num_frames=8, crop_size=32)  # TAG-Head with graph
    model.train()
    bn = model.backbone.model.stem[1]
    before = bn.running_mean.clone()
    fast = model_stats(model, (1, 3, 8, 32, 32))
    real = model_stats(model, (1, 3, 8, 32, 32), fake=False)
    assert fast == real and fast.head_flops > 0
    assert model.training and torch.equal(bn.running_mean, before)
    assert fast.params == count_parameters(model)


def test_art_head_with_a_text_bank_is_counted_and_its_gradients_flags_kept() -> None:
    """ART expands its query prompts (a view of a parameter) into its attention: counting must not trip over it."""
    bank = taghead.build_text_bank([f"class {i}" for i in range(4)], encoder=taghead.HashingTextEncoder(16),
                                   progress=False)
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", 4, head="art", num_frames=8, crop_size=32,
                                  backbone_kwargs={"width": 4}, embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1,
                                  mlp_dim=32, text_bank=bank)
    model.backbone.freeze()
    flags = [p.requires_grad for p in model.parameters()]
    stats = model_stats(model, (1, 3, 8, 32, 32))
    assert stats.head_flops > 0 and stats.head_params == count_parameters(model.head)
    assert [p.requires_grad for p in model.parameters()] == flags and not all(flags) and any(flags)


def test_shared_parameters_are_counted_once() -> None:
    layer = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(layer, layer)) == 20


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        model_stats(nn.Linear(2, 2), (1, -2))


def _meta_backbone(name: str) -> FeatureExtractor:
    """The adapted backbone ``name``, on ``meta`` where its builder allows it (no memory, no initialisation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return adapt(create_backbone(name))
        except RuntimeError:  # a builder that reads tensor values (pytorchvideo MViT)
            return adapt(create_backbone(name))


# A ...ForVideoClassification entry has the encoder of its bare model (its classifier is dropped): checked once.
LARGE = [name for name in taghead.list_backbones()
         if name != "taghead/tiny_video_cnn" and not name.endswith("_for_video_classification")] + ["timm/resnet50"]


def test_default_head_adds_at_most_a_quarter_to_every_backbone_of_20m_parameters():
    """The issue's target: the default TAG-Head (99 classes, the backbone's default clip) has at most 25 % of
    the backbone's parameters when the backbone has 20 M or more."""
    checked = {}
    for name in LARGE:
        backbone = _meta_backbone(name)
        backbone_params = count_parameters(backbone)
        if backbone_params < 20e6:
            continue
        cfg = get_backbone_data_config(name) or backbone.default_data_config()
        channels, t, h, w = backbone.feature_shape(cfg.num_frames, cfg.crop_size)
        with torch.device("meta"):
            head = TAGHead(channels, t, h, w, num_classes=99)
        assert head.embed_dim == min(channels, 512)
        checked[name] = count_parameters(head) / backbone_params
    assert {"pytorchvideo/csn_r101", "pytorchvideo/slowfast_r50", "timm/resnet50", "torchvision/r3d_18",
            "transformers/vjepa2", "transformers/videomae"} <= set(checked)
    too_big = {name: f"{100 * ratio:.1f}%" for name, ratio in checked.items() if ratio > 0.25}
    assert not too_big, too_big
