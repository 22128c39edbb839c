"""TAGHead: the reference pipeline, timm conventions, presets, resampling, errors, I/O, ablations, training."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from taghead import TAG_PRESETS, MeanPoolHead, TAGHead
from taghead.heads import REFERENCE_WIDTH
from taghead.layers import resample_pos_embed_3d
from taghead.ops import time_aligned_appnp

with warnings.catch_warnings():  # torch_geometric's import warns about torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import APPNP, global_mean_pool

# torch_geometric compiles some helpers with the deprecated torch.jit.script on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

C, GRID = 16, (2, 3, 3)
SMALL = dict(num_classes=5, num_heads=4, mlp_dim=32)


def small_head(**kwargs) -> TAGHead:
    torch.manual_seed(0)
    return TAGHead(C, *GRID, **{**SMALL, **kwargs})


def feature_map(generator: torch.Generator, b: int = 3, c: int = C, grid=GRID) -> torch.Tensor:
    return torch.randn(b, c, *grid, generator=generator)


def reference_edges(t: int, h: int, w: int) -> torch.Tensor:
    """The reference's edge list, written out: complete graph per frame, same (h, w) in adjacent frames."""
    p = h * w
    edges = [(f * p + a, f * p + b) for f in range(t) for a in range(p) for b in range(p) if a != b]
    for f in range(t - 1):
        for pos in range(p):
            edges += [(f * p + pos, (f + 1) * p + pos), ((f + 1) * p + pos, f * p + pos)]
    return torch.tensor(edges, dtype=torch.long).t()


# ------------------------------------------------------------------ the reference pipeline and presets


