"""Published backbone weights: the tags against their sources (torchvision, pytorchvideo, timm, IG-65M), loading
through the ordinary caches (files in the published layout and under the published names in a temporary
TORCH_HOME or Hugging Face cache), local files, wrong layouts, no network, downloads, provenance in saved
models, and BatchNorm settings."""

from __future__ import annotations

import functools
import hashlib
import http.server
import inspect
import json
import re
import socket
import threading
import time
import urllib.error
from pathlib import Path

import pytest
import torch
from _hub_cache import populate_hub_cache
from torch import nn

import taghead
from taghead.backbones import registry as backbone_registry
from taghead.backbones import weights as backbone_weights
from taghead.backbones.registry import get_backbone_weights, list_backbones, split_backbone_name
from taghead.backbones.weights import BackboneWeights, WeightsUnavailableError, torch_hub_cache_path
from taghead.cli import main
from taghead.config import DataConfig
from taghead.layers import configure_batchnorm
from taghead.models.spec import check_backbone_weights
from taghead.weights import CheckpointError, StateDictMismatchError, save_safetensors

TINY = "taghead/tiny_video_cnn"
CLIP = dict(num_frames=8, crop_size=32)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache (``$TORCH_HOME/hub/checkpoints``); any download attempt fails at once."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """``urlopen`` fails as it does without network; the list collects the URLs that were tried."""
    tried: list[str] = []

    def urlopen(request, timeout=None):
        tried.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(backbone_weights.urllib.request, "urlopen", urlopen)
    return tried


def _random_state(module: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The module's state dict (names, shapes, dtypes) on the CPU with random values (variances positive,
    counters 7)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if not value.is_floating_point():
            state[key] = torch.full(value.shape, 7, dtype=value.dtype)
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.1
            if key.endswith("running_var"):
                state[key] = state[key].abs() + 0.5
    return state


def _assert_loaded(module: nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    own = module.state_dict()
    for key, value in state.items():
        if not key.startswith(skip):
            assert torch.equal(own[key], value), key


# -- the tags against their sources -----------------------------------------------------------------------

def test_torchvision_tags_are_torchvision_weight_enums():
    from torchvision.models import get_model_weights

    names = [n for n in list_backbones() if n.startswith("torchvision/")]
    assert len(names) == 9
    for name in names:
        enum = get_model_weights(name.split("/")[1])
        entry = backbone_registry.get_backbone_entry(name)
        assert entry.tags[0] == enum.DEFAULT.name.lower()
        assert sorted(entry.tags) == sorted(w.name.lower() for w in enum)
        for member in enum:
            ours = get_backbone_weights(name, member.name.lower())
            transforms = member.transforms()
            clip_len = int(re.search(r"clip_len=(\d+)", member.meta["_docs"]).group(1))
            dc = ours.data_config
            assert ours.url == member.url and ours.filename == member.url.rsplit("/", 1)[1]
            assert ours.num_classes == len(member.meta["categories"])
            assert dc.num_frames == clip_len and dc.crop_size == transforms.crop_size[0]
            # torchvision resizes to (128, 171) or 256; taghead resizes the shorter side to its first value
            assert dc.resize_size == transforms.resize_size[0] == min(transforms.resize_size)
            assert dc.mean == pytest.approx(transforms.mean) and dc.std == pytest.approx(transforms.std)
            assert ours.hash_prefix == torch.hub.HASH_REGEX.search(ours.filename).group(1)


@pytest.mark.slow
def test_pytorchvideo_tags_are_its_hub_checkpoints_and_clips():
    """URLs from pytorchvideo's ``checkpoint_paths``, its ``checkpoint["model_state"]`` layout, and the clip
    its hub builders' heads pool exactly (run on the meta device, shapes only)."""
    import pytorchvideo.models.hub as hub
    from pytorchvideo.models.hub import csn, r2plus1d, resnet, slowfast, utils, vision_transformers, x3d

    urls = {k: v for m in (csn, r2plus1d, resnet, slowfast, vision_transformers, x3d) for k, v in m.checkpoint_paths.items()}
    names = [n for n in list_backbones() if n.startswith("pytorchvideo/")]
    assert len(names) == 14
    for name in names:
        arch = name.split("/")[1]
        weights = get_backbone_weights(name)
        source = inspect.getsource(inspect.getmodule(getattr(hub, arch)))
        loader = inspect.getsource(utils) if "hub_model_builder(" in source else source
        assert weights.url == urls[arch] and weights.num_classes == 400
        assert weights.state_key == "model_state" and 'checkpoint["model_state"]' in loader
        dc = weights.data_config
        assert (dc.mean, dc.std) == ((0.45,) * 3, (0.225,) * 3)
        if arch.startswith("mvit"):
            config = (vision_transformers.mvit_video_base_config if arch == "mvit_base_16x4"
                      else vision_transformers.mvit_video_base_32x3_config)
            assert (dc.num_frames, dc.crop_size) == (config["temporal_size"], config["spatial_size"])
            continue
        with torch.device("meta"):
            model = getattr(hub, arch)()
        pooled: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

        def record(module, args, out, pooled=pooled):
            pooled.append((tuple(args[0].shape[2:]), tuple(int(k) for k in module.kernel_size)))

        for module in model.modules():
            if isinstance(module, nn.AvgPool3d):
                module.register_forward_hook(record)
        clip = torch.zeros(1, 3, dc.num_frames, dc.crop_size, dc.crop_size, device="meta")
        assert tuple(model([clip[:, :, ::4], clip] if "slowfast" in arch else clip).shape) == (1, 400)
        assert pooled and all(seen == kernel for seen, kernel in pooled), (name, pooled)


