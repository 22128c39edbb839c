"""timm's model contract, adapted to video, over every built-in registered model and every registered head.

Our own adaptation of what timm's ``tests/test_models.py`` checks of its models (forward and backward, the
configuration keys, ``reset_classifier`` and ``pre_logits``, ``num_features`` / ``head_hidden_size``, gradient
checkpointing, torch.fx feature extraction), plus what timm's training code asks of a model: the optimizer
factory's weight-decay groups and layer-wise learning-rate decay, data-config resolution, ``create_model``'s
keywords, the schedulers' ``lr_scale`` and devices and dtypes after a reset. The oracles are timm's and torch's
own functions. Models and heads are listed when the module is collected, so models and heads registered later
are covered; each model runs at the smallest clip it accepts.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from _hub_cache import populate_hub_cache
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import taghead
from taghead.adapters.base import FeatureExtractor
from taghead.config import TIMM_KEYS, PretrainedCfg
from taghead.layers.batchnorm import configure_batchnorm
from taghead.models import registry
from taghead.models.registry import create_model, list_models, model_entrypoint

timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_data_config, resolve_model_data_config  # noqa: E402
from timm.models import group_parameters  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import create_scheduler_v2  # noqa: E402
from timm.utils import ModelEmaV3  # noqa: E402
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names  # noqa: E402

#: The built-in models (entrypoints in the taghead package), listed when the module is collected.
MODELS = [n for n in list_models() if model_entrypoint(n).__module__.startswith("taghead.")]
HEADS = taghead.list_heads()
#: Clips tried in turn for a model, smallest first: (frames, crop).
CLIPS = ((4, 16), (8, 32), (16, 64))
CLASSES = ("vault", "beam", "floor")
TINY = "taghead/tiny_video_cnn"


def _head_options(name: str) -> dict:
    """Small settings of the built-in heads on the tiny backbone's map (32 channels); others use their defaults."""
    if name == "tag":
        return dict(embed_dim=16, num_heads=2, mlp_dim=32)
    if name == "art":
        return dict(embed_dim=16, num_heads=2, se_depth=1, rssa_depth=1, mlp_dim=16,
                    text_bank=taghead.build_text_bank(list(CLASSES), encoder="hashing:16", progress=False))
    return {}


_BUILT: dict[str, taghead.VideoClassifier] = {}


def small_model(name: str) -> taghead.VideoClassifier:
    """The registered model ``name`` at the smallest clip it runs (built once; callers that change it copy it)."""
    if name not in _BUILT:
        torch.manual_seed(0)
        for frames, crop in CLIPS:
            try:
                _BUILT[name] = create_model(name, num_classes=len(CLASSES), num_frames=frames, crop_size=crop)
                break
            except (TypeError, ValueError):
                continue
        else:
            _BUILT[name] = create_model(name, num_classes=len(CLASSES))
    return _BUILT[name]


def head_model(name: str) -> taghead.VideoClassifier:
    """The registered head ``name`` on the tiny CNN (8 frames of 32x32: a 32 x 2 x 4 x 4 map); built once."""
    key = f"head:{name}"
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = taghead.wrap_backbone(TINY, len(CLASSES), head=name, num_frames=8, crop_size=32,
                                            backbone_kwargs=dict(width=8), **_head_options(name))
    return _BUILT[key]


def any_model(kind: str, name: str) -> taghead.VideoClassifier:
    return small_model(name) if kind == "model" else head_model(name)


CASES = [("model", n) for n in MODELS] + [("head", n) for n in HEADS]
IDS = [f"{kind}-{name}" for kind, name in CASES]


def clip(model: taghead.VideoClassifier, batch: int = 2) -> torch.Tensor:
    cfg = model.data_config
    return torch.randn(batch, 3, cfg.num_frames, cfg.crop_size, cfg.crop_size, generator=torch.Generator().manual_seed(1))


def labels(batch: int = 2) -> torch.Tensor:
    return torch.arange(batch) % len(CLASSES)


