"""taghead.explain: the synthetic flashes' ground truth, explanations against independent computations, the
model left untouched, errors, pictures, the CLI, and the concentration of trained models' heatmaps."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import taghead
from taghead import DataConfig, VideoClassifier
from taghead.cli import main
from taghead.data import SyntheticFineGrainedDataset
from taghead.explanation import (
    ExplanationMethodError,
    concentration_ratio,
    display_frames,
    explain,
    save_overlay_video,
    save_sheet,
)
from taghead.explanation.grid import cell_centres, measure_token_centres, upsample

NAMES = [f"class {i}" for i in range(5)]


def tiny_model(head: str = "tag", num_classes: int = 5, **head_kwargs) -> VideoClassifier:
    """Tiny CNN (8 frames of 32x32 -> a 2x4x4 grid) + a head, random weights."""
    torch.manual_seed(0)
    defaults = {"tag": dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=32, dropout=0.0),
                "art": dict(embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=32, num_queries=3),
                "meanpool": {}, "attentive": dict(embed_dim=16, num_heads=2, depth=1)}[head]
    if head == "art" and "text_bank" not in head_kwargs:
        defaults["text_bank"] = taghead.build_text_bank(NAMES[:num_classes], encoder=taghead.HashingTextEncoder(16),
                                                        progress=False)
    return taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes, head=head, num_frames=8, crop_size=32,
                                 backbone_kwargs={"width": 4}, label_names=NAMES[:num_classes] or None,
                                 **{**defaults, **head_kwargs})


def clips(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- synthetic ground truth
@pytest.mark.parametrize("frames,size", [(16, 64), (8, 32), (24, 48)])
def test_events_say_where_the_flash_pixels_are(frames: int, size: int) -> None:
    """Independently of the renderer's bookkeeping: only the flashes are strongly saturated colours (the
    background and the clutter are grey, the moving squares at most half saturated), so every strongly
    saturated pixel must lie in the box of a flash during one of its frames, and every flash frame shows one."""
    ds = SyntheticFineGrainedDataset(16, num_frames=frames, size=size, seed=5, split="val")
    for i in range(len(ds)):
        video = ds.render(i)[0].numpy().astype(np.float32) / 255
        saturated = (video.max(-1) - video.min(-1)) > 0.6  # [T, H, W]
        events = ds.events(i)
        assert [e.order for e in events] == [0, 1]
        quarter = frames // 4
        assert max(events[0].frames) < quarter and min(events[1].frames) >= frames - quarter
        mask = ds.event_mask(i)
        assert mask.shape == (frames, size, size) and mask.dtype == torch.bool
        assert torch.equal(ds.event_mask(i, events), mask) and not torch.equal(ds.event_mask(i, events[:1]), mask)
        assert not (saturated & ~mask.numpy()).any(), f"clip {i}: saturated pixels outside the events' boxes"
        for event in events:
            x0, y0, x1, y1 = event.box
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert x0 <= event.centre[0] < x1 and y0 <= event.centre[1] < y1
            for t in event.frames:
                inside = saturated[t, y0:y1, x0:x1]
                assert inside.any(), f"clip {i}: no flash in frame {t} of its box {event.box}"
                # the flash's saturation peaks at the centre: its saturation-weighted centroid is within a pixel or two
                sat = np.where(inside, (video[t].max(-1) - video[t].min(-1))[y0:y1, x0:x1], 0.0)
                rows, cols = np.mgrid[y0:y1, x0:x1]
                centroid = ((sat * cols).sum() / sat.sum(), (sat * rows).sum() / sat.sum())
                assert np.hypot(centroid[0] - event.centre[0], centroid[1] - event.centre[1]) < 0.1 * size
        corners = [e.corner for e in events]
        name = ds.class_names[ds.labels[i]]
        assert name == f"{corners[0]} then {corners[1]}"


def test_events_do_not_change_the_clips() -> None:
    ds = SyntheticFineGrainedDataset(4, seed=2)
    before = [ds.render(i)[0] for i in range(4)]
    ds.events(1)
    assert all(torch.equal(before[i], ds.render(i)[0]) for i in range(4))
    with pytest.raises(IndexError):
        ds.events(4)


# --------------------------------------------------------------------------------- against independent oracles
def test_gradcam_hirescam_and_occlusion_match_hand_computations() -> None:
    model = tiny_model("tag").eval()
    video = clips(2)
    target = [1, 3]
    features = model.forward_features(video).detach().requires_grad_(True)
    logits = model.head(features)
    grad = torch.autograd.grad(logits[[0, 1], target].sum(), features)[0]
    gradcam = (grad.mean((2, 3, 4), keepdim=True) * features).sum(1).clamp_min(0).detach()
    hirescam = (grad * features).sum(1).clamp_min(0).detach()
    for method, expected in (("gradcam", gradcam), ("hirescam", hirescam)):
        got = explain(model, video, target, method=method)
        for i in range(2):
            torch.testing.assert_close(got[i].token_relevance, expected[i], rtol=1e-4, atol=1e-6)
    # occlusion: the mean drop of the log-probability over the 2 x 2 patches (of one frame) that hide a token
    occ = explain(model, video, target, method="occlusion")
    with torch.no_grad():
        feats = model.forward_features(video)
        for i, (t, h, w) in ((0, (0, 1, 2)), (1, (1, 3, 0)), (1, (0, 0, 0))):
            base = model.head(feats[i:i + 1]).log_softmax(1)[0, target[i]]
            drops = []
            for top in range(max(0, h - 1), min(h, 2) + 1):  # patch rows top, top + 1 within the 4 rows
                for left in range(max(0, w - 1), min(w, 2) + 1):
                    occluded = feats[i:i + 1].clone()
                    occluded[0, :, t, top:top + 2, left:left + 2] = feats[i].mean((1, 2, 3))[:, None, None]
                    drops.append((base - model.head(occluded).log_softmax(1)[0, target[i]]).item())
            expected = max(0.0, sum(drops) / len(drops))
            assert occ[i].token_relevance[t, h, w].item() == pytest.approx(expected, abs=1e-5)


def test_explanation_fields_and_default_target() -> None:
    model = tiny_model("tag")
    video = clips(3)
    with torch.no_grad():
        predicted = model.eval()(video).argmax(1).tolist()
    results = explain(model, video)
    assert isinstance(results, list) and [r.target for r in results] == predicted
    for r in results:
        assert r.target_name == NAMES[r.target] and r.method == "gradcam"
        assert r.token_relevance.shape == (2, 4, 4) and (r.token_relevance >= 0).all()
        assert r.heatmap.shape == (8, 32, 32) and r.heatmap.min() >= 0
        assert r.heatmap.max() == pytest.approx(1.0) or r.heatmap.max() == 0
        assert r.frame_relevance.shape == (8,) and r.frame_relevance.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert r.probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert r.probability == pytest.approx(r.probabilities[r.target].item())
        assert r.regions is None and r.selected_classes is None
        assert [c[0] for c in r.top_classes(2)] == r.probabilities.topk(2).indices.tolist()
    one = explain(model, video[1], target="class 2")
    assert one.target == 2 and one.target_name == "class 2"
    torch.testing.assert_close(one.token_relevance, explain(model, video[1:2], 2)[0].token_relevance)


def test_upsampling_is_trilinear_between_token_centres() -> None:
    maps = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    # with the tokens at their cells' centres it is exactly torch's trilinear resize
    expected = F.interpolate(maps[:, None], size=(12, 16, 20), mode="trilinear", align_corners=False)[:, 0]
    got = upsample(maps, cell_centres((3, 4, 5), (12, 16, 20)), (12, 16, 20))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # with tokens on input indices 0, s, 2s, ... a voxel on a token takes exactly that token's value
    corner = tuple(torch.arange(n, dtype=torch.float64) * (size // n) for n, size in zip((3, 4, 5), (12, 16, 20)))
    got = upsample(maps, corner, (12, 16, 20))
    torch.testing.assert_close(got[:, ::4, ::4, ::4], maps)
    torch.testing.assert_close(got[:, 2, 0, 0], (maps[:, 0, 0, 0] + maps[:, 1, 0, 0]) / 2)


class _ConvBackbone(nn.Module):
    """One 3D convolution with constant weights: its receptive fields are known exactly."""

    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, kernel, stride, padding, bias=False)
        nn.init.constant_(self.conv.weight, 1.0)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.conv(video)


@pytest.mark.parametrize("kernel,stride,padding,offset", [(3, 2, 1, 0.0), (4, 4, 0, 1.5), (5, 2, 2, 0.0)])
def test_token_centres_are_the_receptive_field_centres(kernel: int, stride: int, padding: int, offset: float) -> None:
    backbone = _ConvBackbone(kernel, stride, padding)
    t, h = 16 // stride, 32 // stride
    head = taghead.MeanPoolHead(4, t, h, h, num_classes=3)
    model = VideoClassifier(backbone, head, DataConfig(num_frames=16, crop_size=32)).eval()
    centres = measure_token_centres(model, (1, 3, 16, 32, 32), (t, h, h), device=torch.device("cpu"),
                                    dtype=torch.float32)
    for axis, n in enumerate((t, h, h)):
        torch.testing.assert_close(centres[axis], torch.arange(n, dtype=torch.float64) * stride + offset)


def test_token_centres_are_measured_afresh_when_the_weights_change() -> None:
    """The centres come from input gradients, so they depend on the weights: cached while the weights stay, measured
    again after load_state_dict or an optimiser step (stale centres shifted heatmaps by up to 0.54)."""
    model = tiny_model("tag").eval()
    other = tiny_model("tag").eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in other.backbone.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * p.std().clamp_min(0.1))
    shape, grid, where = (1, 3, 8, 32, 32), (2, 4, 4), dict(device=torch.device("cpu"), dtype=torch.float32)
    first = measure_token_centres(model, shape, grid, **where)
    assert measure_token_centres(model, shape, grid, **where) is first  # same weights: the cached centres
    reference = measure_token_centres(copy.deepcopy(other), shape, grid, **where)
    assert max(float((a - b).abs().max()) for a, b in zip(first, reference)) > 0.05  # the weights matter
    video = clips(1)[0]
    before = explain(model, video, 0)
    model.load_state_dict(other.state_dict())
    after = explain(model, video, 0)
    for got, want in zip(after.token_centres, reference):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    torch.testing.assert_close(after.heatmap, explain(copy.deepcopy(other), video, 0).heatmap)
    assert not torch.allclose(after.heatmap, before.heatmap, atol=1e-3)
    optimizer = torch.optim.SGD(model.backbone.parameters(), lr=1.0)  # an in-place step, as in training
    model.zero_grad()
    model.train()(clips(2)).sum().backward()
    optimizer.step()
    model.eval()
    stepped = measure_token_centres(model, shape, grid, **where)
    fresh = measure_token_centres(copy.deepcopy(model), shape, grid, **where)
    assert all(torch.equal(a, b) for a, b in zip(stepped, fresh))
    model.head.fc.weight.data.add_(1.0)  # the head does not take part in the measurement: the cache stays
    assert measure_token_centres(model, shape, grid, **where) is stepped


def test_art_regions_are_the_decoder_cross_attention() -> None:
    model = tiny_model("art").eval()
    video = clips(2, seed=3)
    layer = model.head.decoder.layers[-1]
    seen = {}
    handle = layer.multihead_attn.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(query=args[0].detach(), key=args[1].detach()), with_kwargs=True)
    try:
        with torch.no_grad():
            model(video)
            head_selected = model.head.selected_classes.clone()
    finally:
        handle.remove()
    attn = layer.multihead_attn
    d, heads = attn.embed_dim, attn.num_heads
    wq, wk, _ = attn.in_proj_weight.split(d)
    bq, bk, _ = attn.in_proj_bias.split(d)
    q = (seen["query"] @ wq.T + bq).unflatten(-1, (heads, d // heads)).transpose(1, 2)  # [B*T, heads, N, dh]
    k = (seen["key"] @ wk.T + bk).unflatten(-1, (heads, d // heads)).transpose(1, 2)
    weights = ((q @ k.transpose(-1, -2)) / math.sqrt(d // heads)).softmax(-1).mean(1)  # [B*T, N, H*W]
    expected = weights.reshape(2, 2, 3, 4, 4).transpose(1, 2)  # [B, queries, T', H', W']

    results = explain(model, video, method="gradcam")
    for i, r in enumerate(results):
        assert r.regions.shape == (3, 2, 4, 4)
        torch.testing.assert_close(r.regions, expected[i], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(r.regions.sum((2, 3)), torch.ones(3, 2))
        assert r.selected_classes.dtype == torch.int64 and r.selected_classes.shape == (2, 3)
        assert torch.equal(r.selected_classes, head_selected[i])
        assert r.selected_class_names == [[NAMES[j] for j in row] for row in head_selected[i].tolist()]
        assert r.region_heatmaps().shape == (3, 8, 32, 32) and r.region_heatmaps().amax((1, 2, 3)).allclose(
            torch.ones(3))
    notext = tiny_model("art", text_bank=None)
    r = explain(notext, video[0], method="occlusion")
    assert r.regions.shape == (3, 2, 4, 4) and r.selected_classes is None


# ----------------------------------------------------------------------------------------- nothing changes
@pytest.mark.parametrize("head", ["tag", "art", "meanpool", "attentive"])
@pytest.mark.parametrize("method", ["gradcam", "hirescam", "occlusion"])
def test_the_model_does_not_change(head: str, method: str) -> None:
    model = tiny_model(head)
    model.train()
    model.backbone.freeze()  # a frozen backbone stays in eval mode while the model trains
    target = torch.tensor([0, 1, 2, 3])
    logits = None
    if head == "art":  # give the bank and the prototypes a training step's worth of history first
        video = clips(4, seed=7)
        sum(model.losses(model(video), target).values()).backward()
        model.zero_grad(set_to_none=True)
        logits = model(video)  # a pending training forward whose losses are asked for after explaining
    state = copy.deepcopy(model.state_dict())
    requires_grad = [p.requires_grad for p in model.parameters()]
    records = {name: getattr(model.head, name) for name in model.head.forward_records}  # what a forward overwrites
    if head == "art":  # the pending training forward's records, which explaining must leave in place
        assert {"_cache", "selected_classes", "selected_video_classes"} <= set(records)
        assert all(value is not None for value in records.values())
    else:
        assert records == {}
    modes = [m.training for m in model.modules()]
    assert not all(modes) and any(modes)
    with torch.no_grad():  # works under no_grad too, gradients or not
        explain(model, clips(2), method=method)
    explain(model, clips(2), [0, 1], method=method)
    after = model.state_dict()
    assert state.keys() == after.keys()
    for key, value in state.items():
        assert torch.equal(value, after[key]), key
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == requires_grad
    for name, value in records.items():
        assert getattr(model.head, name) is value, name
    if head == "art":
        assert model.head.selected_video_classes is records["selected_video_classes"]
        assert set(model.losses(logits, target)) >= {"ce_global", "mtc_spatial", "text_video"}


# ------------------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny_model("tag")
    video = clips(1)[0]  # [3, 8, 32, 32]
    with pytest.raises(ValueError, match=r"one clip \[3, T, H, W\].*looks like \[T, 3, H, W\].*permute\(1, 0, 2, 3\)"):
        explain(model, video.transpose(0, 1))
    with pytest.raises(ValueError, match=r"channels-last \[T, H, W, 3\]"):
        explain(model, video.permute(1, 2, 3, 0))
    with pytest.raises(ValueError, match=r"looks like \[B, T, 3, H, W\]"):
        explain(model, video[None].transpose(1, 2))
    with pytest.raises(ValueError, match="3-D tensor"):
        explain(model, video[0])
    with pytest.raises(ValueError, match="floating-point"):
        explain(model, (video * 10).to(torch.uint8))
    with pytest.raises(TypeError, match="video tensor"):
        explain(model, video.numpy())
    with pytest.raises(ValueError, match=r"unknown class 'class 9'; the model's 5 classes are \['class 0'.*Did you mean 'class 4'"):
        explain(model, video, "class 9")
    with pytest.raises(ValueError, match=r"class index 5 is out of range: the model has 5 classes"):
        explain(model, video, 5)
    with pytest.raises(ValueError, match="class index -1 is out of range"):
        explain(model, video, -1)
    for bad in (True, np.bool_(True), torch.tensor(True), 1.0, np.float64(1.0), torch.tensor(1.0), [0.0, 1.0]):
        with pytest.raises(TypeError, match="target must be a class index"):
            explain(model, clips(2) if isinstance(bad, list) else video, bad)
    with pytest.raises(TypeError, match="target must be"):
        explain(model, clips(2), torch.zeros(2, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="got 3 targets for a batch of 2 clips"):
        explain(model, clips(2), [0, 1, 2])
    with pytest.raises(ExplanationMethodError, match=r"unknown explanation method 'lime'; choose one of"):
        explain(model, video, method="lime")
    with pytest.raises(TypeError, match="expects a taghead.VideoClassifier"):
        explain(nn.Linear(3, 3), video)
    nameless = tiny_model("tag")
    nameless.label_names = None
    with pytest.raises(ValueError, match="the model has no label names"):
        explain(nameless, video, "class 1")
    headless = tiny_model("tag", num_classes=0)
    with pytest.raises(ExplanationMethodError, match="no classifier"):
        explain(headless, video)


class _DetachedHead(nn.Module):
    """A head whose logits do not depend differentiably on the features (e.g. a quantised or hashed head)."""

    num_classes = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().mean((2, 3, 4))[:, :3]


def test_integer_targets_of_any_kind_and_the_clip_cast_to_the_models_dtype() -> None:
    """np.argmax gives np.int64: any integer is a class index (one for all clips, or one per clip)."""
    model = tiny_model("tag")
    video = clips(2, seed=1)
    expected = [r.heatmap for r in explain(model, video, [3, 1])]
    for target in ([np.int64(3), np.int32(1)], np.array([3, 1]), torch.tensor([3, 1]), (3, torch.tensor(1))):
        results = explain(model, video, target)
        assert [r.target for r in results] == [3, 1]
        assert all(torch.equal(r.heatmap, e) for r, e in zip(results, expected))
    assert [r.target for r in explain(model, video, np.argmax(np.eye(5)[2]))] == [2, 2]
    assert explain(model, video[0], np.uint8(4)).target == 4
    double = explain(model, video.double(), [3, 1])  # cast to the model's float32, as documented
    assert all(torch.allclose(r.heatmap, e, atol=1e-5) for r, e in zip(double, expected))
    with pytest.raises(ValueError, match="class index 7 is out of range"):
        explain(model, video, np.int64(7))


def test_gradient_methods_refuse_heads_without_gradients() -> None:
    model = VideoClassifier(_ConvBackbone(3, 2, 1), _DetachedHead(), DataConfig(num_frames=8, crop_size=32))
    for method in ("gradcam", "hirescam"):
        with pytest.raises(ExplanationMethodError, match=rf"method '{method}' needs .* use method='occlusion'"):
            explain(model, clips(1)[0], method=method)
    assert explain(model, clips(1)[0], method="occlusion").token_relevance.shape == (4, 16, 16)


def test_concentration_ratio() -> None:
    mask = torch.zeros(4, 8, 8, dtype=torch.bool)
    mask[1, 2:4, 2:4] = True
    assert concentration_ratio(torch.full((4, 8, 8), 0.3), mask) == pytest.approx(1.0)
    heat = torch.where(mask, 1.0, 0.25)
    assert concentration_ratio(heat, mask) == pytest.approx(4.0)
    assert concentration_ratio(heat[None].expand(3, -1, -1, -1), mask[None].expand(3, -1, -1, -1)) == pytest.approx(4.0)
    assert concentration_ratio(mask.float(), mask) == math.inf
    assert math.isnan(concentration_ratio(torch.zeros(4, 8, 8), mask))
    with pytest.raises(TypeError, match="torch.Tensors, got ndarray and Tensor"):
        concentration_ratio(heat.numpy(), mask)
    with pytest.raises(ValueError, match=r"non-negative \(a relevance\), got 1 negative values \(minimum -0.5\)"):
        concentration_ratio(torch.where(mask, 1.0, 0.25).index_put_((torch.tensor(0),) * 3, torch.tensor(-0.5)),
                            mask)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"finite, got 1 non-finite \(nan or inf\) values of 256"):
            concentration_ratio(heat.clone().index_put_((torch.tensor(0),) * 3, torch.tensor(bad)), mask)
    with pytest.raises(ValueError, match="same shape"):
        concentration_ratio(heat, mask[0])
    with pytest.raises(ValueError, match="inside and outside"):
        concentration_ratio(heat, torch.zeros_like(mask))


# ------------------------------------------------------------------------------------------- pictures, CLI
def test_sheet_and_overlay_video(tmp_path) -> None:
    from taghead.data import read_clip

    model = tiny_model("art")
    ds = SyntheticFineGrainedDataset(1, num_frames=8, size=32, num_classes=5)
    video, label = ds[0]
    result = explain(model, video, label)
    frames = display_frames(video, model.data_config.mean, model.data_config.std)
    assert np.array_equal(frames, ds.render(0)[0].numpy())  # the display undoes the normalisation exactly
    boxes = [(e.frames, e.box) for e in ds.events(0)]
    sheet = save_sheet(result, frames, tmp_path / "sheet.png", title="clip", boxes=boxes, true_label="class 0")
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(sheet)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 900
    path = save_overlay_video(result, frames, tmp_path / "overlay.mp4", min_size=64)
    decoded, total = read_clip(path, 8)
    assert total == 8 and decoded.shape == (8, 64, 64, 3)
    with pytest.raises(ValueError, match=r"frames must be uint8 \[T, H, W, 3\]"):
        save_sheet(result, frames[:4], tmp_path / "bad.png")


def test_cli_explains_videos_and_skips_unreadable_ones(tmp_path, capsys) -> None:
    from taghead.data import write_video

    model = tiny_model("tag", num_classes=5)
    model.save_pretrained(tmp_path / "model")
    ds = SyntheticFineGrainedDataset(2, num_frames=8, size=32, num_classes=5)
    (tmp_path / "a").mkdir()
    videos = [write_video(tmp_path / "clip.mp4", ds.render(0)[0]), tmp_path / "broken.mp4",
              write_video(tmp_path / "a" / "clip.mp4", ds.render(1)[0])]
    videos[1].write_bytes(b"not a video")
    out = tmp_path / "explained"
    code = main(["explain", *map(str, videos), "--model", str(tmp_path / "model"), "--output", str(out),
                 "--method", "occlusion", "--target", "class 3", "--no-progress"])
    assert code == 1  # one video failed, the others were explained
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model: {tmp_path / 'model'} (a saved model)" and lines[1] == "method: occlusion (--method)"
    assert lines[2].startswith(f"{videos[0]}: class 3 (") and lines[3].startswith(f"{videos[1]}: error: cannot decode")
    # named by the path below the videos' common folder, with the method: two clip.mp4 stay apart
    for name in ("clip.occlusion.png", "clip.occlusion.mp4", "a/clip.occlusion.png", "a/clip.occlusion.mp4"):
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    code = main(["explain", str(videos[0]), "--model", str(tmp_path / "model"), "--output", str(out),
                 "--target", "class nine", "--no-progress"])
    assert code == 2 and "unknown class 'class nine'" in capsys.readouterr().err
    code = main(["explain", str(videos[0]), "--model", str(tmp_path / "model"), "--output", str(out),
                 "--target", "7", "--no-progress"])
    assert code == 2 and "class index 7 is out of range" in capsys.readouterr().err
    from taghead.commands.explain import explain_videos

    with pytest.raises(ExplanationMethodError, match=r"unknown explanation method 'lime'; choose one of \['gradcam'"):
        explain_videos(model, [], tmp_path / "none", method="lime")  # explain's own check, before any video
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------- the heatmaps find the flashes (trained)
#: The demo's TAG-Head model (tiny 3D CNN, 16 frames of 64x64), trained on fewer clips for fewer epochs with
#: smaller batches and a higher learning rate, so that it learns the task in about a minute on 2 CPU cores.
#: benchmarks/explain_concentration.py measures the demo's full recipe (RESULTS.md).
TEST_RECIPE_OVERRIDES = dict(train_samples=640, val_samples=32, epochs=5, batch_size=16, lr=2e-3, warmup_epochs=0.5)


@pytest.fixture(scope="module")
def demo_tag_models():
    """``(random initialisation, trained model, validation clips, their ground truth)`` of the demo's TAG-Head."""
    import dataclasses

    from taghead.commands.demo import DEMO_RECIPE, head_kwargs_for
    from taghead.engine.trainer import Trainer, seed_everything

    recipe = dataclasses.replace(DEMO_RECIPE, **TEST_RECIPE_OVERRIDES)
    sets = recipe.render(0, progress=False)
    names = sets["train"].class_names
    seed_everything(0)
    model = recipe.build_model("tag", names, **head_kwargs_for("tag", recipe, names))
    initial = copy.deepcopy(model)
    history = Trainer(model, sets["train"], sets["val"], recipe.train_config(0, False),
                      ctx=None, class_names=names, log=lambda _: None).fit()
    assert history[-1]["val_top1"] >= 0.6  # it learned the task (chance: 12.5%)
    truth = SyntheticFineGrainedDataset(recipe.val_samples, recipe.num_frames, recipe.size, recipe.classes, 0, "val")
    return initial, model, sets["val"], truth