def test_ig65m_tags_are_the_four_releases():
    entry = backbone_registry.get_backbone_entry("taghead/r2plus1d_34")
    base = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
    expected = {  # file: (classes, frames) per the IG-65M project's README (REFERENCE.md)
        "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth": (487, 32),
        "r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth": (359, 8),
        "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth": (400, 32),
        "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth": (400, 8),
    }
    assert {w.filename: (w.num_classes, w.data_config.num_frames) for w in entry.weights} == expected
    default = get_backbone_weights("taghead/r2plus1d_34")
    assert default.filename == "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth"  # what the reference loads
    for weights in entry.weights:
        assert weights.url == base + weights.filename and weights.license == "mit"
        assert weights.hash_prefix == torch.hub.HASH_REGEX.search(weights.filename).group(1)
        assert len(weights.hash_prefix) == 8
        dc = weights.data_config  # the IG-65M project's transforms
        assert (dc.crop_size, dc.resize_size) == (112, 128)
        assert dc.mean == (0.43216, 0.394666, 0.37645) and dc.std == (0.22803, 0.22145, 0.216989)


def test_timm_tags_come_from_timm_pretrained_cfgs():
    import timm
    from timm.data import resolve_model_data_config

    names = list_backbones("timm/resnet18.*", pretrained=True)
    assert names == sorted("timm/" + n for n in timm.list_pretrained("resnet18.*"))
    weights = get_backbone_weights("timm/resnet18")  # timm's default tag
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert weights.tag == cfg.tag and weights.hf_hub_id == cfg.hf_hub_id and weights.license == cfg.license
    assert weights.filename == "model.safetensors" and weights.num_classes == cfg.num_classes
    model = timm.create_model("resnet18.a3_in1k")
    timm_data = resolve_model_data_config(model)
    ours = get_backbone_weights("timm/resnet18.a3_in1k").data_config
    assert (ours.crop_size, ours.mean, ours.std) == (timm_data["input_size"][-1], timm_data["mean"], timm_data["std"])
    assert ours.resize_size == int(timm_data["input_size"][-1] / timm_data["crop_pct"])
    with pytest.raises(ValueError, match=r"no published weights tagged 'nope'.*a1_in1k"):
        get_backbone_weights("timm/resnet18.nope")