def _calls(model: nn.Module, fn) -> dict[str, int]:
    """Forward calls of the backbone's and the head's submodules while ``fn()`` runs (re-runs included)."""
    counts = {"backbone": 0, "head": 0}
    handles = [m.register_forward_hook(lambda *a, part=part: counts.__setitem__(part, counts[part] + 1))
               for part in counts for m in getattr(model, part).modules()]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return counts


def _train_step(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict, dict]:
    """Output, gradients, buffers after one forward and backward (fixed seed: same dropout masks), and calls."""
    out = {}

    def step() -> None:
        torch.manual_seed(2)
        out["y"] = model(x)
        nn.functional.cross_entropy(out["y"], labels(x.shape[0])).backward()

    calls = _calls(model, step)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out["y"].detach(), grads, {n: b.clone() for n, b in model.named_buffers()}, calls


# -- forward, backward, gradient checkpointing -------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_forward_backward_and_gradient_checkpointing_give_the_same_outputs_and_gradients(kind, name):
    plain = copy.deepcopy(any_model(kind, name)).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = clip(plain)
    y, grads, buffers, calls = _train_step(plain, x)
    y_ckpt, grads_ckpt, buffers_ckpt, calls_ckpt = _train_step(checkpointed, x)
    assert y.shape == (2, len(CLASSES)) and torch.isfinite(y).all()
    used = {n for n, p in plain.named_parameters() if p.requires_grad}
    if kind == "model":  # TAG-Head models: every trainable parameter takes part in the loss
        assert set(grads) == used
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    # Checkpointing really re-ran the head (and a backbone that supports it) in the backward pass ...
    assert calls_ckpt["head"] > calls["head"] or not any(
        isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)) for m in plain.head.modules())
    if getattr(checkpointed.backbone, "supports_grad_checkpointing", False):
        assert calls_ckpt["backbone"] > calls["backbone"]
    # ... and changed nothing: outputs, gradients and BatchNorm statistics are bitwise the same.
    assert torch.equal(y, y_ckpt)
    assert grads.keys() == grads_ckpt.keys() and all(torch.equal(grads[k], grads_ckpt[k]) for k in grads)
    assert buffers.keys() == buffers_ckpt.keys() and all(torch.equal(buffers[k], buffers_ckpt[k]) for k in buffers)


#: Backbones the registered models do not cover, each adapter's checkpointing once: (name or timm model, frames, crop).
WRAPPED = [("torchvision/s3d", 8, 32), ("torchvision/mvit_v1_b", 4, 32), ("torchvision/swin3d_t", 4, 32),
           ("pytorchvideo/mvit_base_16x4", 4, 32), ("timm:resnet18", 2, 32), ("timm:vit_tiny_patch16_224", 2, 32)]


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "frames", "crop"), WRAPPED, ids=[w[0] for w in WRAPPED])
def test_other_backbones_checkpoint_their_blocks(backbone, frames, crop):
    torch.manual_seed(0)
    if backbone.startswith("timm:"):
        backbone = timm.create_model(backbone[5:], pretrained=False, **({"img_size": crop} if "vit" in backbone else {}))
    plain = taghead.wrap_backbone(backbone, 3, head="meanpool", num_frames=frames, crop_size=crop).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing(True)
    x = clip(plain)
    y, grads, buffers, calls = _train_step(plain, x)
    y_ckpt, grads_ckpt, buffers_ckpt, calls_ckpt = _train_step(checkpointed, x)
    assert calls_ckpt["backbone"] > calls["backbone"]
    assert torch.equal(y, y_ckpt) and grads.keys() == grads_ckpt.keys()
    assert all(torch.equal(grads[k], grads_ckpt[k]) for k in grads)
    twice = {k.rsplit(".", 1)[0] for k, b in buffers_ckpt.items() if k.endswith("num_batches_tracked") and int(b) == 2}
    if isinstance(backbone, nn.Module) and any(isinstance(m, _BatchNorm) for m in backbone.modules()):
        # timm's own checkpointing re-runs BatchNorm layers in the backward pass without restoring their running
        # statistics: those in checkpointed blocks are updated twice per step (timm's behaviour; docs/guides/timm.md)
        assert twice
        buffers = {k: b for k, b in buffers.items() if k.rsplit(".", 1)[0] not in twice}
    else:  # taghead's adapters put the statistics back
        assert not twice
    assert all(torch.equal(b, buffers_ckpt[k]) for k, b in buffers.items())
    # the backbone's own stages make the layer groups
    fine = group_parameters(plain, plain.group_matcher(coarse=False))
    assert len(fine) >= 4


