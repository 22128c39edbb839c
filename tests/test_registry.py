"""Model registry: names, reference presets, pretrained configs, pretrained loading, errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from _hub_cache import populate_hub_cache

import taghead
from taghead import TAGHead, VideoClassifier, create_model, list_models, register_model
from taghead.engine.checkpoint import save_checkpoint
from taghead.hub import CONFIG_NAME, WEIGHTS_NAME
from taghead.models.pretrained import PretrainedCfg
from taghead.models.registry import get_pretrained_cfg, load_pretrained
from taghead.models.wrap import wrap_backbone
from taghead.weights import StateDictMismatchError

REFERENCE = ["tag_r2plus1d_34_gym288", "tag_r2plus1d_34_gym99", "tag_r2plus1d_34_haa500"]
OTHERS = ["tag_i3d_r50", "tag_r2plus1d_18", "tag_r3d_18", "tag_slowfast_r50", "tag_x3d_m"]

# A tiny registered model so that pretrained loading is exercised in milliseconds.
TINY = "test_tiny_tag"
LABELS = ("salto", "twist", "split", "handstand", "leap")
TINY_CFG = PretrainedCfg(num_classes=5, num_frames=8, crop_size=32, resize_size=36, label_names=LABELS,
                         license="apache-2.0", dataset="synthetic", source="made by the test suite")
RANDOM_TINY_CFG = dataclasses.replace(TINY_CFG, source=None, license=None, dataset=None)


@register_model(name=TINY, pretrained_cfg=TINY_CFG)
def _tiny_tag(num_classes: int, pretrained_cfg: PretrainedCfg, **kwargs) -> VideoClassifier:
    kwargs = {"mlp_dim": 64, "num_heads": 4, **kwargs}
    return wrap_backbone("taghead/tiny_video_cnn", num_classes, num_frames=pretrained_cfg.num_frames,
                         crop_size=pretrained_cfg.crop_size, backbone_kwargs=dict(width=8), **kwargs)


@pytest.fixture
def video() -> torch.Tensor:
    return torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))


def test_list_models_names_patterns_and_pretrained():
    names = list_models()
    assert names == sorted(names) and set(REFERENCE + OTHERS + [TINY]) <= set(names)
    assert list_models("tag_r2plus1d_34_*") == REFERENCE
    assert list_models("tag_r*_18") == ["tag_r2plus1d_18", "tag_r3d_18"]
    # pretrained=True means "weights create_model(name, pretrained=True) can load" (timm's meaning): the reference
    # presets describe their checkpoints but none is published, so no built-in model is listed.
    assert list_models("tag_*", pretrained=True) == []
    assert list_models(["tag_r3d_18", "tag_i3d*"]) == ["tag_i3d_r50", "tag_r3d_18"]
    assert list_models("tag_r*_18", exclude_filters="*r3d*") == ["tag_r2plus1d_18"]
    assert set(list_models(module="zoo")) == set(REFERENCE + OTHERS) == set(list_models(module="taghead.models.zoo"))
    assert TINY in list_models(name_matches_cfg=True) and "test_cfgless_model" not in list_models(name_matches_cfg=True)
    assert all(not get_pretrained_cfg(n).has_weights for n in REFERENCE)  # no invented Hub repositories
    assert all(get_pretrained_cfg(n).hf_hub_id is None for n in REFERENCE + OTHERS)


# (num_classes, input frames, feature-map T, feed-forward width, dataset) from the paper's released code.
PRESETS = {"haa500": (500, 32, 4, 512, "haa500"), "gym99": (99, 64, 8, 1024, "finegym"),
           "gym288": (288, 64, 8, 2048, "finegym")}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_reference_presets_are_exact(preset):
    classes, frames, t, mlp, dataset = PRESETS[preset]
    name = f"tag_r2plus1d_34_{preset}"
    model = create_model(name)
    assert isinstance(model, VideoClassifier) and isinstance(model.head, TAGHead)
    assert model.num_classes == classes and model.head.grid == (t, 7, 7) and model.head.in_channels == 512
    cfg = model.head.get_config()
    assert (cfg["mlp_dim"], cfg["depth"], cfg["num_heads"], cfg["dropout"], cfg["embed_dim"]) == (mlp, 2, 8, 0.5, 512)
    assert (cfg["k"], cfg["alpha"], cfg["norm_first"], cfg["activation"]) == (2, 0.1, False, "relu")
    dc = model.data_config
    assert (dc.num_frames, dc.crop_size, dc.resize_size) == (frames, 112, 128)
    assert dc.mean == (0.45,) * 3 and dc.std == (0.225,) * 3
    assert model.spec["backbone"] == "taghead/r2plus1d_34" and model.architecture == name
    with torch.no_grad():  # the backbone really gives the preset's grid for the preset's clip
        assert model.backbone.feature_shape(frames, 112) == (512, t, 7, 7)
    pcfg = get_pretrained_cfg(name)  # the registered weights: the reference checkpoint of the preset
    assert pcfg.license == "mit" and "2604.11498" in pcfg.citation and pcfg.dataset == dataset
    assert pcfg.preset == preset and pcfg.file is None and pcfg.hf_hub_id is None and pcfg.metrics
    # This model has random weights: it keeps the input settings and the citation, and claims nothing of the
    # reference checkpoint (a card saved from it must not show the paper's numbers as its own).
    own = model.weights_cfg
    assert (own.num_frames, own.crop_size, own.mean) == (frames, 112, (0.45,) * 3) and "2604.11498" in own.citation
    assert (own.metrics, own.preset, own.source, own.license, own.dataset) == ({}, None, None, None, None)


KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
# name: (backbone, frames, crop, mean): torchvision's and pytorchvideo's documented Kinetics inputs.
OTHER_INPUTS = {
    "tag_r2plus1d_18": ("torchvision/r2plus1d_18", 16, 112, KINETICS_MEAN),
    "tag_r3d_18": ("torchvision/r3d_18", 16, 112, KINETICS_MEAN),
    "tag_slowfast_r50": ("pytorchvideo/slowfast_r50", 32, 224, (0.45,) * 3),
    "tag_x3d_m": ("pytorchvideo/x3d_m", 16, 224, (0.45,) * 3),
    "tag_i3d_r50": ("pytorchvideo/i3d_r50", 8, 224, (0.45,) * 3),
}


@pytest.mark.parametrize("name", OTHERS)
def test_tag_head_on_common_backbones(name):
    backbone, frames, crop, mean = OTHER_INPUTS[name]
    model = create_model(name, num_classes=7, dropout=0.1)
    assert model.spec["backbone"] == backbone and model.num_classes == 7 and model.label_names is None
    assert (model.data_config.num_frames, model.data_config.crop_size, model.data_config.mean) == (frames, crop, mean)
    channels, *grid = model.backbone.feature_shape(frames, crop)
    assert model.head.in_channels == channels and model.head.grid == tuple(grid)
    assert model.head.get_config()["dropout"] == 0.1
    if name == "tag_r3d_18":  # one real forward pass on the documented clip
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, frames, crop, crop))
        assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_another_crop_scales_the_resize_as_wrap_backbone_does():
    small = dict(embed_dim=16, depth=1, num_heads=2, mlp_dim=16)
    model = create_model("tag_r3d_18", num_classes=5, crop_size=160, **small)
    wrapped = wrap_backbone("torchvision/r3d_18", 5, crop_size=160, **small)
    dc = model.data_config
    assert (dc.num_frames, dc.crop_size, dc.resize_size) == (16, 160, 183) == (
        wrapped.data_config.num_frames, wrapped.data_config.crop_size, wrapped.data_config.resize_size)
    assert (dc.mean, dc.std) == (KINETICS_MEAN, KINETICS_STD)  # the weights' normalisation
    assert create_model("tag_r3d_18", num_classes=5, **small).data_config.resize_size == 128


def test_typo_suggests_the_closest_names():
    with pytest.raises(ValueError, match=r"unknown model 'tag_r2plus1d_34_gym9'\. Did you mean 'tag_r2plus1d_34_gym99'"):
        create_model("tag_r2plus1d_34_gym9")
    with pytest.raises(ValueError, match="Did you mean 'tag_r3d_18'"):
        create_model("tag_r3d18")
    with pytest.raises(ValueError, match="unknown model 'zzz'. See taghead.list_models"):
        create_model("zzz")
    with pytest.raises(ValueError, match="Did you mean 'tag_x3d_m'"):
        get_pretrained_cfg("tag_x3d")


def test_pretrained_without_weights_says_how_to_get_them():
    with pytest.raises(ValueError) as info:
        create_model("tag_r2plus1d_34_gym99", pretrained=True)
    text = str(info.value)
    assert "gym99_best.pth" in text and "taghead convert gym99_best.pth --preset gym99" in text
    assert "pretrained_cfg_overlay=dict(file=" in text and "No Hugging Face Hub repository" in text
    assert "train and name" in text and "no public copy exists yet" in text and "released" not in text
    with pytest.raises(ValueError, match="No TAG-Head weights exist"):
        create_model("tag_r3d_18", pretrained=True)


def test_create_model_records_labels_and_provenance():
    model = create_model(TINY)
    assert model.label_names == list(LABELS) and model.num_classes == 5 and model.architecture == TINY
    assert model.data_config == TINY_CFG.data_config()
    # random weights: TINY_CFG without what describes its weights (their source, licence, dataset)
    assert model.pretrained_cfg == RANDOM_TINY_CFG and get_pretrained_cfg(TINY) == TINY_CFG
    other = create_model(TINY, num_classes=3)  # another class count: the config's labels do not apply
    assert other.num_classes == 3 and other.label_names is None


def _trained_tiny(tmp_path):
    torch.manual_seed(1)
    model = create_model(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    folder = model.save_pretrained(tmp_path / "tiny")
    return model, folder


def test_pretrained_from_local_files(tmp_path, video):
    model, folder = _trained_tiny(tmp_path)
    state = model.state_dict()
    torch.save(state, tmp_path / "tiny.pth")
    torch.save({"state_dict": state}, tmp_path / "tiny_wrapped.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "tiny_parallel.pth")  # nn.DataParallel
    save_checkpoint(dict(epoch=3, global_step=30, model=state, optimizer={}, rng=[]), tmp_path / "last.pt")  # taghead
    with torch.no_grad():
        expected = model(video)
    files = (folder, folder / "model.safetensors", tmp_path / "tiny.pth", tmp_path / "tiny_wrapped.pth",
             tmp_path / "tiny_parallel.pth", tmp_path / "last.pt")
    for i, file in enumerate(files):
        loaded = create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=file)).eval()
        with torch.no_grad():
            assert torch.equal(loaded(video), expected), file
        assert loaded.pretrained_cfg.file == str(file)  # known in memory ...
        saved = loaded.save_pretrained(tmp_path / f"saved{i}")
        text = (saved / CONFIG_NAME).read_text()
        assert "file" not in json.loads(text)["pretrained_cfg"] and str(tmp_path) not in text  # ... never saved
        assert taghead.from_pretrained(saved).pretrained_cfg.file is None


def test_pretrained_with_other_num_classes_reinitialises_the_classifier(tmp_path, video):
    model, folder = _trained_tiny(tmp_path)
    with pytest.warns(UserWarning, match=r"except the classifier \(head\.fc\.weight, head\.fc\.bias\)"):
        loaded = create_model(TINY, pretrained=True, num_classes=3, pretrained_cfg_overlay=dict(file=folder))
    assert loaded.num_classes == 3 and loaded.label_names is None
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        if key.startswith("head.fc."):
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, reference[key]), key
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.forward_head(loaded.forward_features(video), pre_logits=True),
                           model.forward_head(model.forward_features(video), pre_logits=True))


def test_saved_registry_model_rebuilds_from_its_spec(tmp_path, video):
    model, folder = _trained_tiny(tmp_path)
    loaded = taghead.from_pretrained(folder)  # no backbone=: the spec names it
    hub_loaded = create_model(f"hf-hub:{folder}", pretrained=True)
    assert loaded.architecture == TINY and loaded.pretrained_cfg == RANDOM_TINY_CFG and loaded.label_names == list(LABELS)
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video)) and torch.equal(hub_loaded(video), model(video))
    with pytest.raises(ValueError, match="do not pass backbone="):
        taghead.from_pretrained(folder, backbone=torch.nn.Identity())


def test_pretrained_mismatch_and_bad_arguments(tmp_path):
    _, folder = _trained_tiny(tmp_path)
    with pytest.raises(StateDictMismatchError, match=r"linear1\.weight: weights \[64, 32\] vs model \[32, 32\]"):
        create_model(TINY, pretrained=True, mlp_dim=32, pretrained_cfg_overlay=dict(file=folder))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match=r"unknown pretrained_cfg_overlay fields \['fiel'\]"):
        create_model(TINY, pretrained_cfg_overlay=dict(fiel=folder))
    with pytest.raises(ValueError, match="num_classes must be a non-negative int"):
        create_model(TINY, num_classes=-1)
    with pytest.raises(TypeError, match="model_name must be a str"):
        create_model(None)


def test_register_model_rules():
    with pytest.raises(ValueError, match="already registered"):
        register_model(name=TINY)(lambda num_classes: None)
    with pytest.raises(TypeError, match="pretrained_cfg must be a PretrainedCfg"):
        register_model(name="test_bad_cfg", pretrained_cfg={"num_classes": 3})(lambda num_classes: None)

    @register_model
    def test_cfgless_model(num_classes: int, **kwargs):
        return torch.nn.Linear(4, num_classes)

    assert "test_cfgless_model" in list_models("test_cfgless_*")
    with pytest.raises(ValueError, match="has no pretrained config: pass num_classes"):
        create_model("test_cfgless_model")
    with pytest.raises(ValueError, match="has no pretrained config, so pretrained=True"):
        create_model("test_cfgless_model", pretrained=True, num_classes=3)
    assert create_model("test_cfgless_model", num_classes=3).out_features == 3


def _cache_tiny(tmp_path, offline_cache, labels, *, weights=True):
    model, folder = _trained_tiny(tmp_path)
    model.save_pretrained(folder, label_names=labels)
    if not weights:
        (folder / WEIGHTS_NAME).unlink()
    populate_hub_cache(offline_cache, "taghead-test/tiny", folder, "c" * 40)
    shutil.rmtree(folder)
    return model


def test_hf_hub_without_pretrained_builds_random_weights(tmp_path, offline_cache, video):
    model = _cache_tiny(tmp_path, offline_cache, list("abcde"), weights=False)  # only config.json is needed
    random = create_model("hf-hub:taghead-test/tiny")
    assert isinstance(random, VideoClassifier) and random.architecture == TINY and random.label_names == list("abcde")
    assert random.state_dict().keys() == model.state_dict().keys()
    assert not torch.equal(random.state_dict()["head.fc.weight"], model.state_dict()["head.fc.weight"])
    other = create_model("hf-hub:taghead-test/tiny", num_classes=3)
    assert other.num_classes == 3 and other.label_names is None and other(video).shape == (2, 3)
    head = create_model("hf-hub:taghead-test/tiny", kind="head")
    assert isinstance(head, TAGHead) and head.label_names == list("abcde")
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes must be a non-negative int"):
            create_model("hf-hub:taghead-test/tiny", num_classes=bad)


def test_hf_hub_with_pretrained_loads_the_weights(tmp_path, offline_cache, video):
    model = _cache_tiny(tmp_path, offline_cache, list("abcde"))
    loaded = create_model("hf-hub:taghead-test/tiny", pretrained=True)
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))
    assert loaded.label_names == list("abcde")


def test_pretrained_from_hf_hub_id_keeps_the_saved_label_names(tmp_path, offline_cache, video):
    model = _cache_tiny(tmp_path, offline_cache, list("vwxyz"))
    loaded = create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id="taghead-test/tiny")).eval()
    assert loaded.label_names == list("vwxyz")  # config.json's, not the registered config's
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))
    fresh = create_model(TINY)
    load_pretrained(fresh, TINY_CFG.with_overlay(dict(hf_hub_id="taghead-test/tiny")))
    assert fresh.label_names == list("vwxyz")


def test_local_files_only_says_what_to_change(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(FileNotFoundError) as info:
        taghead.from_pretrained("taghead-test/not-downloaded", local_files_only=True, cache_dir=cache)
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and "local_files_only=True was passed" in message
    assert "pass local_files_only=False" in message and "HF_HUB_OFFLINE" not in message


def test_a_card_saved_from_random_weights_claims_no_results(tmp_path):
    """The registered config describes the published weights (source, dataset, reported results); a model built
    without loading them must not carry that description into its saved card, one that loaded them must."""
    reported = dataclasses.replace(TINY_CFG, metrics={"top1_accuracy": 91.5}, preset="gym99")
    random_card = (create_model(TINY, pretrained_cfg=reported).save_pretrained(tmp_path / "random") / "README.md").read_text()
    assert "91.5" not in random_card and "Reported results" not in random_card and "made by the test suite" not in random_card
    weights = create_model(TINY).save_pretrained(tmp_path / "weights")
    loaded = create_model(TINY, pretrained=True, pretrained_cfg=dataclasses.replace(reported, file=str(weights)))
    loaded_card = (loaded.save_pretrained(tmp_path / "loaded") / "README.md").read_text()
    assert "## Reported results" in loaded_card and "| 91.5 |" in loaded_card