def test_zoo_models_expect_the_clip_of_their_backbone_weights():
    """The registered TAG models on common backbones describe the input of their backbone's default tag; the
    reference presets keep the reference's normalisation (mean 0.45, std 0.225), as it fine-tunes IG-65M."""
    from taghead.models.pretrained import PRETRAINED_CFGS

    backbones = {"tag_r2plus1d_18": "torchvision/r2plus1d_18", "tag_r3d_18": "torchvision/r3d_18",
                 "tag_slowfast_r50": "pytorchvideo/slowfast_r50", "tag_x3d_m": "pytorchvideo/x3d_m",
                 "tag_i3d_r50": "pytorchvideo/i3d_r50"}
    for model, backbone in backbones.items():
        assert PRETRAINED_CFGS[model].data_config() == get_backbone_weights(backbone).data_config, model
    for preset in ("haa500", "gym99", "gym288"):
        dc = PRETRAINED_CFGS[f"tag_r2plus1d_34_{preset}"].data_config()
        assert (dc.mean, dc.std, dc.resize_size, dc.crop_size) == ((0.45,) * 3, (0.225,) * 3, 128, 112)


def test_names_tags_and_listing():
    listed = list_backbones(pretrained=True)
    assert "taghead/r2plus1d_34.ig65m_clip32" in listed and "pytorchvideo/slowfast_r50.kinetics400" in listed
    assert "torchvision/swin3d_b.kinetics400_imagenet22k_v1" in listed and not any(n.startswith("timm/") for n in listed)
    assert list_backbones("taghead/*", pretrained=True)[0] == "taghead/r2plus1d_34.ig65m_clip32"  # default first
    assert split_backbone_name("torchvision/r2plus1d_18.kinetics400_v1") == ("torchvision/r2plus1d_18", "kinetics400_v1")
    assert split_backbone_name(TINY) == (TINY, None)
    with pytest.raises(ValueError, match=r"no weights tagged 'kinetics'; its tags: \['kinetics400_v1'\]"):
        get_backbone_weights("torchvision/r3d_18.kinetics")
    with pytest.raises(ValueError, match="has no published weights"):
        taghead.create_backbone(TINY, pretrained=True)
    with pytest.raises(ValueError, match=r"neither a weights tag of 'torchvision/r3d_18' nor an existing file; its "
                                         r"tags: \['kinetics400_v1'\]"):
        taghead.create_backbone("torchvision/r3d_18", pretrained="kinetics")
    with pytest.raises(ValueError, match="two tags given"):
        taghead.create_backbone("torchvision/swin3d_b.kinetics400_v1", pretrained="kinetics400_imagenet22k_v1")
    with pytest.raises(ValueError, match="a str without '.'"):
        taghead.backbones.register_backbone("test/has.dot")
    with pytest.raises(ValueError, match="exactly one of url= and hf_hub_id="):
        BackboneWeights("t", "x.pth", 3, DataConfig())


def test_weights_table_of_the_guide_is_the_registry():
    page = (Path(__file__).resolve().parent.parent / "docs" / "guides" / "pretrained-weights.md").read_text()
    table = re.search(r"<!-- weights-table -->\n(.*?)\n<!-- /weights-table -->", page, re.S).group(1)
    assert table == taghead.backbones.backbone_weights_table()


# -- loading through the caches ---------------------------------------------------------------------------