def test_a_backbone_that_cannot_checkpoint_says_so_and_the_head_still_does():
    model = taghead.wrap_backbone(nn.Sequential(nn.Conv3d(3, 8, 3, stride=(2, 4, 4), padding=1)), 3, head="tag",
                                  feature_layer="0", num_frames=4, crop_size=16, embed_dim=8, num_heads=2, mlp_dim=8)
    assert not model.backbone.supports_grad_checkpointing
    with pytest.warns(UserWarning, match="cannot be checkpointed; only the head is"):
        model.set_grad_checkpointing(True)
    assert model.head.grad_checkpointing and not model.backbone.grad_checkpointing
    with pytest.raises(NotImplementedError, match="cannot checkpoint its backbone"):
        model.backbone.set_grad_checkpointing(True)
    model.set_grad_checkpointing(False)
    assert not model.head.grad_checkpointing


# -- the model contract: features, pre-logits, classifier -----------------------------------------------------------
@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
@pytest.mark.filterwarnings("ignore:ARTHead now has")
def test_features_pre_logits_and_widths_follow_timm(kind, name):
    model = copy.deepcopy(any_model(kind, name)).eval()
    x = clip(model)
    with torch.no_grad():
        features = model.forward_features(x)
        # num_features: the channels of forward_features' output, as timm means it (a layer sized by it fits)
        assert features.dim() == 5 and features.shape[1] == model.num_features
        assert nn.Conv3d(model.num_features, 2, 1)(features).shape[1] == 2
        pre = model.forward_head(features, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size)
        logits = model.forward_head(features)
        torch.testing.assert_close(logits, model(x))
        classifier = model.get_classifier()
        assert classifier is model.get_submodule(model.pretrained_cfg["classifier"])
        assert classifier.in_features == model.head_hidden_size and classifier.out_features == len(CLASSES)
        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        torch.testing.assert_close(model(x), pre)  # without a classifier the model returns the pre-logits
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.get_classifier().in_features == model.head_hidden_size


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_pretrained_cfg_is_timms_mapping_and_resolves_the_data_config(kind, name):
    model = any_model(kind, name)
    cfg, data = model.pretrained_cfg, model.data_config
    assert set(TIMM_KEYS) <= set(cfg) and dict(model.default_cfg) == dict(cfg)
    assert cfg["input_size"] == (3, data.crop_size, data.crop_size) and cfg["num_frames"] == data.num_frames
    assert cfg["num_classes"] == (model.num_classes if kind == "head" else model.weights_cfg.num_classes)
    resolved = resolve_model_data_config(model)
    assert resolved == resolve_data_config(model=model)
    assert resolved["input_size"] == (3, data.crop_size, data.crop_size)
    assert resolved["mean"] == data.mean and resolved["std"] == data.std
    assert resolved["interpolation"] == "bilinear" and resolved["crop_mode"] == "center"
    # timm's own evaluation transform resizes the shorter side to the model's resize_size, then crops
    resize = create_transform(**resolved).transforms[0]
    assert resize.size == (data.resize_size or data.crop_size)


