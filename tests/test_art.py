"""ARTHead: shapes, the RSSA per-frame structure, every loss term, aggregation, the text bank's EMA and
gradient cut, the "w/o text" ablation, configs and checkpoints, timm conventions, errors, training."""

from __future__ import annotations

import copy
import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import taghead
from taghead import ARTHead, DataConfig, HashingTextEncoder, VideoClassifier, build_text_bank, create_head
from taghead.heads.art import top_k_classes, tracklet_saliency
from taghead.heads.art_losses import (
    class_semantics,
    prototype_consistency,
    spatial_contrast,
    temporal_contrast,
    tracklet_contrast,
    video_consistency,
    winner_take_all_scores,
)
from taghead.heads.io import apply_num_classes
from taghead.weights import load_safetensors, save_safetensors

C, GRID, K = 8, (3, 2, 2), 4
NAMES = ["salto backward tucked", "salto backward tucked with 1 twist", "split jump", "switch leap"]
SMALL = dict(num_classes=K, embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=32, num_queries=3,
             dropout=0.0)
ALL_LOSSES = {"ce_global", "mtc_spatial", "mtc_temporal", "mtc_tracklet", "text_video", "text_prototype"}


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: intra-op threads only add overhead, a lot of it on busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bank(dim: int = 24) -> torch.Tensor:
    return build_text_bank(NAMES, encoder=HashingTextEncoder(dim), progress=False)


def small_head(text: bool = True, **kwargs) -> ARTHead:
    torch.manual_seed(0)
    return ARTHead(C, *GRID, **{**SMALL, "text_bank": bank() if text else None, **kwargs})


def features(generator: torch.Generator, b: int = 3, grid=GRID) -> torch.Tensor:
    return torch.randn(b, C, *grid, generator=generator)


def targets(b: int = 3) -> torch.Tensor:
    return torch.arange(b) % K


# ------------------------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("text", [True, False])
def test_shapes_dtypes_and_timm_methods(text, generator):
    head = small_head(text)
    x = features(generator)
    for mode in (True, False):
        head.train(mode)
        logits = head(x)
        assert logits.shape == (3, K) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    feats = head.forward_features(x)
    assert feats.shape == (3, 16 * 4) and head.num_features == 16 * (3 + 1)
    pre = head.forward_head(feats, pre_logits=True)
    assert pre.shape == (3, head.head_hidden_size) and head.head_hidden_size == head.num_features
    assert torch.equal(head.forward_head(feats), head.fc(pre))
    assert torch.equal(head(x), head.forward_head(head.forward_features(x)))
    assert head.get_classifier() is head.fc and head.head_name == "art"