@pytest.mark.slow
def test_ig65m_file_starts_the_reference_presets(torch_home, no_network, tmp_path):
    """The IG-65M layout (487-class fc) under its published name in TORCH_HOME: create_model(preset,
    pretrained_backbone=True) loads every backbone weight, drops the fc, keeps BatchNorm momentum 0.9, the
    reference's normalisation, and records the weights; the saved folder reloads without the cache."""
    with torch.device("meta"):
        layout = taghead.backbones.r2plus1d_34(num_classes=487)
    state = _random_state(layout)
    torch.save(state, torch_home / "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth")

    model = taghead.create_model("tag_r2plus1d_34_haa500", num_classes=5, pretrained_backbone=True,
                                 num_frames=8, mlp_dim=32)
    own = model.backbone.model.state_dict()
    assert set(own) == {k for k in state if not k.startswith("fc.")}  # the adapter dropped fc after loading
    _assert_loaded(model.backbone.model, state, skip=("fc.",))
    assert model.head.fc.out_features == 5 and not no_network
    assert {m.momentum for m in model.backbone.modules() if isinstance(m, nn.BatchNorm3d)} == {0.9}
    assert model.data_config.mean == (0.45, 0.45, 0.45) and model.data_config.num_frames == 8
    assert model.spec["backbone"] == "taghead/r2plus1d_34"
    assert model.spec["backbone_weights"] == {
        "tag": "ig65m_clip32", "filename": "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", "license": "mit",
        "source": "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
                  "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", "dataset": "IG-65M"}

    model.eval().save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["spec"]["backbone_weights"]["tag"] == "ig65m_clip32"
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "`taghead/r2plus1d_34.ig65m_clip32` (IG-65M; licence mit)" in card
    (torch_home / "r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth").unlink()
    reloaded = taghead.from_pretrained(tmp_path / "saved")  # nothing to download: the saved weights are used
    video = torch.randn(1, 3, 8, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(video), model(video))
    assert not no_network


def test_torchvision_weights_load_from_the_torch_hub_cache_as_torchvision_does(torch_home, no_network):
    """torchvision's own loader finds our file in the same place and loads the same weights."""
    from torchvision.models.video import MC3_18_Weights, mc3_18

    with torch.device("meta"):
        layout = mc3_18()
    state = _random_state(layout)
    torch.save(state, torch_home / "mc3_18-a90a0ba3.pth")
    ours = taghead.create_backbone("torchvision/mc3_18.kinetics400_v1", pretrained=True)
    _assert_loaded(ours, state)  # the Kinetics classifier too: it fits the module's
    theirs = mc3_18(weights=MC3_18_Weights.KINETICS400_V1)  # reads the cached file (its hash is not rechecked)
    for key, value in theirs.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
    narrow = taghead.create_backbone("torchvision/mc3_18", pretrained=True, num_classes=7)  # a new classifier
    _assert_loaded(narrow, state, skip=("fc.",))
    assert narrow.fc.out_features == 7 and not no_network


def test_pytorchvideo_weights_load_as_its_hub_loads_them(torch_home, no_network, tmp_path):
    """A ``{"model_state": ...}`` file named as pytorchvideo's; pytorchvideo's hub reads the same file. Wrapped,
    the model takes the weights' clip and records them; the saved folder reloads with the cache gone."""
    import pytorchvideo.models.hub as hub

    with torch.device("meta"):
        layout = hub.x3d_xs()
    state = _random_state(layout)
    torch.save({"model_state": state, "epoch": 1}, torch_home / "X3D_XS.pyth")
    ours = taghead.create_backbone("pytorchvideo/x3d_xs", pretrained=True)
    _assert_loaded(ours, state)
    theirs = hub.x3d_xs(pretrained=True)
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in theirs.state_dict().items())

    model = taghead.wrap_backbone("pytorchvideo/x3d_xs", 3, head="meanpool", pretrained_backbone=True).eval()
    assert model.data_config == get_backbone_weights("pytorchvideo/x3d_xs").data_config  # 4 frames, 160 px
    assert model.spec["backbone_weights"]["tag"] == "kinetics400"
    assert model.spec["backbone_weights"]["filename"] == "X3D_XS.pyth"
    blocks = model.backbone.model.state_dict()
    assert all(torch.equal(blocks[k], v) for k, v in state.items() if k in blocks) and len(blocks) < len(state)
    model.save_pretrained(tmp_path / "saved")
    (torch_home / "X3D_XS.pyth").unlink()
    reloaded = taghead.from_pretrained(tmp_path / "saved")
    video = torch.randn(1, 3, 4, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(video), model(video))
    assert not no_network