# -- timm's optimizer factory --------------------------------------------------------------------------------------
def _names(model: nn.Module, params) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_the_optimizer_factory_exempts_what_every_submodule_names(kind, name):
    model = any_model(kind, name)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    no_decay = {n for g in optimizer.param_groups if g["weight_decay"] == 0.0 for n in _names(model, g["params"])}
    decay = {n for g in optimizer.param_groups if g["weight_decay"] == 0.05 for n in _names(model, g["params"])}
    # What each submodule names in its own no_weight_decay() (timm asks only the model itself) ...
    named = {f"{prefix}.{n}" for prefix, m in model.named_modules() if m is not model
             and callable(getattr(m, "no_weight_decay", None)) for n in m.no_weight_decay()}
    listed = {n for n, _ in model.named_parameters() if any(fnmatch.fnmatch(n, p) for p in named)}
    one_d = {n for n, p in model.named_parameters() if p.ndim <= 1 or n.endswith(".bias")}
    assert no_decay == listed | one_d and decay == {n for n, _ in model.named_parameters()} - no_decay
    if getattr(model.head, "pos_embed", None) is not None:
        assert "head.pos_embed.weight" in no_decay
    # ... and param_groups() splits the same way
    ours = model.param_groups(weight_decay=0.05)
    assert {n for g in ours if g["weight_decay"] == 0.0 for n in _names(model, g["params"])} == no_decay


def test_art_prompts_and_text_agent_are_not_decayed_by_the_factory():
    model = head_model("art")
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    no_decay = {n for g in optimizer.param_groups if g["weight_decay"] == 0.0 for n in _names(model, g["params"])}
    assert {"head.query_prompts", "head.text_agent", "head.pos_embed.weight"} <= no_decay


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_layer_decay_scales_the_backbone_stages_below_the_head(kind, name):
    model = any_model(kind, name)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scale = {n: g["lr_scale"] for g in optimizer.param_groups for n in _names(model, g["params"])}
    backbone = [scale[n] for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    head = {scale[n] for n, p in model.named_parameters() if n.startswith("head.")}
    assert head == {1.0}  # the (new) head keeps the full learning rate
    assert len(set(backbone)) >= 3 and max(backbone) < 1.0  # the stages get different, smaller scales ...
    assert backbone[0] == min(backbone) == pytest.approx(0.75 ** len(set(backbone)))  # ... the stem the smallest
    assert backbone[-1] == max(backbone) == 0.75  # ... the last block just below the head


def test_coarse_groups_are_the_stages():
    model = small_model("tag_r3d_18") if "tag_r3d_18" in MODELS else head_model("tag")
    fine = group_parameters(model, model.group_matcher(coarse=False))
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) < len(fine)
    if "tag_r3d_18" in MODELS:  # stem, layer1..layer4, head; with blocks: stem, 2 per stage, head
        assert len(coarse) == 6 and len(fine) == 10


# -- torch.fx ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_torchvision_feature_extraction_traces_the_model(kind, name):
    model = copy.deepcopy(any_model(kind, name)).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    backbone_out = [n for n in eval_nodes if n.startswith("backbone.")][-1]
    extractor = create_feature_extractor(model, return_nodes={backbone_out: "features", eval_nodes[-1]: "logits"})
    x = clip(model)
    with torch.no_grad():
        out = extractor(x)
        torch.testing.assert_close(out["features"], model.forward_features(x))
        torch.testing.assert_close(out["logits"], model(x))
    if kind == "head":  # the training graph (ART's cache and losses are not part of a traced graph)
        extractor = create_feature_extractor(model.train(), return_nodes={train_nodes[-1]: "logits"})
        extractor(x)["logits"].sum().backward()
        assert model.head.get_classifier().weight.grad is not None
        assert getattr(model.head, "selected_classes", None) is None or isinstance(model.head.selected_classes,
                                                                                   torch.Tensor)


# -- reset_classifier: signature, device, dtype ---------------------------------------------------------------------
@pytest.mark.parametrize("name", HEADS)
@pytest.mark.filterwarnings("ignore:ARTHead now has")
def test_reset_classifier_keeps_the_device_and_dtype_of_the_head(name):
    model = copy.deepcopy(head_model(name)).to(torch.float64).eval()
    x = clip(model).double()
    model.reset_classifier(0)  # a mean-pool head then holds no tensor of its own
    model.reset_classifier(5)
    floating = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    assert {t.dtype for t in floating} == {torch.float64}
    assert model(x).dtype == torch.float64 and model(x).shape == (2, 5)
    head = model.head.to("meta")  # another device (the same code path as CUDA)
    head.reset_classifier(0)
    head.reset_classifier(2, None)
    assert {t.device.type for t in (*head.parameters(), *head.buffers())} == {"meta"}
    with pytest.raises(ValueError, match=r"global_pool='avg' is not supported"):
        head.reset_classifier(2, "avg")