def test_bfloat16_autocast_on_cpu(generator):
    head = small_head().train()
    x = features(generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        losses = head.losses(logits, targets())
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert set(losses) == ALL_LOSSES
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert head.query_prompts.grad is not None and torch.isfinite(head.query_prompts.grad).all()


def _responses(head: ARTHead, x: torch.Tensor) -> torch.Tensor:
    head(x)
    return head._cache["responses"].detach().clone()  # [B, T, N, D]


def test_frames_are_processed_independently_in_the_rssa(generator):
    """Frames are folded into the batch: with per-frame selection, changing frame 1 changes only frame 1's
    region responses."""
    head = small_head(selection="frame").train()
    x = features(generator)
    before = _responses(head, x)
    x2 = x.clone()
    x2[:, :, 1] += torch.randn(x.shape[0], C, *GRID[1:], generator=generator)
    after = _responses(head, x2)
    assert before.shape == (3, GRID[0], 3, 16)
    assert torch.allclose(before[:, [0, 2]], after[:, [0, 2]], atol=1e-6)
    assert (before[:, 1] - after[:, 1]).abs().max() > 1e-3


def test_under_video_selection_frames_are_linked_only_through_the_selection(generator):
    """selection="video": every frame gets the video's top-k, ranked from the mean over frames. A change of frame 1
    that keeps its mean token (so the selection) changes only frame 1; one that moves the selection changes all."""
    head = small_head(selection="video", top_k=1).train()
    x = features(generator)
    before = _responses(head, x)
    selected = head.selected_video_classes.clone()
    x2 = x.clone()
    noise = torch.randn(x.shape[0], C, *GRID[1:], generator=generator)
    x2[:, :, 1] += noise - noise.mean(dim=(2, 3), keepdim=True)  # zero mean over the frame's tokens
    after = _responses(head, x2)
    assert torch.equal(head.selected_video_classes, selected)
    assert torch.allclose(before[:, [0, 2]], after[:, [0, 2]], atol=1e-6)
    assert (before[:, 1] - after[:, 1]).abs().max() > 1e-3
    for _ in range(20):  # shift frame 1's mean until some clip's selection moves
        x3 = x.clone()
        x3[:, :, 1] += 5.0 * torch.randn(x.shape[0], C, 1, 1, generator=generator)
        after = _responses(head, x3)
        moved = (head.selected_video_classes != selected).any(-1)
        if moved.any():
            break
    assert moved.any()
    assert (before[moved][:, [0, 2]] - after[moved][:, [0, 2]]).abs().max() > 1e-3  # the other frames change too
    assert torch.allclose(before[~moved][:, [0, 2]], after[~moved][:, [0, 2]], atol=1e-6)


def test_dropout_before_the_classifier_is_the_papers_half(generator):
    head = small_head()
    assert head.head_drop.p == 0.5 and head.get_config()["drop_rate"] == 0.5
    feats = head.eval().forward_features(features(generator, b=8))
    kept = head.eval().forward_head(feats, pre_logits=True)
    torch.manual_seed(0)
    dropped = head.train().forward_head(feats, pre_logits=True)
    zero = dropped == 0
    assert 0.4 < float(zero.float().mean()) < 0.6  # about half the features dropped in training...
    assert torch.allclose(dropped[~zero], 2 * kept[~zero], atol=1e-6)  # ...the rest scaled by 1 / (1 - p)
    assert torch.equal(head.eval().forward_head(feats, pre_logits=True), kept)  # eval: no dropout
    assert small_head(drop_rate=0.0).head_drop.p == 0.0


# ------------------------------------------------------------------------------------------ MTC terms


def test_spatial_term_high_for_identical_responses_and_drops_under_optimisation(generator):
    base = torch.randn(2, 4, 1, 8, generator=generator)
    # identical up to a tiny perturbation: exactly equal vectors are a symmetric stationary point of any cosine
    responses = nn.Parameter(base.expand(2, 4, 3, 8) + 1e-3 * torch.randn(2, 4, 3, 8, generator=generator))
    start = float(spatial_contrast(responses.detach()))
    assert start > 0.99
    opt = torch.optim.Adam([responses], lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        spatial_contrast(responses).backward()
        opt.step()
    assert float(spatial_contrast(responses.detach())) < 0.1 * start
    eye = torch.eye(8)[:3].expand(2, 4, 3, 8)  # mutually orthogonal queries
    assert float(spatial_contrast(eye)) == 0.0


def test_spatial_term_by_hand(generator):
    r = torch.randn(2, 3, 4, 5, generator=generator)
    total, count = 0.0, 0
    for b in range(2):
        for t in range(3):
            for i in range(4):
                for j in range(4):
                    if i != j:
                        total += max(0.0, float(F.cosine_similarity(r[b, t, i], r[b, t, j], dim=0)))
                        count += 1
    assert math.isclose(float(spatial_contrast(r)), total / count, rel_tol=1e-5)


def _pair_with_correlation(c: float, d: int = 6) -> torch.Tensor:
    """Responses [1, 2, 1, d] of one query in two adjacent frames with cosine exactly ``c``."""
    e1, e2 = torch.eye(d)[0], torch.eye(d)[1]
    return torch.stack([e1, c * e1 + math.sqrt(1 - c * c) * e2]).reshape(1, 2, 1, d)


@pytest.mark.parametrize("gamma", [0.6, 0.3])
def test_temporal_term_is_minimal_at_the_target_correlation(gamma):
    below, at, above = (float(temporal_contrast(_pair_with_correlation(c), gamma))
                        for c in (gamma - 0.3, gamma, gamma + 0.3))
    assert at < 1e-10 and below > 1e-3 and above > 1e-3
    assert math.isclose(below, 0.09, rel_tol=1e-4) and math.isclose(above, 0.09, rel_tol=1e-4)
    scan = torch.linspace(-0.95, 0.95, 39)
    values = torch.tensor([float(temporal_contrast(_pair_with_correlation(float(c)), gamma)) for c in scan])
    assert math.isclose(float(scan[values.argmin()]), gamma, abs_tol=0.026)


def test_temporal_term_pulls_correlation_towards_gamma():
    pair = nn.Parameter(_pair_with_correlation(0.95) + 0.01)
    opt = torch.optim.SGD([pair], lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        temporal_contrast(pair, 0.6).backward()
        opt.step()
    assert math.isclose(float(F.cosine_similarity(pair[0, 0, 0], pair[0, 1, 0], dim=0).detach()), 0.6, abs_tol=0.02)


def test_tracklet_term_identical_vs_orthogonal(generator):
    one = torch.randn(2, 5, 1, 8, generator=generator)
    identical = one.expand(2, 5, 3, 8)
    orthogonal = torch.eye(8)[:3].expand(2, 5, 3, 8)
    assert math.isclose(float(tracklet_contrast(identical)), 1.0, rel_tol=1e-5)
    assert float(tracklet_contrast(orthogonal)) == 0.0
    # tracklets that differ frame by frame but have the same time average are "the same tracklet"
    e = torch.eye(8)
    swapped = torch.stack([torch.stack([e[0], e[1]]), torch.stack([e[1], e[0]])]).unsqueeze(0)  # [1, T=2, N=2, 8]
    assert float(spatial_contrast(swapped)) == 0.0 and math.isclose(float(tracklet_contrast(swapped)), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("fn", [spatial_contrast, tracklet_contrast])
def test_pair_terms_need_two_queries(fn):
    with pytest.raises(ValueError, match="at least 2"):
        fn(torch.randn(1, 3, 1, 4))


def test_temporal_term_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_contrast(torch.randn(1, 1, 2, 4))


# --------------------------------------------------------------------------------------- text terms


def test_video_consistency_is_winner_take_all_by_hand(generator):
    video = torch.randn(3, 6, generator=generator)
    agent = nn.Parameter(torch.randn(4, 5, 6, generator=generator))
    y = torch.tensor([0, 3, 1])
    loss = video_consistency(video, agent, y, temperature=0.5)
    scores = torch.tensor([[max(float(F.cosine_similarity(video[b], agent[k, m].detach(), dim=0)) for m in range(5))
                            for k in range(4)] for b in range(3)]) / 0.5
    assert math.isclose(float(loss.detach()), float(F.cross_entropy(scores, y)), rel_tol=1e-5)
    loss.backward()
    winners = torch.einsum("bd,kmd->bkm", F.normalize(video, dim=-1), F.normalize(agent.detach(), dim=-1)).argmax(-1)
    used = torch.zeros(4, 5, dtype=torch.bool)
    used[torch.arange(4).expand(3, 4), winners] = True
    grad_norm = agent.grad.norm(dim=-1)
    assert (grad_norm[~used] == 0).all() and (grad_norm[used] > 0).all()


def test_prototype_consistency_by_hand(generator):
    text = torch.randn(4, 3, 6, generator=generator)
    sem = class_semantics(text)
    for k in range(4):
        manual = F.normalize(torch.stack([F.normalize(text[k, m], dim=0) for m in range(3)]).mean(0), dim=0)
        assert torch.allclose(sem[k], manual, atol=1e-6)
    matched = prototype_consistency(sem.clone(), text, temperature=0.1)
    permuted = prototype_consistency(sem[[1, 0, 3, 2]].clone(), text, temperature=0.1)
    assert float(matched) < float(permuted)
    logits = (sem @ sem.T) / 0.1
    assert math.isclose(float(matched), float(F.cross_entropy(logits, torch.arange(4))), rel_tol=1e-5)
    valid = torch.tensor([True, False, True, False])
    partial = prototype_consistency(sem.clone(), text, valid, temperature=0.1)
    assert math.isclose(float(partial), float(F.cross_entropy(logits[valid], torch.tensor([0, 2]))), rel_tol=1e-5)


def test_prototype_consistency_needs_a_bool_mask_of_one_flag_per_class(generator):
    text = torch.randn(4, 3, 6, generator=generator)
    protos = class_semantics(text)
    for valid in (torch.tensor([0, 2]), torch.tensor([1, 0, 1, 0]), torch.ones(4)):  # indices, 0/1 ints, floats
        with pytest.raises(ValueError, match=rf"valid must be a bool tensor \[K=4\].*got {valid.dtype}"):
            prototype_consistency(protos, text, valid)
    with pytest.raises(ValueError, match=r"got torch.bool \(3,\)"):
        prototype_consistency(protos, text, torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="got list"):
        prototype_consistency(protos, text, [True, False, True, False])
    with pytest.raises(ValueError, match="no class has a prototype"):
        prototype_consistency(protos, text, torch.zeros(4, dtype=torch.bool))


@pytest.mark.parametrize("temperature,error", [(0.0, ValueError), (-0.1, ValueError), (math.inf, ValueError),
                                               (math.nan, ValueError), (True, TypeError), ("0.1", TypeError)])
def test_text_terms_need_a_positive_finite_temperature(temperature, error, generator):
    video, text, y = torch.randn(2, 6, generator=generator), torch.randn(4, 3, 6, generator=generator), targets(2)
    match = r"temperature must be a finite real number in \(0.0, inf\)"
    with pytest.raises(error, match="video_consistency: " + match):
        video_consistency(video, text, y, temperature)
    with pytest.raises(error, match="prototype_consistency: " + match):
        prototype_consistency(class_semantics(text), text, temperature=temperature)
    with pytest.raises(error, match="winner_take_all_scores: " + match):
        winner_take_all_scores(video, text, temperature)


@pytest.mark.parametrize("gamma,error", [(1.5, ValueError), (-1.01, ValueError), (math.nan, ValueError),
                                         (None, TypeError)])
def test_temporal_term_needs_gamma_in_the_cosine_range(gamma, error, generator):
    with pytest.raises(error, match=r"temporal_contrast: gamma must be a finite real number in \[-1.0, 1.0\]"):
        temporal_contrast(torch.randn(1, 2, 2, 4, generator=generator), gamma)
    assert float(temporal_contrast(_pair_with_correlation(1.0), 1)) < 1e-10  # the bounds themselves are fine


def test_winner_take_all_scores_shape():
    assert winner_take_all_scores(torch.randn(2, 6), torch.randn(5, 3, 6), 0.07).shape == (2, 5)


# ------------------------------------------------------------------------------------------- aggregation


def test_tracklet_saliency_by_hand_sums_to_one(generator):
    trk = torch.randn(2, 3, 5, 4, generator=generator)
    sem = torch.randn(2, 2, 4, generator=generator)
    w = tracklet_saliency(trk, sem, temperature=0.2)
    assert w.shape == (2, 3, 5) and torch.allclose(w.sum(-1), torch.ones(2, 3), atol=1e-6)
    for b in range(2):
        for n in range(3):
            per_sem = [torch.tensor([float(F.cosine_similarity(trk[b, n, t], sem[b, j], dim=0)) / 0.2
                                     for t in range(5)]).softmax(0) for j in range(2)]
            assert torch.allclose(w[b, n], (per_sem[0] + per_sem[1]) / 2, atol=1e-6)


@pytest.mark.parametrize("text,aggregation", [(True, "saliency"), (False, "saliency"), (True, "mean")])
def test_aggregation_weights_and_pooled_tracklets(text, aggregation, generator):
    head = small_head(text, aggregation=aggregation).train()
    feats = head.forward_features(features(generator))
    w, r = head._cache["weights"], head._cache["responses"]  # [B, N, T], [B, T, N, D]
    assert w.shape == (3, 3, GRID[0]) and torch.allclose(w.sum(-1), torch.ones(3, 3), atol=1e-6)
    if aggregation == "mean":
        assert torch.allclose(w, torch.full_like(w, 1 / GRID[0]))
    else:
        assert w.std() > 0  # not uniform
    pooled = torch.einsum("bnt,btnd->bnd", w, r)
    assert torch.allclose(feats[:, 16:], pooled.flatten(1), atol=1e-5)


# ----------------------------------------------------------------------------------- class selection


def test_top_k_classes_is_the_winner_take_all_ranking_by_hand(generator):
    bank_ = torch.randn(5, 3, 6, generator=generator)
    text = torch.randn(4, 6, generator=generator)
    got = top_k_classes(text, bank_, 2)
    for i in range(4):
        scores = [max(float(F.cosine_similarity(text[i], bank_[c, j], dim=0)) for j in range(3)) for c in range(5)]
        assert got[i].tolist() == sorted(range(5), key=lambda c: -scores[c])[:2]
    assert got.dtype == torch.int64 and top_k_classes(text, bank_, 9).shape == (4, 5)  # k capped at K


@pytest.mark.parametrize("selection", ["video", "frame"])
@pytest.mark.parametrize("mode", [True, False])
def test_selected_classes_are_chosen_in_the_text_space_and_their_semantics_appended(mode, selection, generator):
    head = small_head(top_k=2, selection=selection).train(mode)
    seen = {}
    head.enhancer.register_forward_pre_hook(lambda _, args: seen.update(seq=args[0].detach()))
    x = features(generator)
    head(x)
    b, (t, h, w) = x.shape[0], GRID
    assert head.selected_classes.shape == (b, t, 2) and head.selected_classes.dtype == torch.int64
    assert head.selected_video_classes.shape == (b, 2)
    with torch.no_grad():  # the oracle: frame means of the projected tokens, video_to_text, cosines by hand
        g = head.proj(x.flatten(2).transpose(1, 2)).reshape(b, t, h * w, -1).mean(2)  # [B, T, D]
        bank_ = F.normalize(head.text_bank, dim=-1)
        frame_scores = torch.einsum("btd,kmd->btkm", F.normalize(head.video_to_text(g), dim=-1), bank_).amax(-1)
        video_scores = torch.einsum("bd,kmd->bkm", F.normalize(head.video_to_text(g.mean(1)), dim=-1), bank_).amax(-1)
        semantics = head.text_proj(class_semantics(head.text_bank))
    video_top = video_scores.topk(2, dim=-1).indices
    assert torch.equal(head.selected_video_classes, video_top)
    if selection == "frame":
        assert torch.equal(head.selected_classes, frame_scores.topk(2, dim=-1).indices)
    else:
        assert torch.equal(head.selected_classes, video_top.unsqueeze(1).expand(b, t, 2))
    appended = seen["seq"][:, h * w:]  # what the enhancement stage received after the frame's tokens
    assert torch.allclose(appended, semantics[head.selected_classes.reshape(b * t, 2)], atol=1e-6)
    without = small_head(text=False).train(mode)
    without(x)
    assert without.selected_classes is None and without.selected_video_classes is None


@pytest.mark.parametrize("selection", ["video", "frame"])
def test_the_selection_learns_the_true_class(selection):
    """Separable classes: after training, the true class is among the top-2 of 6 (chance 0.33) in >= 90 % of the
    held-out frames. The selection of the old design (a cosine in a space no loss aligns) stayed at chance."""
    names = ["salto backward tucked", "salto backward piked", "split jump", "switch leap", "ring leap", "wolf jump"]
    classes, channels, grid = len(names), 16, (3, 2, 2)
    g = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(classes, channels, generator=g), dim=-1)

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        return torch.randn(n, channels, *grid, generator=g) + 2.0 * directions[y].view(n, channels, 1, 1, 1), y

    (x, y), (x_val, y_val) = data(60), data(60)
    torch.manual_seed(0)
    head = ARTHead(channels, *grid, **{**SMALL, "num_classes": classes, "num_queries": 2, "top_k": 2,
                                       "selection": selection,
                                       "text_bank": build_text_bank(names, encoder=HashingTextEncoder(16),
                                                                    progress=False)})

    def hit_rate() -> tuple[float, float]:
        with torch.no_grad():
            head.eval()(x_val)
        frames = (head.selected_classes == y_val.view(-1, 1, 1)).any(-1).float().mean()
        videos = (head.selected_video_classes == y_val.view(-1, 1)).any(-1).float().mean()
        return float(frames), float(videos)

    before = hit_rate()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(80):
        logits = head.train()(x)
        loss = F.cross_entropy(logits, y) + sum(head.losses(logits, y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        head.update_ema()
    frames, videos = hit_rate()
    assert before[0] < 0.6 and frames >= 0.9 and videos >= 0.9, (before, frames, videos)


# ------------------------------------------------------------------------------ the bank: EMA and gradients


def test_bank_follows_its_agent_by_ema_once_per_update_call(generator):
    head = small_head(bank_momentum=0.9).train()
    s0 = head.text_bank.clone()
    with torch.no_grad():
        head.text_agent.add_(torch.randn(head.text_agent.shape, generator=generator))
    a0 = head.text_agent.detach().clone()
    x = features(generator)
    for mode in (True, False, True):
        head.train(mode)(x)
    assert torch.equal(head.text_bank, s0)  # forwards never move the bank
    head.update_ema()
    s1 = 0.9 * s0 + 0.1 * a0
    assert torch.allclose(head.text_bank, s1, atol=1e-6)
    model = VideoClassifier(nn.Identity(), head, DataConfig(num_frames=3, crop_size=2))
    model.update_ema()  # the model passes it on to its head
    assert torch.allclose(head.text_bank, 0.9 * s1 + 0.1 * a0, atol=1e-6)
    frozen = small_head(bank_momentum=1.0)
    with torch.no_grad():
        frozen.text_agent.add_(1.0)
    bank0 = frozen.text_bank.clone()
    frozen.update_ema()
    assert torch.equal(frozen.text_bank, bank0)  # momentum 1 freezes the bank
    small_head(text=False).update_ema()  # without a bank: nothing to do, no error


def test_no_gradient_reaches_the_bank_but_the_agent_learns(generator):
    head = small_head().train()
    head.text_bank.requires_grad_(True)  # would collect a gradient if any path reached it
    x = features(generator)
    logits = head(x)
    losses = head.losses(logits, targets())
    (F.cross_entropy(logits, targets()) + sum(losses.values())).backward()
    assert head.text_bank.grad is None
    assert head.text_agent.grad is not None and head.text_agent.grad.abs().sum() > 0
    assert head.text_proj.weight.grad.abs().sum() > 0  # the bank is used (through a cut) by the forward
    other = small_head().eval()
    ref = other(x)
    with torch.no_grad():
        other.text_bank.copy_(torch.randn(other.text_bank.shape, generator=generator))
    assert not torch.allclose(other(x), ref)


def test_two_training_forwards_then_backward(generator):
    """The in-place EMA of the bank between two forwards does not invalidate the graph of the first."""
    head = small_head().train()
    with torch.no_grad():  # an agent away from the bank, so that the EMA moves the bank
        head.text_agent.add_(torch.randn(head.text_agent.shape, generator=generator))
    x = features(generator)
    first = sum(head.losses(head(x), targets()).values())
    bank_before = head.text_bank.clone()
    head.update_ema()
    assert (head.text_bank - bank_before).abs().max() > 1e-3
    second = sum(head.losses(head(x), targets()).values())
    (first + second).backward()
    assert head.text_agent.grad.abs().sum() > 0 and head.proj.weight.grad.abs().sum() > 0


def test_prototypes_are_an_ema_of_class_embeddings_updated_once_per_forward(generator):
    head = small_head(prototype_momentum=0.8).train()
    x, y = features(generator, b=4), torch.tensor([0, 0, 2, 2])
    head.losses(head(x), y)
    v1 = F.normalize(head._cache["video_text"].detach(), dim=-1)
    p0 = F.normalize(v1[:2].mean(0), dim=0)
    assert torch.allclose(head.prototypes[0], p0, atol=1e-6)
    assert head.prototype_seen.tolist() == [True, False, True, False]
    again = head.prototypes.clone()
    head.losses(torch.zeros(4, K), y)  # a second call on the same forward does not update again
    assert torch.equal(head.prototypes, again)
    head.losses(head(x), y)
    v2 = F.normalize(head._cache["video_text"].detach(), dim=-1)
    assert torch.allclose(head.prototypes[0], F.normalize(0.8 * p0 + 0.2 * v2[:2].mean(0), dim=0), atol=1e-6)


# ---------------------------------------------------------------------------------------- loss API


@torch.no_grad()  # values only; training-mode forwards keep their intermediates without a graph too
def test_losses_are_named_weighted_and_removable(generator):
    x, y = features(generator), targets()
    base = small_head().train()
    values = base.losses(base(x), y)
    assert set(values) == ALL_LOSSES
    assert all(v.dim() == 0 and v > 0 for v in values.values())
    doubled = small_head(**{f"{n}_loss_weight": 2 * w for n, w in (
        ("global", 1.0), ("spatial", 0.1), ("temporal", 0.1), ("tracklet", 0.1), ("text_video", 0.1),
        ("text_prototype", 0.1))}).train()
    values2 = doubled.losses(doubled(x), y)
    for name in ALL_LOSSES:
        assert math.isclose(float(values2[name]), 2 * float(values[name]), rel_tol=1e-4), name
    for name, key in (("global", "ce_global"), ("spatial", "mtc_spatial"), ("temporal", "mtc_temporal"),
                      ("tracklet", "mtc_tracklet"), ("text_video", "text_video"), ("text_prototype", "text_prototype")):
        head = small_head(**{f"{name}_loss_weight": 0.0}).train()
        assert set(head.losses(head(x), y)) == ALL_LOSSES - {key}
    h = small_head().train()
    logits = h(x)
    assert math.isclose(float(h.losses(logits, y)["ce_global"]),
                        float(F.cross_entropy(h._cache["global_logits"], y)), rel_tol=1e-6)
    assert math.isclose(float(h.losses(logits, y)["mtc_temporal"]),
                        0.1 * float(temporal_contrast(h._cache["responses"], 0.6)), rel_tol=1e-6)


def test_without_text_bank_the_head_has_no_text_parts(generator):
    head = small_head(text=False).train()
    losses = head.losses(head(features(generator)), targets())
    assert set(losses) == {"ce_global", "mtc_spatial", "mtc_temporal", "mtc_tracklet"}
    assert not head.has_text and head.get_config()["text_bank_shape"] is None
    assert not any(k.startswith(("text_", "prototype", "video_to_text", "query_text")) for k in head.state_dict())


def test_losses_need_a_training_forward(generator):
    head = small_head()
    with pytest.raises(RuntimeError, match="training-mode forward"):
        head.losses(torch.zeros(3, K), targets())
    head.eval()(features(generator))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        head.losses(torch.zeros(3, K), targets())
    head.train()(features(generator))
    with pytest.raises(ValueError, match="int64"):
        head.losses(torch.zeros(3, K), targets().float())
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        head.losses(torch.zeros(3, K), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match=r"\[B=3, 4\] \(num_classes\).*got shape \(2, 4\)"):
        head.losses(torch.zeros(2, K), targets(2))
    with pytest.raises(ValueError, match=r"\[B=3, 4\] \(num_classes\).*got shape \(3, 5\)"):
        head.losses(torch.zeros(3, K + 1), targets())
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        head.losses(torch.zeros(3), targets())
    with pytest.raises(TypeError, match="logits must be a torch.Tensor.*got list"):
        head.losses([[0.0] * K] * 3, targets())
    headless = small_head(num_classes=0).train()
    headless(features(generator))
    with pytest.raises(ValueError, match=r"\[B=3, 64\] \(head_hidden_size"):
        headless.losses(torch.zeros(3, K), targets())


def test_text_video_term_is_video_consistency_and_the_cache_keeps_no_scores(generator):
    head = small_head().train()
    y = targets()
    losses = head.losses(head(features(generator)), y)
    assert set(head._cache) == {"batch", "responses", "weights", "prototypes_updated", "global_logits", "video_text"}
    expected = 0.1 * video_consistency(head._cache["video_text"], head.text_agent, y, head.text_temperature)
    assert torch.equal(losses["text_video"], expected)


def test_deepcopy_after_a_training_forward(generator):
    head = small_head().train()
    head(features(generator))
    clone = copy.deepcopy(head)
    assert clone._cache is None and head._cache is not None
    x = features(generator)
    assert torch.equal(clone.eval()(x), head.eval()(x))


# ------------------------------------------------------------------------------ config, checkpoints


def test_config_rebuilds_and_safetensors_round_trip(generator, tmp_path):
    head = small_head().train()
    for _ in range(2):  # move the bank, the agent and the prototypes away from their initial values
        logits = head(features(generator))
        sum(head.losses(logits, targets()).values()).backward()
        with torch.no_grad():
            head.text_agent.sub_(head.text_agent.grad)
        head.update_ema()
    config = json.loads(json.dumps(head.get_config()))
    assert config["text_bank_shape"] == [K, len(taghead.text.DEFAULT_TEMPLATES), 24]
    assert not any(isinstance(v, torch.Tensor) for v in config.values())
    save_safetensors(head.state_dict(), tmp_path / "art.safetensors")
    rebuilt = ARTHead(**config)
    assert rebuilt.text_bank.shape == head.text_bank.shape and not torch.equal(rebuilt.text_bank, head.text_bank)
    rebuilt.load_state_dict(load_safetensors(tmp_path / "art.safetensors"))
    assert torch.equal(rebuilt.text_bank, head.text_bank) and torch.equal(rebuilt.prototypes, head.prototypes)
    x = features(generator)
    assert torch.equal(rebuilt.eval()(x), head.eval()(x))
    assert rebuilt.get_config() == head.get_config()


def test_hub_head_round_trip(generator, tmp_path):
    head = small_head().eval()
    head.save_pretrained(tmp_path / "head")
    loaded = taghead.from_pretrained(tmp_path / "head")
    assert isinstance(loaded, ARTHead)
    x = features(generator)
    assert torch.equal(loaded(x), head(x))


def test_loading_with_other_num_classes_names_every_class_dependent_weight(generator, tmp_path):
    """The hub warning names the global classifier and the prototypes too; the rest (text bank included) loads."""
    head = small_head()
    head.train()(features(generator))
    head.losses(head(features(generator)), targets())  # non-zero prototypes, so that their reset shows
    head.save_pretrained(tmp_path / "head")
    reset = ["fc.weight", "fc.bias", "global_fc.weight", "global_fc.bias", "prototypes", "prototype_seen"]
    with pytest.warns(UserWarning) as record:
        loaded = taghead.from_pretrained(tmp_path / "head", num_classes=6)
    messages = [str(w.message) for w in record]
    expected = (r"except the classifier \(fc\.weight, fc\.bias\) and the other class-dependent weights "
                r"\(global_fc\.weight, global_fc\.bias, prototypes, prototype_seen\), which were re-initialised "
                r"for num_classes=6")
    assert any(re.search(expected, m) for m in messages), messages
    assert any("set_text_bank" in m for m in messages), messages  # the kept bank still has 4 classes
    assert loaded.class_dependent_keys() == reset
    assert loaded.global_fc.out_features == 6 and not loaded.prototype_seen.any() and not loaded.prototypes.any()
    reference = head.state_dict()
    for key, value in loaded.state_dict().items():
        if key not in reset:
            assert torch.equal(value, reference[key]), key


def test_class_dependent_keys_follow_the_head_and_the_full_model_prefix():
    assert small_head(text=False).class_dependent_keys() == ["fc.weight", "fc.bias", "global_fc.weight", "global_fc.bias"]
    assert small_head(global_loss_weight=0).class_dependent_keys() == ["fc.weight", "fc.bias", "prototypes",
                                                                       "prototype_seen"]
    assert small_head(num_classes=0).class_dependent_keys() == []
    model = VideoClassifier(nn.Conv3d(3, C, 1), small_head(text=False), DataConfig(num_frames=3, crop_size=2))
    with pytest.warns(UserWarning, match=r"classifier \(head\.fc\.weight, head\.fc\.bias\) and the other "
                      r"class-dependent weights \(head\.global_fc\.weight, head\.global_fc\.bias\), which were"):
        apply_num_classes(model, 2, what="test")
    assert model.head.fc.out_features == model.head.global_fc.out_features == 2


def test_reset_classifier_and_set_text_bank(generator):
    head = small_head()
    x = features(generator)
    with pytest.warns(UserWarning, match="set_text_bank"):
        head.reset_classifier(6)
    assert head.num_classes == 6 and head.eval()(x).shape == (3, 6)
    assert head.global_fc.out_features == 6 and head.prototypes.shape == (6, 24)
    head.train()(x)
    with pytest.raises(ValueError, match="set_text_bank"):
        head.losses(torch.zeros(3, 6), targets())
    names6 = NAMES + ["flic-flac", "round-off"]
    head.set_text_bank(build_text_bank(names6, encoder=HashingTextEncoder(12), progress=False))
    assert head.get_config()["text_bank_shape"] == [6, len(taghead.text.DEFAULT_TEMPLATES), 12]
    assert set(head.losses(head(x), targets())) == ALL_LOSSES
    head.set_text_bank(None)
    assert not head.has_text and set(head.losses(head(x), targets())) == ALL_LOSSES - {"text_video", "text_prototype"}
    head.reset_classifier(0)
    assert isinstance(head.fc, nn.Identity) and isinstance(head.global_fc, nn.Identity)
    out = head.eval()(x)
    assert out.shape == (3, head.head_hidden_size)
    assert torch.equal(out, head.forward_head(head.forward_features(x), pre_logits=True))
    head.train()(x)
    assert set(head.losses(out, targets())) == {"mtc_spatial", "mtc_temporal", "mtc_tracklet"}


@pytest.mark.parametrize("text", [True, False])
def test_set_text_bank_and_reset_classifier_keep_the_heads_device_and_dtype(text, generator):
    """New modules of a bfloat16 head are bfloat16 too (float32 ones would fail the forward: a dtype mismatch)."""
    head = small_head(text).to(torch.bfloat16)
    x = features(generator).to(torch.bfloat16)
    head.set_text_bank(bank(12))
    head.reset_classifier(K)
    floating = [t for t in (*head.parameters(), *head.buffers()) if t.is_floating_point()]
    assert {t.dtype for t in floating} == {torch.bfloat16}
    assert head.text_agent.dtype == head.prototypes.dtype == torch.bfloat16 and head.prototype_seen.dtype == torch.bool
    assert head.text_proj.weight.dtype == head.video_to_text.weight.dtype == head.fc.weight.dtype == torch.bfloat16
    assert head.eval()(x).dtype == torch.bfloat16
    losses = head.losses(head.train()(x), targets())
    assert set(losses) == ALL_LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert head.text_agent.grad.dtype == torch.bfloat16
    head.update_ema()
    head.set_text_bank(None)
    head.reset_classifier(6)
    assert head.fc.weight.dtype == head.global_fc.weight.dtype == torch.bfloat16 and head.eval()(x).shape == (3, 6)


def test_num_classes_zero_and_create_head(generator):
    head = create_head("art", C, *GRID, num_classes=0, **{k: v for k, v in SMALL.items() if k != "num_classes"})
    assert isinstance(head, ARTHead) and head.num_classes == 0 and head.get_config()["num_classes"] == 0
    assert head(features(generator)).shape == (3, head.head_hidden_size)
    assert "art" in taghead.list_heads()


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape,match", [
    ((2, 12, C), "5-D feature map"),
    ((2, C, 3, 2), "5-D feature map"),
    ((2, C + 1, *GRID), "8 channels"),
    ((2, C, 4, 2, 2), r"grid \(T, H, W\) = \(3, 2, 2\)"),
])
def test_bad_input_errors(shape, match):
    with pytest.raises(ValueError, match=match):
        small_head()(torch.randn(*shape))


def test_other_grids_without_position_or_with_dynamic_size(generator):
    for kwargs in (dict(pos_embed=False), dict(dynamic_size=True)):
        head = small_head(**kwargs).eval()
        assert head(torch.randn(2, C, 5, 3, 4, generator=generator)).shape == (2, K)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(text_bank=torch.randn(4, 24)), ValueError, r"unsqueeze\(1\)"),
    (dict(text_bank=torch.randn(5, 2, 24)), ValueError, "5 classes.*num_classes=4"),
    (dict(text_bank=[[1.0]]), TypeError, "torch.Tensor"),
    (dict(text_bank=torch.full((4, 2, 3), float("nan"))), ValueError, r"finite values, got 24 non-finite .* of 24"),
    (dict(text_bank=torch.tensor([[[1.0, float("inf")]]] * 4)), ValueError, r"got 4 non-finite \(nan or inf\) of 8"),
    (dict(text_bank=torch.ones(4, 2, 3, dtype=torch.int64)), ValueError, "floating-point tensor, got dtype torch.int64"),
    (dict(text_bank_shape=[4, 2]), ValueError, "three positive ints"),
    (dict(aggregation="max"), ValueError, "aggregation"),
    (dict(selection="clip"), ValueError, r"selection must be one of \('video', 'frame'\)"),
    (dict(num_queries=1), ValueError, "num_queries >= 2"),
    (dict(embed_dim=15), ValueError, "divisible"),
    (dict(rssa_depth=0), ValueError, "rssa_depth"),
    (dict(gamma=1.5), ValueError, "gamma"),
    (dict(bank_momentum=-0.1), ValueError, "bank_momentum"),
    (dict(text_temperature=0.0), ValueError, "text_temperature"),
    (dict(spatial_loss_weight=-1.0), ValueError, "spatial_loss_weight"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_head(text=False, **kwargs)


def test_one_time_step_switches_the_default_temporal_term_off_with_one_warning(generator):
    with pytest.warns(UserWarning, match=r"single time step \(t=1\).*temporal_loss_weight=0\.0") as record:
        head = ARTHead(C, 1, 2, 2, **SMALL)
    assert len([w for w in record if "time step" in str(w.message)]) == 1
    config = head.get_config()
    assert config["temporal_loss_weight"] == 0.0 and head.loss_weights["temporal_loss_weight"] == 0.0
    head.train()
    x = torch.randn(2, C, 1, 2, 2, generator=generator)
    assert "mtc_temporal" not in head.losses(head(x), targets(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded config rebuilds the same head silently
        rebuilt = ARTHead(**json.loads(json.dumps(config)))
        assert ARTHead(C, 1, 2, 2, **{**SMALL, "temporal_loss_weight": 0.0}).grid == (1, 2, 2)
    assert rebuilt.get_config() == config
    assert small_head().get_config()["temporal_loss_weight"] == 0.1  # the default with more than one frame


def test_explicit_temporal_weight_with_one_time_step_is_an_error():
    with pytest.raises(ValueError, match=r"t=1; set temporal_loss_weight=0 \(or leave it unset\), not 0\.1"):
        ARTHead(C, 1, 2, 2, **{**SMALL, "temporal_loss_weight": 0.1})


def test_wrap_backbone_on_a_one_step_map_warns_once_and_the_saved_model_reloads_silently(tmp_path):
    """r3d_18 strides time by 8: 8 frames give a feature map with t=1."""
    head_kwargs = {k: v for k, v in SMALL.items() if k != "num_classes"}
    with pytest.warns(UserWarning) as record:
        model = taghead.wrap_backbone("torchvision/r3d_18", 3, head="art", num_frames=8, crop_size=32, **head_kwargs)
    assert len([w for w in record if "single time step" in str(w.message)]) == 1
    assert model.head.grid[0] == 1 and model.spec["head_config"]["temporal_loss_weight"] == 0.0
    model.head.eval().save_pretrained(tmp_path / "head")
    x = torch.randn(1, 512, *model.head.grid)  # an r3d_18 feature map at 8 frames, 32 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # build_from_spec rebuilds the head from this config
        assert ARTHead(**model.spec["head_config"]).get_config() == model.head.get_config()
        loaded = taghead.from_pretrained(tmp_path / "head")
        with torch.no_grad():
            assert torch.equal(loaded(x), model.head(x))
    with pytest.raises(ValueError, match="t=1"):  # tiny_video_cnn on 2 frames: t=1 too
        taghead.wrap_backbone("taghead/tiny_video_cnn", 3, head="art", num_frames=2, crop_size=32,
                              backbone_kwargs={"width": 4}, temporal_loss_weight=0.1, **head_kwargs)


def test_num_queries_one_is_allowed_without_pair_terms(generator):
    head = small_head(num_queries=1, spatial_loss_weight=0.0, tracklet_loss_weight=0.0).train()
    assert "mtc_spatial" not in head.losses(head(features(generator)), targets())


# --------------------------------------------------------------------------------------------- training


def test_short_training_run_on_constructed_features_lowers_the_loss():
    """Class k lights up spatial position k in the middle frame: a task the region queries must find."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(32) % K
    x = 0.5 * torch.randn(32, C, *GRID, generator=g)
    x[torch.arange(32), :, 1, y // 2, y % 2] += 2.0
    head = small_head()
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    totals, ces = [], []
    for _ in range(30):
        head.train()
        logits = head(x)
        ce = F.cross_entropy(logits, y)
        loss = ce + sum(head.losses(logits, y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss.detach()))
        ces.append(float(ce.detach()))
    assert totals[-1] < 0.75 * totals[0] and ces[-1] < 0.5 * ces[0]
    assert float((head.eval()(x).argmax(1) == y).float().mean()) > 0.8


class TinyBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = taghead.backbones.tiny_video_cnn(width=4)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(video)


def test_video_classifier_on_the_synthetic_dataset_trains_and_round_trips(tmp_path):
    from taghead.data import SyntheticFineGrainedDataset

    data = SyntheticFineGrainedDataset(8, num_frames=8, size=32, num_classes=4, seed=0)
    video = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor(data.labels)
    torch.manual_seed(0)
    text_bank = build_text_bank(data.class_names, encoder=HashingTextEncoder(16), progress=False)
    head = ARTHead(16, 2, 4, 4, **{**SMALL, "text_bank": text_bank})
    model = VideoClassifier(TinyBackbone(), head, DataConfig(num_frames=8, crop_size=32, resize_size=None))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(10):
        model.train()
        logits = model(video)
        losses = model.losses(logits, y)
        assert set(losses) == ALL_LOSSES
        loss = F.cross_entropy(logits, y) + sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_ema()
        history.append(float(loss.detach()))
    assert sum(history[-3:]) / 3 < 0.75 * sum(history[:3]) / 3

    # the same head through wrap_backbone: the spec stays JSON and the saved model reloads exactly
    wrapped = taghead.wrap_backbone("taghead/tiny_video_cnn", 4, head="art", num_frames=8, crop_size=32,
                                    backbone_kwargs={"width": 4}, label_names=data.class_names,
                                    text_bank=text_bank, **{k: v for k, v in SMALL.items() if k != "num_classes"})
    json.dumps(wrapped.spec)
    wrapped.train()(video[:2])
    wrapped.eval().save_pretrained(tmp_path / "model")
    loaded = taghead.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(loaded(video[:2]), wrapped(video[:2]))
    assert torch.equal(loaded.head.text_bank, wrapped.head.text_bank)