def test_timm_weights_load_from_the_hugging_face_cache(offline_cache, tmp_path):
    import timm

    layout = timm.create_model("test_resnet.r160_in1k")
    state = _random_state(layout)
    folder = tmp_path / "repo"
    folder.mkdir()
    save_safetensors(state, folder / "model.safetensors")
    populate_hub_cache(offline_cache, "timm/test_resnet.r160_in1k", folder, "0" * 40)

    ours = taghead.create_backbone("timm/test_resnet", pretrained=True)  # timm's default tag
    _assert_loaded(ours, state)
    theirs = timm.create_model("test_resnet.r160_in1k", pretrained=True)  # timm's own loading, same cache
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in theirs.state_dict().items())
    model = taghead.wrap_backbone("timm/test_resnet.r160_in1k", 3, head="meanpool", pretrained_backbone=True,
                                  num_frames=2)
    assert model.spec["backbone"] == "timm/test_resnet"
    assert model.spec["backbone_weights"]["source"] == "hf-hub:timm/test_resnet.r160_in1k"
    cfg = timm.models.get_pretrained_cfg("test_resnet.r160_in1k")
    assert (model.data_config.crop_size, model.data_config.mean) == (cfg.input_size[-1], cfg.mean)
    with pytest.raises(WeightsUnavailableError, match=r"HF_HUB_OFFLINE=1 is set.*models--timm--test_vit.*"
                                                      r"--pretrained-backbone path/to/model.safetensors"):
        taghead.create_backbone("timm/test_vit", pretrained=True)


# -- local files, wrong layouts ---------------------------------------------------------------------------

def test_local_files_work_wherever_a_tag_does(tmp_path):
    source = taghead.create_backbone(TINY, width=8, num_classes=4)
    state = source.state_dict()
    for name, save in (("a.pth", torch.save), ("b.safetensors", save_safetensors),
                       ("c.pyth", lambda s, p: torch.save({"model_state": s}, p))):
        save(state, tmp_path / name)
        loaded = taghead.create_backbone(TINY, pretrained=tmp_path / name, width=8, num_classes=4)
        _assert_loaded(loaded, state)
        fresh = taghead.create_backbone(TINY, pretrained=str(tmp_path / name), width=8)  # 10 classes: fc dropped
        _assert_loaded(fresh, state, skip=("fc.",))
        assert fresh.fc.out_features == 10 and not torch.equal(fresh.fc.weight[:4], state["fc.weight"])
    model = taghead.wrap_backbone(TINY, 3, head="meanpool", pretrained_backbone=tmp_path / "a.pth",
                                  backbone_kwargs={"width": 8}, **CLIP)
    assert model.spec["backbone_weights"] == {"tag": None, "source": "local file", "filename": "a.pth",
                                              "license": None, "dataset": None}
    _assert_loaded(model.backbone.model, state, skip=("fc.",))
    # a backbone saved from a wrapped model has no classifier at all: fine, it is never loaded anyway
    save_safetensors(model.backbone.model.state_dict(), tmp_path / "features.safetensors")
    again = taghead.create_backbone(TINY, pretrained=tmp_path / "features.safetensors", width=8)
    _assert_loaded(again, state, skip=("fc.",))