def test_reset_classifier_takes_timms_global_pool_and_keyword_label_names():
    model = copy.deepcopy(head_model("meanpool"))
    with pytest.raises(ValueError, match=r"global_pool='' is not supported.*forward_features"):
        model.reset_classifier(0, "")  # timm's "unpooled" request: a video head pools by design
    with pytest.raises(TypeError, match=r"pass class names as label_names=\[\.\.\.\]"):
        model.reset_classifier(2, ["a", "b"])
    assert model.num_classes == len(CLASSES)  # the refused calls changed nothing
    model.reset_classifier(2, None, label_names=["a", "b"])
    assert model.num_classes == 2 and model.label_names == ["a", "b"]


# -- create_model's keywords ------------------------------------------------------------------------------------------
SMALL = dict(num_frames=4, crop_size=16)


def test_create_model_takes_what_timms_train_py_passes():
    # timm's train.py passes these, most of them None unless a flag is set; None means "not set" and is dropped
    model = create_model("tag_r3d_18", pretrained=False, in_chans=3, num_classes=3, drop_rate=0.2,
                         drop_path_rate=None, drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None,
                         scriptable=None, checkpoint_path=None, pretrained_cfg=None, pretrained_cfg_overlay=None,
                         device=None, dtype=None, **SMALL)
    assert model.head.head_drop.p == 0.2 and model.head.get_config()["drop_rate"] == 0.2
    # and the no-op values of the regularisers the built-in models do not have
    create_model("tag_r3d_18", num_classes=3, drop_path_rate=0.0, drop_block_rate=0, exportable=True, no_jit=True,
                 **SMALL)


def test_create_model_sets_batchnorm_device_and_dtype():
    model = create_model("tag_r3d_18", num_classes=3, bn_momentum=0.01, bn_eps=1e-4, dtype=torch.float64, **SMALL)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-4 for m in bns)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.eval()(clip(model).double()).dtype == torch.float64
    meta = create_model("tag_r3d_18", num_classes=3, device="meta", **SMALL)
    assert {p.device.type for p in meta.parameters()} == {"meta"}


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(drop_path_rate=0.1), ValueError, r"drop_path_rate=0\.1 is not supported: this model has no stochastic depth"),
    (dict(drop_block_rate=0.1), ValueError, r"drop_block_rate=0\.1 is not supported: this model has no DropBlock"),
    (dict(global_pool="avg"), ValueError, r"global_pool='avg' is not supported"),
    (dict(scriptable=True), ValueError, r"scriptable=True is not supported.*torch\.export"),
    (dict(in_chans=1), ValueError, r"in_chans=1 is not supported"),
    (dict(features_only=True), ValueError, r"features_only=True is not supported.*create_feature_extractor"),
    (dict(dtype="float16"), TypeError, r"dtype must be a floating-point torch\.dtype"),
    (dict(dtype=torch.int64), TypeError, r"dtype must be a floating-point torch\.dtype"),
    (dict(bn_eps=-1.0), ValueError, r"BatchNorm eps must be None \(keep the layer's\) or a number > 0, got -1\.0"),
    (dict(pretrained_cfg="kinetics400"), ValueError, r"taghead models have no pretrained tags"),
    (dict(pretrained_cfg=42), TypeError, r"pretrained_cfg must be a PretrainedCfg"),
])
def test_create_model_refuses_timm_keywords_that_do_not_apply(kwargs, error, match):
    with pytest.raises(error, match=match):
        create_model("tag_r3d_18", num_classes=3, **SMALL, **kwargs)