def test_forward_equals_hand_written_reference_pipeline(generator):
    """gym99 preset vs TransformerEncoder + PyG APPNP on the explicit edges + mean + LayerNorm + Linear."""
    torch.manual_seed(0)
    head = TAGHead.from_preset("gym99").eval()
    t, h, w = head.grid
    feat = torch.randn(2, 512, t, h, w, generator=generator)

    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(512, 8, dim_feedforward=1024, dropout=0.5, batch_first=True), 2,
        enable_nested_tensor=False,
    )
    encoder.load_state_dict(head.transformer.state_dict())
    norm, linear = nn.LayerNorm(512), nn.Linear(512, 99)
    norm.load_state_dict(head.norm.state_dict())
    linear.load_state_dict(head.fc.state_dict())
    encoder.eval()
    edges = reference_edges(t, h, w)
    assert edges.shape[1] == 19_502

    with torch.no_grad():
        tokens = encoder(feat.flatten(2).transpose(1, 2) + head.pos_embed.weight)
        batch = Batch.from_data_list([Data(x=clip, edge_index=edges) for clip in tokens])
        refined = APPNP(K=2, alpha=0.1)(batch.x, batch.edge_index)
        expected = linear(norm(global_mean_pool(refined, batch.batch)))
        logits = head(feat)
        features = head.forward_features(feat)
    assert logits.shape == (2, 99)
    # The graph barely moves the global mean, so compare the refined tokens too: there it matters.
    assert float((features.reshape(-1, 512) - refined).abs().max()) <= 1e-5 * float(refined.abs().max())
    assert float((features.reshape(-1, 512) - batch.x).abs().max()) > 1e-2 * float(refined.abs().max())
    assert float((logits - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


PRESETS_FROM_REFERENCE = {  # REFERENCE.md: classes, frames, T, feed-forward width
    "haa500": (500, 32, 4, 512), "gym99": (99, 64, 8, 1024), "gym288": (288, 64, 8, 2048),
}


@pytest.mark.parametrize("name", sorted(PRESETS_FROM_REFERENCE))
def test_presets_match_reference(name):
    classes, frames, t, mlp = PRESETS_FROM_REFERENCE[name]
    preset = TAG_PRESETS[name]
    assert (preset["num_classes"], preset["num_frames"], preset["t"], preset["h"], preset["w"], preset["mlp_dim"]) == (
        classes, frames, t, 7, 7, mlp)
    head = TAGHead.from_preset(name)
    assert head.grid == (t, 7, 7) and head.num_classes == classes and head.num_features == 512
    assert isinstance(head.proj, nn.Identity)
    layers = head.transformer.layers
    assert len(layers) == 2 and head.transformer.norm is None
    for layer in layers:
        assert layer.self_attn.num_heads == 8 and layer.self_attn.batch_first
        assert layer.linear1.out_features == mlp and layer.dropout.p == 0.5 and not layer.norm_first
        assert layer.activation_relu_or_gelu == 1  # ReLU
    assert (head.k, head.alpha, head.intra, head.temporal, head.use_graph) == (2, 0.1, True, True, True)
    assert head.pos_embed.weight.shape == (1, t * 49, 512)

    torch.manual_seed(0)
    hand_built = nn.ModuleList([
        nn.TransformerEncoder(nn.TransformerEncoderLayer(512, 8, mlp, 0.5, batch_first=True), 2,
                              enable_nested_tensor=False),
        nn.LayerNorm(512), nn.Linear(512, classes),
    ])
    expected = sum(p.numel() for p in hand_built.parameters()) + t * 7 * 7 * 512
    assert sum(p.numel() for p in head.parameters()) == expected
    assert {k for k in head.state_dict() if k.startswith("transformer.")} == {
        f"transformer.{k}" for k in hand_built[0].state_dict()}


def test_defaults_are_the_light_reference_head():
    """On 512 channels the default head is the reference's (HAA500 feed-forward 512, 99 classes), no projection."""
    head = TAGHead(512, 8, 7, 7)
    assert head.get_config() == TAGHead.from_preset("haa500", num_classes=99, t=8).get_config()
    assert isinstance(head.proj, nn.Identity) and head.embed_dim == REFERENCE_WIDTH == 512


@pytest.mark.parametrize("channels, width", [(2304, 512), (2048, 512), (768, 512), (513, 512), (432, 432), (32, 32)])
def test_default_width_projects_only_tokens_wider_than_512(channels, width):
    head = TAGHead(channels, 2, 3, 3, num_classes=5)
    assert head.embed_dim == head.num_features == head.get_config()["embed_dim"] == width
    if channels > width:
        assert isinstance(head.proj, nn.Linear) and (head.proj.in_features, head.proj.out_features) == (channels, 512)
    else:
        assert isinstance(head.proj, nn.Identity)
    assert head(torch.randn(1, channels, 2, 3, 3)).shape == (1, 5)
    if channels % 8 == 0:  # an explicit width is kept: embed_dim=in_channels never projects
        kept = TAGHead(channels, 2, 3, 3, embed_dim=channels)
        assert isinstance(kept.proj, nn.Identity) and kept.embed_dim == channels


def test_from_preset_overrides_and_unknown_name():
    head = TAGHead.from_preset("haa500", num_classes=10, dropout=0.1)
    assert head.num_classes == 10 and head.transformer.layers[0].dropout.p == 0.1
    with pytest.raises(ValueError, match="unknown preset 'gym100'"):
        TAGHead.from_preset("gym100")


# ------------------------------------------------------------------ timm conventions


def test_shapes_and_timm_methods(generator):
    head = small_head().eval()
    x = feature_map(generator)
    tokens = head.forward_features(x)
    assert tokens.shape == (3, 18, C)
    pooled = head.forward_head(tokens, pre_logits=True)
    assert pooled.shape == (3, head.num_features) and head.num_features == C
    logits = head(x)
    assert logits.shape == (3, 5) and head.num_classes == 5
    assert torch.equal(logits, head.forward_head(tokens))
    assert torch.equal(logits, head.get_classifier()(pooled))
    assert head.get_classifier() is head.fc


def test_reset_classifier(generator):
    head = small_head().eval()
    x = feature_map(generator)
    pooled = head.forward_head(head.forward_features(x), pre_logits=True)
    head.reset_classifier(7)
    assert head.num_classes == 7 and head.fc.out_features == 7 and head(x).shape == (3, 7)
    assert head.get_config()["num_classes"] == 7
    head.reset_classifier(0)
    assert head.num_classes == 0 and isinstance(head.get_classifier(), nn.Identity)
    assert torch.equal(head(x), pooled)
    with pytest.raises(ValueError, match="num_classes must be a non-negative int"):
        head.reset_classifier(-1)


def test_reset_classifier_keeps_the_heads_dtype(generator):
    """A bfloat16 head gets a bfloat16 classifier (a float32 one would fail the forward: a dtype mismatch)."""
    head = small_head().to(torch.bfloat16).eval()
    head.reset_classifier(7)
    assert head.fc.weight.dtype == torch.bfloat16
    assert head(feature_map(generator).to(torch.bfloat16)).shape == (3, 7)
    empty = MeanPoolHead(C, *GRID, num_classes=0)  # no parameters at all: float32 on the CPU
    empty.reset_classifier(2)
    assert empty.fc.weight.dtype == torch.float32 and empty(feature_map(generator)).shape == (3, 2)


def test_num_classes_zero_gives_pooled_features(generator):
    head = small_head(num_classes=0, embed_dim=8).eval()
    x = feature_map(generator)
    out = head(x)
    assert out.shape == (3, 8)
    expected = head.norm(head.forward_features(x).mean(dim=1))
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ grids: dynamic_size and resampling


def test_dynamic_size_same_grid_is_identical(generator):
    fixed, dynamic = small_head().eval(), small_head(dynamic_size=True).eval()
    dynamic.load_state_dict(fixed.state_dict())
    x = feature_map(generator)
    assert torch.equal(fixed(x), dynamic(x))


@pytest.mark.parametrize("grid", [(3, 4, 5), (1, 2, 2), (4, 3, 3)])
def test_dynamic_size_other_grid(grid, generator):
    head = small_head(dynamic_size=True).eval()
    x = feature_map(generator, grid=grid)
    assert head(x).shape == (3, 5)
    assert head.forward_features(x).shape == (3, grid[0] * grid[1] * grid[2], C)


def test_dynamic_size_graph_follows_actual_grid(generator):
    head = small_head(dynamic_size=True, depth=0, pos_embed=False, k=3, alpha=0.2).eval()
    x = feature_map(generator, grid=(3, 2, 4))
    expected = time_aligned_appnp(x.flatten(2).transpose(1, 2), 3, 2, 4, 3, 0.2)
    assert torch.allclose(head.forward_features(x), expected, rtol=0, atol=1e-6)


def test_resampled_constant_embedding_stays_constant():
    head = small_head(dynamic_size=True)
    with torch.no_grad():
        head.pos_embed.weight.fill_(0.7)
    resampled = resample_pos_embed_3d(head.pos_embed.weight, GRID, (5, 7, 2))
    assert resampled.shape == (1, 70, C)
    assert torch.allclose(resampled, torch.full_like(resampled, 0.7), rtol=0, atol=1e-6)


def test_resample_matches_f_interpolate(generator):
    old, new, dim = (2, 3, 4), (3, 5, 2), 6
    pos = torch.randn(1, 24, dim, generator=generator)
    volume = pos.reshape(1, *old, dim).permute(0, 4, 1, 2, 3)  # [1, D, T, H, W], t-major tokens
    expected = F.interpolate(volume, size=new, mode="trilinear", align_corners=False)
    expected = expected.permute(0, 2, 3, 4, 1).reshape(1, -1, dim)
    assert torch.allclose(resample_pos_embed_3d(pos, old, new), expected, rtol=0, atol=1e-6)
    assert resample_pos_embed_3d(pos, old, old) is pos


def test_resample_along_time_by_hand():
    """Linear interpolation with align_corners=False: source coordinate (i + 0.5) * in/out - 0.5, clamped."""
    pos = torch.tensor([[[1.0], [5.0]]])  # t=2, one position, one channel
    out = resample_pos_embed_3d(pos, (2, 1, 1), (4, 1, 1)).flatten().tolist()
    assert out == pytest.approx([1.0, 1.0 + 0.25 * 4, 1.0 + 0.75 * 4, 5.0])


def test_resample_half_precision_embedding(generator):
    pos = torch.randn(1, 24, 4, generator=generator)
    out = resample_pos_embed_3d(pos.half(), (2, 3, 4), (4, 6, 8))
    assert out.dtype == torch.float16
    assert torch.allclose(out.float(), resample_pos_embed_3d(pos, (2, 3, 4), (4, 6, 8)), atol=5e-3)


def test_resample_wrong_length():
    with pytest.raises(ValueError, match="24 positions, expected t\\*h\\*w = 18"):
        resample_pos_embed_3d(torch.zeros(1, 24, 3), (2, 3, 3), (4, 4, 4))


def test_fixed_size_rejects_other_grid(generator):
    head = small_head()
    with pytest.raises(ValueError, match=r"\(2, 3, 3\).*\[B, 16, 2, 3, 3\].*\(3, 16, 3, 3, 3\).*dynamic_size=True"):
        head(feature_map(generator, grid=(3, 3, 3)))


# ------------------------------------------------------------------ error paths


@pytest.mark.parametrize("shape,match", [
    ((3, 18, C), r"5-D feature map.*3-D.*tokens \[B, N, C\]"),
    ((3, C, 3, 3), r"5-D feature map.*4-D.*unsqueeze\(2\)"),
    ((3, 2, C, 3, 3), r"16 channels at dim 1.*\[B, T, C, H, W\].*permute\(0, 2, 1, 3, 4\)"),
    ((3, 2, 3, 3, C), r"16 channels at dim 1.*channels-last"),
    ((3, 8, 2, 3, 3), r"16 channels at dim 1.*\(3, 8, 2, 3, 3\) with 8 channels"),
])
def test_bad_input_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        small_head()(torch.zeros(shape))


def test_integer_input_and_non_tensor():
    head = small_head()
    with pytest.raises(ValueError, match="floating-point feature map, got dtype torch.int64"):
        head(torch.zeros(3, C, *GRID, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor feature map.*list"):
        head([[1.0]])


@pytest.mark.parametrize("kwargs,match", [
    (dict(embed_dim=10, num_heads=4), r"embed_dim \(10\) must be divisible by num_heads \(4\)"),
    (dict(activation="tanh"), "activation must be 'relu' or 'gelu'"),
    (dict(depth=-1), "depth must be >= 0"),
    (dict(k=-1), "k must be a non-negative int or None"),
    (dict(alpha=1.5), r"alpha must lie in \[0, 1\]"),
    (dict(k=None, alpha=0.0), "k=None"),
    (dict(num_classes=-2), "num_classes must be a non-negative int"),
    (dict(num_classes=2.5), "num_classes must be a non-negative int"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TAGHead(C, *GRID, **{**SMALL, **kwargs})


@pytest.mark.parametrize("grid", [(0, 3, 3), (2, -3, 3), (2, 3, 1.5)])
def test_bad_grid_in_constructor(grid):
    with pytest.raises(ValueError, match="must be a positive int"):
        TAGHead(C, *grid, **SMALL)


def test_bad_in_channels():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        TAGHead(0, *GRID, **SMALL)


# ------------------------------------------------------------------ determinism, I/O, config


def test_eval_is_deterministic_and_train_uses_dropout(generator):
    head = small_head(dropout=0.5)
    x = feature_map(generator)
    head.eval()
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))


def test_state_dict_round_trip_through_safetensors(tmp_path, generator):
    head = small_head(embed_dim=8, num_heads=2).eval()
    path = tmp_path / "head.safetensors"
    save_file(head.state_dict(), str(path))
    torch.manual_seed(123)  # a differently initialised twin
    twin = TAGHead(**head.get_config()).eval()
    x = feature_map(generator)
    assert not torch.equal(twin(x), head(x))
    twin.load_state_dict(load_file(str(path)))
    assert torch.equal(twin(x), head(x))


def test_get_config_rebuilds_identical_architecture():
    head = small_head(embed_dim=8, num_heads=2, depth=3, norm_first=True, k=None, alpha=0.3, intra=False,
                      activation="gelu", drop_rate=0.1, dynamic_size=True)
    config = head.get_config()
    assert json.loads(json.dumps(config)) == config
    rebuilt = TAGHead(**config)
    assert repr(rebuilt) == repr(head)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in head.state_dict().items()}
    assert rebuilt.get_config() == config
    assert (rebuilt.k, rebuilt.alpha, rebuilt.intra, rebuilt.temporal, rebuilt.dynamic_size) == (None, 0.3, False, True, True)


# ------------------------------------------------------------------ ablation switches


@pytest.mark.parametrize("kwargs", [
    dict(depth=0), dict(use_graph=False), dict(intra=False), dict(temporal=False), dict(intra=False, temporal=False),
    dict(embed_dim=8, num_heads=2), dict(norm_first=True), dict(k=None), dict(k=0), dict(pos_embed=False),
    dict(activation="gelu"), dict(drop_rate=0.3),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_ablation_switches_run(kwargs, generator):
    head = small_head(**kwargs)
    x = feature_map(generator)
    logits = head(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


def test_ablation_switches_do_what_they_say(generator):
    x = feature_map(generator)
    tokens = x.flatten(2).transpose(1, 2)
    no_graph = small_head(use_graph=False).eval()
    expected = no_graph.transformer(no_graph.pos_embed(tokens, GRID))
    assert torch.allclose(no_graph.forward_features(x), expected, rtol=0, atol=1e-6)
    graph_only = small_head(depth=0, pos_embed=False, intra=False, k=4, alpha=0.3).eval()
    assert graph_only.transformer is None and graph_only.pos_embed is None
    expected = time_aligned_appnp(tokens, *GRID, 4, 0.3, intra=False)
    assert torch.allclose(graph_only.forward_features(x), expected, rtol=0, atol=1e-6)
    projected = small_head(embed_dim=8, num_heads=2)
    assert isinstance(projected.proj, nn.Linear) and projected.proj.in_features == C
    assert projected.forward_features(x).shape == (3, 18, 8)
    pre_norm = small_head(norm_first=True)
    assert isinstance(pre_norm.transformer.norm, nn.LayerNorm) and pre_norm.transformer.layers[0].norm_first


# ------------------------------------------------------------------ learning


def bump_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same bump, at a class-specific place in space-time: only position tells the classes apart.

    Classes 0 and 2 share the first frame, 0 and 3 share the spatial corner: both time and space matter,
    and the channel statistics (what mean pooling sees) are the same for every class.
    """
    spots = [(0, 0, 0), (3, 3, 3), (0, 3, 3), (3, 0, 0)]
    labels = torch.arange(n) % len(spots)
    x = 0.5 * torch.randn(n, 8, 4, 4, 4, generator=generator)
    for i, label in enumerate(labels.tolist()):
        t, h, w = spots[label]
        x[i, :, t, h, w] += 3.0
    return x, labels


def test_training_lowers_the_loss(generator):
    x, y = bump_task(64, generator)
    torch.manual_seed(0)
    head = TAGHead(8, 4, 4, 4, num_classes=4, embed_dim=16, depth=1, num_heads=2, mlp_dim=32, dropout=0.0)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.eval()
    with torch.no_grad():
        initial = F.cross_entropy(head(x), y).item()
    head.train()
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(head(x), y).backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        logits = head(x)
    final = F.cross_entropy(logits, y).item()
    assert final < 0.5 * initial, (initial, final)
    assert (logits.argmax(dim=1) == y).float().mean() > 0.8