def test_wrong_layouts_list_missing_unexpected_and_misshaped_keys(tmp_path):
    state = taghead.create_backbone(TINY, width=8).state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}  # missing
    broken["extra.weight"] = torch.zeros(2)  # unexpected
    broken["stem.0.weight"] = torch.zeros(1, 3, 3, 3, 3)  # mis-shaped
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(StateDictMismatchError) as caught:
        taghead.create_backbone(TINY, pretrained=tmp_path / "broken.pth", width=8)
    message = str(caught.value)
    assert "missing keys (5" in message and "layer3.1.running_mean" in message
    assert "unexpected keys (1" in message and "extra.weight" in message
    assert "stem.0.weight: weights [1, 3, 3, 3, 3] vs model [8, 3, 3, 5, 5]" in message
    with pytest.raises(StateDictMismatchError, match="stem.0.weight"):  # the same through wrap_backbone
        taghead.wrap_backbone(TINY, 3, pretrained_backbone=tmp_path / "broken.pth", backbone_kwargs={"width": 8}, **CLIP)
    torch.save({"model": [1, 2]}, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not tensors"):
        taghead.create_backbone(TINY, pretrained=tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        taghead.create_backbone(TINY, pretrained=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="is a folder.*--init"):
        taghead.create_backbone(TINY, pretrained=tmp_path)
    with pytest.raises(ValueError, match="applies to a backbone given by name"):
        taghead.wrap_backbone(taghead.backbones.tiny_video_cnn(), 3, pretrained_backbone=tmp_path / "broken.pth")


# -- no network, downloads --------------------------------------------------------------------------------

@pytest.fixture
def test_backbone(monkeypatch):
    """Register ``test/tiny`` (the tiny CNN, width 4) with the published weights the test gives it."""
    monkeypatch.setattr(backbone_registry, "_BACKBONES", dict(backbone_registry._BACKBONES))

    def register(url: str, filename: str) -> BackboneWeights:
        weights = BackboneWeights("v1", filename, 6, DataConfig(8, 32, 36), url=url, license="mit", dataset="toy")
        backbone_registry.register_backbone("test/tiny", weights=[weights], classifier="fc", num_classes_kwarg="num_classes")(
            lambda **kw: taghead.backbones.tiny_video_cnn(width=4, **kw))
        return get_backbone_weights("test/tiny")

    return register


def test_without_network_a_clear_error_and_no_hang(torch_home, test_backbone):
    """A URL nobody answers (a local port with no server): the error names the URL, the cache path and the
    flag for a local file, at once; nothing is left in the cache, and nothing falls back to random weights."""
    with socket.socket() as probe:  # a free port on this machine, closed again: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tiny-0123abcd.pth"
    test_backbone(url, "tiny-0123abcd.pth")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        taghead.wrap_backbone("test/tiny", 3, pretrained_backbone=True)
    message = str(caught.value)
    assert time.monotonic() - start < 10
    assert url in message and str(torch_hub_cache_path("tiny-0123abcd.pth")) in message
    assert "--pretrained-backbone path/to/tiny-0123abcd.pth" in message and "taghead weights download test/tiny.v1" in message
    assert list(torch_home.iterdir()) == []


def test_a_stalled_server_times_out(torch_home, test_backbone, monkeypatch):
    test_backbone("http://127.0.0.1:9/tiny-0123abcd.pth", "tiny-0123abcd.pth")
    seen = {}

    def urlopen(request, timeout=None):
        seen["timeout"] = timeout
        raise TimeoutError("timed out")

    monkeypatch.setattr(backbone_weights.urllib.request, "urlopen", urlopen)
    with pytest.raises(WeightsUnavailableError, match="TimeoutError: timed out"):
        taghead.create_backbone("test/tiny", pretrained=True)
    assert seen["timeout"] == backbone_weights.DOWNLOAD_TIMEOUT


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server for the files in ``tmp_path / "served"``; yields its base URL."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_local_file_named_as_published_is_checked_and_recorded(tmp_path, torch_home, test_backbone, no_network):
    """The published name claims the published file: a file whose hash does not fit is refused; the right one is
    recorded with its tag and needs neither the cache nor the network."""
    state = taghead.backbones.tiny_video_cnn(width=4).state_dict()
    torch.save(state, tmp_path / "payload.pth")
    name = f"tiny-{hashlib.sha256((tmp_path / 'payload.pth').read_bytes()).hexdigest()[:8]}.pth"
    test_backbone(f"http://127.0.0.1:9/{name}", name)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "payload.pth").rename(tmp_path / "elsewhere" / name)
    model = taghead.wrap_backbone("test/tiny", 3, head="meanpool", pretrained_backbone=tmp_path / "elsewhere" / name)
    assert model.spec["backbone_weights"] == {"tag": "v1", "source": f"http://127.0.0.1:9/{name}", "filename": name,
                                              "license": "mit", "dataset": "toy"}
    assert model.data_config == DataConfig(8, 32, 36)  # the tag's clip
    _assert_loaded(model.backbone.model, state, skip=("fc.",))
    torch.save({k: v + 1 for k, v in state.items()}, tmp_path / name)
    with pytest.raises(CheckpointError, match=f"SHA-256 does not start with '{name[5:13]}'"):
        taghead.create_backbone("test/tiny", pretrained=tmp_path / name)
    assert not no_network and list(torch_home.iterdir()) == []


def test_download_checks_the_hash_and_fills_the_torch_hub_cache(torch_home, test_backbone, file_server, capsys):
    root, base = file_server
    state = taghead.backbones.tiny_video_cnn(width=4, num_classes=6).state_dict()  # the published width, 6
    data_path = root / "payload.pth"
    torch.save(state, data_path)
    digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
    good, bad = f"tiny-{digest[:8]}.pth", "tiny-00000000.pth"
    data_path.rename(root / good)
    (root / bad).write_bytes((root / good).read_bytes())

    test_backbone(f"{base}/{bad}", bad)
    with pytest.raises(CheckpointError, match="does not start with '00000000'"):
        taghead.create_backbone("test/tiny", pretrained=True)
    assert list(torch_home.iterdir()) == []  # nothing kept

    backbone_registry._BACKBONES.pop("test/tiny")
    test_backbone(f"{base}/{good}", good)
    assert main(["weights", "download", "test/tiny", "--no-progress"]) == 0
    assert str(torch_home / good) in capsys.readouterr().out
    assert (torch_home / good).read_bytes() == (root / good).read_bytes()
    (root / good).unlink()  # from now on only the cache has it
    published = taghead.create_backbone("test/tiny", pretrained=True)  # as published: a 6-class fc, loaded
    assert published.fc.out_features == 6
    _assert_loaded(published, state)
    assert main(["weights", "list", "test/*"]) == 0
    assert re.search(r"test/tiny\.v1\s+toy\s+6\s+8x32\s+mit\s+yes", capsys.readouterr().out)


# -- BatchNorm ---------------------------------------------------------------------------------------------

def test_configure_batchnorm_sets_every_layer():
    model = taghead.backbones.r2plus1d_34
    with torch.device("meta"):
        net = model()
    layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    assert {(m.momentum, m.eps) for m in layers} == {(0.9, 1e-3)}  # the IG-65M layout
    assert configure_batchnorm(net, momentum=0.1) == len(layers) > 30
    assert {(m.momentum, m.eps) for m in layers} == {(0.1, 1e-3)}
    with pytest.raises(ValueError, match=r"momentum must be None .* or a number in \[0, 1\], got 1.5"):
        configure_batchnorm(net, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be None .* or a number > 0, got 0"):
        configure_batchnorm(net, eps=0)


def test_batchnorm_options_train_as_said_and_survive_saving(tmp_path):
    torch.manual_seed(0)
    video = torch.randn(4, 3, 8, 32, 32) * 3 + 1
    default = taghead.wrap_backbone(TINY, 3, head="meanpool", **CLIP)
    pytorch_sense = taghead.wrap_backbone(TINY, 3, head="meanpool", bn_momentum=0.01, bn_eps=1e-3, **CLIP)
    frozen = taghead.wrap_backbone(TINY, 3, head="meanpool", freeze_bn_stats=True, **CLIP)
    initial = {k: v.clone() for k, v in default.state_dict().items()}
    for model in (default, pytorch_sense, frozen):
        model.load_state_dict(initial)
        model.train()
        model(video)
    stem = [m.backbone.model.stem[1] for m in (default, pytorch_sense, frozen)]
    batch_mean = default.backbone.model.stem[0](video).mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(stem[0].running_mean, 0.1 * batch_mean.detach())
    torch.testing.assert_close(stem[1].running_mean, 0.01 * batch_mean.detach())
    assert torch.equal(stem[2].running_mean, torch.zeros(16)) and not stem[2].training and frozen.head.training
    assert stem[1].eps == 1e-3
    loss = frozen(video).sum()
    loss.backward()
    assert frozen.backbone.model.stem[1].weight.grad is not None  # the affine parameters still train

    frozen.save_pretrained(tmp_path / "frozen")
    pytorch_sense.save_pretrained(tmp_path / "sense")
    for folder, expected in (("frozen", {"momentum": None, "eps": None, "freeze_stats": True}),
                             ("sense", {"momentum": 0.01, "eps": 0.001, "freeze_stats": False})):
        assert json.loads((tmp_path / folder / "config.json").read_text())["spec"]["batchnorm"] == expected
    again = taghead.from_pretrained(tmp_path / "frozen").train()
    assert not again.backbone.model.stem[1].training
    sense = taghead.from_pretrained(tmp_path / "sense")
    assert (sense.backbone.model.stem[1].momentum, sense.backbone.model.stem[1].eps) == (0.01, 1e-3)
    assert "Backbone BatchNorm: momentum 0.01, eps 0.001." in (tmp_path / "sense" / "README.md").read_text()


def test_configs_saved_before_the_optional_spec_keys_still_load(tmp_path):
    model = taghead.wrap_backbone(TINY, 3, head="meanpool", **CLIP).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["spec"]["backbone_weights"], config["spec"]["batchnorm"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = taghead.from_pretrained(tmp_path)
    video = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(video), model(video))
    assert reloaded.spec.get("backbone_weights") is None
    bad = dict(config, spec=dict(config["spec"], backbone_weights={"tag": None, "source": "local file",
                                                                   "filename": "/home/me/secret/a.pth",
                                                                   "license": None, "dataset": None}))
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"names local files.*spec\.backbone_weights\.filename: '/home/me/secret/a\.pth'"):
        taghead.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="filename a base name"):  # the spec's own check, for specs built in Python
        check_backbone_weights(bad["spec"]["backbone_weights"])


