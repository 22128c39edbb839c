"""AttentiveProbeHead: transformers' own V-JEPA 2 pooler as the oracle, timm conventions, the attention map, grids,
errors, weight decay, gradients, Hub I/O and the new-class-count path."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import taghead
from taghead import AttentiveProbeHead

C, GRID = 16, (2, 3, 4)


def make_head(**kwargs) -> AttentiveProbeHead:
    torch.manual_seed(0)
    return AttentiveProbeHead(C, *GRID, **{"num_classes": 5, "num_heads": 4, **kwargs})


def feature_map(generator: torch.Generator, b: int = 3, grid=GRID) -> torch.Tensor:
    return torch.randn(b, C, *grid, generator=generator)


def _copy_linear(ours: nn.Linear, theirs: nn.Linear) -> None:
    ours.weight.copy_(theirs.weight)
    ours.bias.copy_(theirs.bias)


@pytest.mark.parametrize("depth", [0, 2])
def test_equals_transformers_vjepa2_attentive_pooler_and_classifier(depth, generator):
    """transformers' ``VJEPA2AttentivePooler`` is this head without positional embedding and without the output
    projection of the cross-attention (transformers' cross-attention has none): with V-JEPA 2's weights copied in
    and that projection set to the identity, pooled features and logits agree."""
    from transformers import VJEPA2Config
    from transformers.models.vjepa2.modeling_vjepa2 import VJEPA2AttentivePooler

    torch.manual_seed(1)
    config = VJEPA2Config(hidden_size=C, num_attention_heads=4, num_pooler_layers=depth, layer_norm_eps=1e-5)
    pooler, classifier = VJEPA2AttentivePooler(config).eval(), nn.Linear(C, 5)
    head = make_head(depth=depth, pos_embed=False).eval()
    assert head.get_config()["mlp_ratio"] == config.mlp_ratio and isinstance(head.proj, nn.Identity)
    with torch.no_grad():
        head.query.copy_(pooler.query_tokens)
        cross = pooler.cross_attention_layer
        head.norm_tokens.load_state_dict(cross.layer_norm1.state_dict())
        attn = cross.cross_attn
        head.cross_attn.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        head.cross_attn.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        head.cross_attn.out_proj.weight.copy_(torch.eye(C))
        head.cross_attn.out_proj.bias.zero_()
        head.norm_query.load_state_dict(cross.layer_norm2.state_dict())
        _copy_linear(head.mlp[0], cross.mlp.fc1)
        _copy_linear(head.mlp[3], cross.mlp.fc2)
        for ours, theirs in zip(head.blocks.layers if depth else [], pooler.self_attention_layers):
            sa = theirs.self_attn
            ours.self_attn.in_proj_weight.copy_(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]))
            ours.self_attn.in_proj_bias.copy_(torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias]))
            _copy_linear(ours.self_attn.out_proj, sa.out_proj)
            ours.norm1.load_state_dict(theirs.layer_norm1.state_dict())
            ours.norm2.load_state_dict(theirs.layer_norm2.state_dict())
            _copy_linear(ours.linear1, theirs.mlp.fc1)
            _copy_linear(ours.linear2, theirs.mlp.fc2)
        _copy_linear(head.fc, classifier)
        x = feature_map(generator)
        expected = pooler(x.flatten(2).transpose(1, 2))  # [B, C]
        pooled = head.forward_head(head.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head(x), classifier(expected), rtol=1e-5, atol=1e-5)
    assert len(head.blocks.layers if depth else []) == depth


def test_shapes_timm_methods_and_queries(generator):
    head = make_head(num_queries=3).eval()
    x = feature_map(generator)
    queries = head.forward_features(x)
    assert queries.shape == (3, 3, C) and head.num_features == C
    pooled = head.forward_head(queries, pre_logits=True)
    torch.testing.assert_close(pooled, queries.mean(1))
    assert torch.equal(head(x), head.fc(pooled)) and head.get_classifier() is head.fc
    wide = AttentiveProbeHead(600, 1, 2, 2, num_classes=2)
    assert wide.embed_dim == 512 and isinstance(wide.proj, nn.Linear) and wide(torch.randn(1, 600, 1, 2, 2)).shape == (1, 2)


def test_attention_map_is_the_softmax_of_the_queries_over_all_tokens(generator):
    head = make_head(num_queries=2, depth=1).eval()
    x = feature_map(generator, b=2)
    maps = head.attention_map(x)
    assert maps.shape == (2, 2, *GRID)
    torch.testing.assert_close(maps.sum((2, 3, 4)), torch.ones(2, 2))
    with torch.no_grad():
        tokens = head._tokens(x)
        wq, wk, _ = head.cross_attn.in_proj_weight.split(C)
        bq, bk, _ = head.cross_attn.in_proj_bias.split(C)
        q = (head.query @ wq.T + bq).unflatten(-1, (4, C // 4)).transpose(1, 2)  # [1, heads, Q, d]
        k = (tokens @ wk.T + bk).unflatten(-1, (4, C // 4)).transpose(1, 2)  # [B, heads, N, d]
        expected = ((q @ k.transpose(-1, -2)) / math.sqrt(C // 4)).softmax(-1).mean(1)
    torch.testing.assert_close(maps.flatten(2), expected)


def test_reset_classifier_and_no_classifier(generator):
    head = make_head().eval()
    x = feature_map(generator)
    pooled = head.forward_head(head.forward_features(x), pre_logits=True)
    head.reset_classifier(7)
    assert head.num_classes == 7 and head(x).shape == (3, 7) and head.get_config()["num_classes"] == 7
    head.reset_classifier(0)
    assert isinstance(head.fc, nn.Identity) and torch.equal(head(x), pooled)
    rebuilt = AttentiveProbeHead(**head.get_config())
    assert repr(rebuilt) == repr(head) and rebuilt.get_config() == head.get_config()


def test_grid_is_fixed_unless_dynamic_size(generator):
    head = make_head().eval()
    with pytest.raises(ValueError, match=r"built for a feature map grid \(T, H, W\) = \(2, 3, 4\).*dynamic_size=True"):
        head(feature_map(generator, grid=(4, 3, 4)))
    dynamic = make_head(dynamic_size=True).eval()
    assert dynamic(feature_map(generator, grid=(4, 3, 4))).shape == (3, 5)
    x = feature_map(generator)
    torch.testing.assert_close(dynamic(x), make_head().eval()(x))  # on its own grid: the same head


@pytest.mark.parametrize("shape,match", [
    ((2, 24, C), "5-D feature map.*3-D"),
    ((2, C, 3, 4), "5-D feature map.*4-D"),
    ((2, 2, C, 3, 4), r"16 channels at dim 1.*\[B, T, C, H, W\]"),
])
def test_bad_input(shape, match):
    with pytest.raises(ValueError, match=match):
        make_head()(torch.zeros(shape))


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_heads=5), r"embed_dim \(16\) must be divisible by num_heads \(5\)"),
    (dict(num_queries=0), "num_queries must be an int >= 1"),
    (dict(depth=-1), "depth must be an int >= 0"),
    (dict(mlp_ratio=0), "mlp_ratio must be > 0"),
    (dict(num_classes=-1), "num_classes must be a non-negative int"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_head(**kwargs)


def test_every_parameter_gets_a_gradient_and_weight_decay_spares_queries_and_positions(generator):
    head = make_head(depth=1, num_queries=2).train()
    head(feature_map(generator)).square().sum().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert head.no_weight_decay() == {"query", "pos_embed.weight"}
    model = taghead.wrap_backbone("taghead/tiny_video_cnn", 3, head="attentive", num_frames=8, crop_size=32,
                                  backbone_kwargs={"width": 4}, embed_dim=16, num_heads=2)
    groups = {g["name"]: g for g in model.param_groups(1e-3, weight_decay=0.05)}
    spared = {id(p) for p in groups["head_no_decay"]["params"]}
    assert id(model.head.query) in spared and id(model.head.pos_embed.weight) in spared
    assert id(model.head.cross_attn.in_proj_weight) not in spared


def test_head_checkpoint_round_trip_and_new_class_count(tmp_path, generator):
    head = make_head(depth=1, num_queries=2).eval()
    x = feature_map(generator)
    head.save_pretrained(tmp_path / "head", label_names=list("abcde"))
    loaded = AttentiveProbeHead.from_pretrained(tmp_path / "head")
    assert loaded.get_config() == head.get_config() and loaded.label_names == list("abcde")
    assert torch.equal(loaded(x), head(x))
    assert isinstance(taghead.from_pretrained(tmp_path / "head"), AttentiveProbeHead)
    with pytest.warns(UserWarning, match=r"except the classifier \(fc.weight, fc.bias\)"):
        other = AttentiveProbeHead.from_pretrained(tmp_path / "head", num_classes=3)
    assert other(x).shape == (3, 3)
    torch.testing.assert_close(other.forward_features(x), head.forward_features(x))


def test_gradient_checkpointing_of_the_self_attention_blocks_changes_nothing_but_memory(generator):
    """timm's ``set_grad_checkpointing``: with ``depth > 0`` the blocks run checkpointed (recomputed in the backward
    pass); outputs and gradients equal the plain run's."""
    x = feature_map(generator).double().requires_grad_()
    plain = make_head(depth=2, dropout=0.0).double()
    checkpointed = make_head(depth=2, dropout=0.0).double()
    checkpointed.set_grad_checkpointing(True)
    assert checkpointed.grad_checkpointing and not plain.grad_checkpointing
    outputs, grads = [], []
    for head in (plain, checkpointed):
        head.train()
        out = head(x)
        (out ** 2).sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in head.blocks.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    calls = []
    hook = checkpointed.blocks.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    checkpointed(x).sum().backward()
    hook.remove()
    assert len(calls) == 2, "a checkpointed block runs again in the backward pass"