def test_batchnorm_settings_need_batchnorm_layers(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @taghead.register_model(name="test_no_batchnorm")
    def _no_bn(num_classes: int, **kwargs) -> taghead.VideoClassifier:
        backbone = nn.Sequential(nn.Conv3d(3, 8, 3, stride=(2, 4, 4), padding=1))
        return taghead.wrap_backbone(backbone, num_classes, head="meanpool", feature_layer="0", **SMALL, **kwargs)

    with pytest.raises(ValueError, match=r"bn_momentum=0\.1 given, but the model has no BatchNorm layer"):
        create_model("test_no_batchnorm", num_classes=2, bn_momentum=0.1)
    assert configure_batchnorm(nn.Linear(2, 2), momentum=0.5) == 0
    assert configure_batchnorm(nn.BatchNorm1d(2), momentum=0.0) == 1  # PyTorch's momentum 0: statistics never move
    for bad in (dict(momentum=-0.1), dict(momentum=1.5), dict(eps=0.0), dict(momentum=float("nan")), dict(eps=True)):
        with pytest.raises(ValueError):
            configure_batchnorm(nn.BatchNorm1d(2), **bad)


def test_checkpoint_path_loads_a_timm_train_py_checkpoint(tmp_path):
    source = create_model("tag_r3d_18", num_classes=3, **SMALL)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = tmp_path / "last.pth.tar"  # what timm's CheckpointSaver writes
    torch.save({"epoch": 3, "arch": "tag_r3d_18", "state_dict": source.state_dict(), "state_dict_ema": ema}, path)
    loaded = create_model("tag_r3d_18", num_classes=3, checkpoint_path=path, **SMALL)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())


def test_pretrained_path_overlay_adapts_the_classifier(tmp_path):
    source = create_model("tag_r3d_18", num_classes=7, **SMALL)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    # timm's --pretrained-path: pretrained_cfg_overlay=dict(file=..., num_classes=-1)
    with pytest.warns(UserWarning, match=r"except the class-dependent weights \(head\.fc\.weight, head\.fc\.bias\)"):
        model = create_model("tag_r3d_18", pretrained=True, num_classes=3,
                             pretrained_cfg_overlay=dict(file=str(path), num_classes=-1), **SMALL)
    assert model.num_classes == 3
    kept = {k for k in source.state_dict() if not k.startswith("head.fc.")}
    assert all(torch.equal(source.state_dict()[k], model.state_dict()[k]) for k in kept)


def test_pretrained_cfg_replaces_the_registered_one(tmp_path):
    source = create_model("tag_r3d_18", num_classes=3, **SMALL)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    cfg = PretrainedCfg(num_classes=3, num_frames=4, crop_size=16, resize_size=18, file=str(tmp_path / "w.pth"),
                        license="mit", source="a test")
    model = create_model("tag_r3d_18", pretrained=True, pretrained_cfg=cfg, **SMALL)
    assert model.weights_cfg == cfg and model.pretrained_cfg["license"] == "mit"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())
    from_dict = create_model("tag_r3d_18", pretrained_cfg=cfg.to_dict(), **SMALL)
    assert from_dict.num_classes == 3 and from_dict.data_config == cfg.data_config()
    # random weights: the config's input settings, none of its description of weights not loaded
    assert (from_dict.weights_cfg.license, from_dict.weights_cfg.source, from_dict.weights_cfg.file) == (None,) * 3


def test_hub_models_refuse_architecture_keywords(tmp_path):
    folder = head_model("meanpool").save_pretrained(tmp_path / "saved")
    model = create_model(f"hf-hub:{folder}", pretrained=True, bn_eps=1e-3, dtype=torch.float64)
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, _BatchNorm))
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with pytest.raises(TypeError, match=r"rebuilds its own architecture, so only download options apply"):
        create_model(f"hf-hub:{folder}", drop_rate=0.1)