def _ratio(model, val, truth, method: str, clips: int) -> float:
    video = torch.stack([val[i][0] for i in range(clips)])
    results = explain(model, video, [int(val.labels[i]) for i in range(clips)], method=method)
    masks = torch.stack([truth.event_mask(i) for i in range(clips)])
    return concentration_ratio(torch.stack([r.heatmap for r in results]), masks)


@pytest.mark.parametrize("method,clips", [("hirescam", 32), ("occlusion", 8)])
def test_trained_tag_heatmaps_concentrate_on_the_flashes(demo_tag_models, method: str, clips: int) -> None:
    initial, trained, val, truth = demo_tag_models
    before = _ratio(initial, val, truth, method, clips)
    after = _ratio(trained, val, truth, method, clips)
    assert after >= 3.0, f"{method}: the trained model's heatmap is only {after:.2f}x as high on the flashes"
    assert before < 2.5 and after > 2 * before, f"{method}: random {before:.2f}, trained {after:.2f}"


# ------------------------------------------------------- taghead explain: names, frame labels, whole-video overlay
def _class_folder_videos(root, fps: int = 10, frames: int = 40):
    """``root/val/jump/c.mp4`` and ``root/val/spin/c.mp4``: 40-frame synthetic clips at 10 frames per second."""
    from taghead.data import write_video

    ds = SyntheticFineGrainedDataset(2, num_frames=frames, size=32, num_classes=5)
    paths = []
    for i, cls in enumerate(("jump", "spin")):
        (root / "val" / cls).mkdir(parents=True)
        paths.append(write_video(root / "val" / cls / "c.mp4", ds.render(i)[0], fps=fps))
    return paths