# -- the command line --------------------------------------------------------------------------------------

def test_cli_flags_parse_as_documented():
    from taghead.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--data", "synthetic"]).pretrained_backbone is None
    args = parser.parse_args(["train", "--model", "tag_r2plus1d_34_gym99", "--pretrained-backbone", "--data", "synthetic"])
    assert args.pretrained_backbone is True and args.model == "tag_r2plus1d_34_gym99"
    args = parser.parse_args(["train", "--backbone", TINY, "--pretrained-backbone", "w.pth", "--bn-momentum", "0.1",
                              "--freeze-bn-stats"])
    assert (args.pretrained_backbone, args.bn_momentum, args.freeze_bn_stats, args.bn_eps) == ("w.pth", 0.1, True, None)


def test_cli_trains_from_a_local_backbone_file(tmp_path, capsys):
    source = taghead.create_backbone(TINY, width=4)
    save_safetensors(source.state_dict(), tmp_path / "pretrained.safetensors")
    common = ["train", "--data", "synthetic", "--num-classes", "3", "--train-samples", "4", "--val-samples", "2",
              "--num-frames", "8", "--crop-size", "32", "--epochs", "1", "--batch-size", "2", "--lr", "1e-9",
              "--backbone", TINY, "--backbone-kwargs", "width=4", "--head", "meanpool", "--no-progress",
              "--no-tensorboard"]
    assert main([*common, "--pretrained-backbone", str(tmp_path / "pretrained.safetensors"), "--freeze-bn-stats",
                 "--output", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["spec"]["backbone_weights"]["filename"] == "pretrained.safetensors"
    assert config["spec"]["batchnorm"]["freeze_stats"] is True
    trained = taghead.from_pretrained(tmp_path / "run" / "best")
    for key, value in source.state_dict().items():  # lr 1e-9 and frozen BN statistics: still the file's weights
        if not key.startswith("fc."):
            torch.testing.assert_close(trained.backbone.model.state_dict()[key], value, atol=1e-6, rtol=0)
    capsys.readouterr()
    assert main([*common, "--pretrained-backbone", "--output", str(tmp_path / "x")]) == 2
    assert "has no published weights" in capsys.readouterr().err
    assert main(["train", "--data", "synthetic", "--init", str(tmp_path / "run" / "best"), "--pretrained-backbone",
                 "--no-progress"]) == 2
    assert "--pretrained-backbone is for a new model" in capsys.readouterr().err