# -- list_models(pretrained=True): weights you can load ---------------------------------------------------------------
def test_every_model_listed_as_pretrained_loads_offline(tmp_path, offline_cache, monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_PRETRAINED_CFGS", dict(registry._PRETRAINED_CFGS))
    saved = head_model("tag").save_pretrained(tmp_path / "saved")
    populate_hub_cache(offline_cache, "taghead-test/tiny-tag", saved, "0" * 40)
    base = dict(num_classes=len(CLASSES), num_frames=8, crop_size=32)
    cfgs = {"test_weights_on_the_hub": PretrainedCfg(**base, hf_hub_id="taghead-test/tiny-tag"),
            "test_weights_in_a_file": PretrainedCfg(**base, file=str(saved)),
            "test_weights_missing": PretrainedCfg(**base, file=str(tmp_path / "nowhere.safetensors")),
            "test_weights_unpublished": PretrainedCfg(**base, source="described, not published")}
    for name, cfg in cfgs.items():
        taghead.register_model(lambda num_classes, pretrained_cfg, **kw: taghead.wrap_backbone(
            TINY, num_classes, head="tag", num_frames=8, crop_size=32, backbone_kwargs=dict(width=8),
            **_head_options("tag"), **kw), name=name, pretrained_cfg=cfg)
    listed = list_models(pretrained=True)
    assert {"test_weights_on_the_hub", "test_weights_in_a_file"} <= set(listed)
    assert not {"test_weights_missing", "test_weights_unpublished"} & set(listed)
    for name in listed:  # timm's meaning: every listed name loads its weights (here from the offline cache)
        model = create_model(name, pretrained=True)
        if name.startswith("test_weights"):
            assert all(torch.equal(v, model.state_dict()[k]) for k, v in head_model("tag").state_dict().items())


# -- learning rates: lr_scale for timm's schedulers, the optimizer's own weight decay -----------------------------------
def _lr_ratios(groups: list[dict]) -> list[float]:
    optimizer = create_optimizer_v2(groups, "adamw", lr=1e-3)
    scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=4, warmup_epochs=2, warmup_lr=1e-5,
                                       updates_per_epoch=2, step_on_epochs=False)
    ratios = []
    for step in range(8):
        scheduler.step_update(step)
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        ratios.append(lrs["backbone"] / lrs["head"])
    return ratios


def test_param_groups_keep_the_backbone_ratio_under_timms_warmup():
    model = head_model("tag")
    assert _lr_ratios(model.param_groups(backbone_lr_scale=0.1)) == pytest.approx([0.1] * 8)
    # with learning rates written into the groups, timm's warm-up starts every group at warmup_lr: the ratio drifts
    drifting = _lr_ratios(model.param_groups(lr=1e-3, backbone_lr_scale=0.1))
    assert drifting[0] == pytest.approx(1.0) and max(abs(r - 0.1) for r in drifting) > 0.05


def test_param_groups_leave_the_optimizers_own_weight_decay():
    model = head_model("art")
    default = torch.optim.AdamW([nn.Parameter(torch.zeros(1))]).defaults["weight_decay"]
    optimizer = torch.optim.AdamW(model.param_groups(lr=1e-3))
    decays = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {"backbone": default, "backbone_no_decay": 0.0, "head": default, "head_no_decay": 0.0}
    groups = {g["name"]: g for g in model.param_groups(lr=1e-3, backbone_lr_scale=0.5)}
    assert groups["backbone"]["lr"] == 5e-4 and "lr_scale" not in groups["backbone"]
    assert {g["lr_scale"] for g in model.param_groups(backbone_lr_scale=0.5) if g["name"].startswith("head")} == {1.0}
    for bad in (dict(lr=0.0), dict(lr=-1.0), dict(weight_decay=-0.1), dict(backbone_lr_scale=-1.0),
                dict(backbone_lr_scale=None), dict(lr=math.inf), dict(weight_decay=True)):
        with pytest.raises(ValueError, match="param_groups: "):
            model.param_groups(**bad)