def test_output_names_keep_the_relative_path_and_never_collide(tmp_path) -> None:
    from taghead.commands.explain import output_names

    root = tmp_path / "val"
    assert output_names([root / "jump" / "c.mp4", root / "spin" / "c.mp4"]) == ["jump/c", "spin/c"]
    assert output_names([root / "jump" / "c.mp4"]) == ["c"]
    assert output_names([root / "c.mp4", root / "c.avi", root / "c.mp4"]) == ["c", "c_avi", "c_2"]


def test_explain_refuses_to_replace_inputs_or_earlier_outputs(tmp_path, capsys) -> None:
    """Issue 23: --output the videos' own folder replaced each input by its overlay; now nothing is replaced."""
    model = tiny_model("tag")
    model.save_pretrained(tmp_path / "model")
    video = _class_folder_videos(tmp_path)[0]
    folder = video.parent
    original = video.read_bytes()
    mine = folder / "c.hirescam.png"
    mine.write_bytes(b"the user's own file")
    argv = ["explain", str(video), "--model", str(tmp_path / "model"), "--output", str(folder), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("taghead explain: error: 1 output file(s) exist already") and "--overwrite" in err
    assert mine.read_bytes() == b"the user's own file" and video.read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == ["c.hirescam.png", "c.mp4"]  # nothing written
    assert main([*argv, "--overwrite"]) == 0  # asked for: the earlier output is replaced, the input never
    assert mine.read_bytes()[:4] == b"\x89PNG" and video.read_bytes() == original
    assert (folder / "c.hirescam.mp4").is_file()
    # an input whose name is an output name: refused even with --overwrite
    twin = folder / "c.hirescam.mp4"
    twin_bytes = twin.read_bytes()
    assert main(["explain", str(twin), str(video), "--model", str(tmp_path / "model"), "--output", str(folder),
                 "--overwrite", "--no-progress"]) == 2
    assert "would replace an input video" in capsys.readouterr().err and twin.read_bytes() == twin_bytes


def test_explain_labels_frames_by_source_frame_and_time_and_overlays_every_frame(tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    import matplotlib.text

    import taghead.engine.plots as plots
    from taghead.data import count_frames, frame_rate, uniform_frame_indices

    texts: list[str] = []
    save = plots._save

    def keep_texts(fig, path):
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep_texts)
    model = tiny_model("tag")
    model.save_pretrained(tmp_path / "model")
    videos = _class_folder_videos(tmp_path)
    out = tmp_path / "explained"
    assert main(["explain", *map(str, videos), "--model", str(tmp_path / "model"), "--output", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "method: HiResCAM (the default for TAG-Head; --method to choose)" in printed  # auto: by head
    sheet_title = next(t for t in texts if "explained class" in t)
    assert sheet_title.startswith("jump/c.mp4\n") and str(tmp_path) not in sheet_title  # readable, no full path
    indices = uniform_frame_indices(40, 8)  # the clip's frames in the 40-frame video at 10 fps
    assert indices[-1] == 39 and "frame 39\n3.90 s" in texts and f"frame {indices[3]}\n{indices[3] / 10:.2f} s" in texts
    overlay = out / "spin" / "c.hirescam.mp4"
    assert count_frames(overlay) == 40 and frame_rate(overlay) == pytest.approx(10)  # every frame, the video's rate


def test_heat_at_interpolates_between_the_clip_frames() -> None:
    from taghead.explanation.render import heat_at

    heat = np.stack([np.full((2, 2), v, np.float32) for v in (0.0, 1.0, 0.5)])  # clip frames at source 0, 10, 20
    idx = [0, 10, 20]
    assert heat_at(heat, idx, 0)[0, 0] == 0.0 and heat_at(heat, idx, 10)[0, 0] == 1.0
    assert heat_at(heat, idx, 4)[0, 0] == pytest.approx(0.4) and heat_at(heat, idx, 15)[0, 0] == pytest.approx(0.75)
    assert heat_at(heat, idx, 25)[0, 0] == 0.5  # after the last clip frame: its heatmap
    assert heat_at(heat, [0, 0, 1], 0)[0, 0] == 0.0 and heat_at(heat, [0, 0, 1], 1)[0, 0] == 0.5  # repeated frames


@pytest.mark.parametrize("head,method", [("tag", "hirescam"), ("art", "occlusion"), ("meanpool", "gradcam")])
def test_auto_method_follows_the_head(head: str, method: str) -> None:
    from taghead.explanation.methods import default_method

    model = tiny_model(head)
    assert default_method(model) == method
    assert explain(model, clips(1)[0], method="auto").method == method