# -- ART's auxiliary losses and timm's train.py ------------------------------------------------------------------------
def test_timms_train_step_never_calls_the_auxiliary_losses_and_the_two_lines_that_add_them():
    model = copy.deepcopy(head_model("art")).train()
    head, x, y = model.head, clip(model), labels()
    bank = head.text_bank.clone()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-2, weight_decay=0.05)
    loss_fn = nn.CrossEntropyLoss()
    # timm's train.py: loss = loss_fn(output, target); backward; step (no model.losses, no model.update_ema)
    loss_fn(model(x), y).backward()
    optimizer.step()
    untrained = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert {"head.global_fc.weight", "head.text_agent", "head.video_to_text.weight"} <= untrained
    assert torch.equal(head.text_bank, bank)  # the text bank never follows its agent
    # The remedy (docs/guides/timm.md): add the losses to the criterion, update the bank after each step.
    optimizer.zero_grad(set_to_none=True)
    optimizer.register_step_post_hook(lambda opt, args, kwargs: model.update_ema())
    output = model(x)
    (loss_fn(output, y) + sum(model.losses(output, y).values())).backward()
    optimizer.step()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in untrained)
    assert not torch.equal(head.text_bank, bank)
    # timm's mixup / cutmix give soft targets: the auxiliary losses need class indices
    with pytest.raises(ValueError, match=r"expects class indices, an int64 tensor"):
        model.losses(model(x), nn.functional.one_hot(y, len(CLASSES)).float())


def test_distributed_training_needs_the_auxiliary_losses_or_unused_parameter_detection(tmp_path):
    """DistributedDataParallel (timm's train.py with several processes) refuses the second step of a model whose
    parameters went unused in the loss; with ART's auxiliary losses every parameter is used."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        x, y = clip(head_model("art")), labels()
        for with_losses in (False, True):
            model = DistributedDataParallel(copy.deepcopy(head_model("art")).train())

            def step(model=model, with_losses=with_losses) -> None:
                out = model(x)
                loss = nn.functional.cross_entropy(out, y)
                if with_losses:
                    loss = loss + sum(model.module.losses(out, y).values())
                loss.backward()

            step()
            if with_losses:
                step()
            else:
                with pytest.raises(RuntimeError, match="parameters that were not used in producing loss"):
                    step()
    finally:
        if started:
            dist.destroy_process_group()


# -- the example -------------------------------------------------------------------------------------------------------
def _example():
    path = Path(__file__).resolve().parent.parent / "examples" / "train_with_timm.py"
    spec = importlib.util.spec_from_file_location("train_with_timm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("head", ["tag", "art"])
def test_the_timm_training_example_runs(head):
    result = _example().main(epochs=1, head=head, quiet=True)
    assert result["updates"] == 4 and math.isfinite(result["first_loss"]) and math.isfinite(result["last_loss"])
    assert 0.0 <= result["ema_val_accuracy"] <= 1.0


def test_timms_checkpoint_loader_channels_last_and_export(tmp_path):
    model = copy.deepcopy(head_model("tag")).eval()
    x = clip(model)
    expected = model(x)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 1, "state_dict": {k: v + 1 if v.is_floating_point() else v
                                           for k, v in model.state_dict().items()}}, path)
    timm.models.load_checkpoint(model, str(path))
    assert not torch.allclose(model(x), expected)
    expected = model(x)
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(channels_last(x.to(memory_format=torch.channels_last_3d)), expected)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), expected)


def test_ema_of_a_taghead_model_follows_it():
    model = copy.deepcopy(head_model("tag"))
    ema = ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=10)
    assert isinstance(ema.module, taghead.VideoClassifier)
    name, param = next(iter(model.named_parameters()))
    torch.testing.assert_close(ema.module.get_parameter(name), param - 0.5)


def test_a_wrapped_model_has_a_pretrained_cfg_without_provenance(tmp_path):
    model = head_model("meanpool")
    assert model.weights_cfg is None and model.pretrained_cfg["num_classes"] == len(CLASSES)
    assert isinstance(model.backbone, FeatureExtractor) and model.pretrained_cfg["source"] == ""
    config = model.hub_config()
    assert config["pretrained_cfg"] is None  # nothing claimed about random weights in config.json
    with pytest.raises(TypeError, match="pretrained_cfg must be a taghead PretrainedCfg"):
        model.pretrained_cfg = {"input_size": (3, 32, 32)}
