"""Hub I/O: save/load round trips, head-only checkpoints, model card, push (mocked), offline cache, errors."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import pytest
import torch
from _hub_cache import populate_hub_cache
from huggingface_hub import HfApi, ModelCard
from torch import nn

import taghead
from taghead import DataConfig, MeanPoolHead, TAGHead, VideoClassifier
from taghead.backbones import tiny_video_cnn
from taghead.config import PretrainedCfg
from taghead.hub import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, model_card, read_config
from taghead.models.loading import config_for, from_pretrained
from taghead.models.pretrained import reference_cfg
from taghead.weights import CheckpointError, StateDictMismatchError, save_safetensors

# 8 frames of 32x32 -> TinyVideoCNN(width=8) features [B, 32, 2, 4, 4]
C, GRID, CLIP = 32, (2, 4, 4), (8, 32, 32)
LABELS = ["salto", "twist", "split", "handstand", "leap"]


class TinyFeatures(nn.Module):
    """Backbone A: a TinyVideoCNN used as a feature extractor."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = tiny_video_cnn(width=8)
        del self.cnn.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.forward_features(x)


class PatchFeatures(nn.Module):
    """Backbone B: a single strided 3D convolution (tubelet embedding) with the same output shape."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, C, kernel_size=(4, 8, 8), stride=(4, 8, 8))
        self.norm = nn.BatchNorm3d(C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(x))


def _randomise_buffers(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so that buffers matter in the round trip."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _head(num_classes: int = 5, **kw) -> TAGHead:
    return TAGHead(C, *GRID, num_classes=num_classes, mlp_dim=64, num_heads=4, **kw)


def _model(seed: int = 0) -> VideoClassifier:
    torch.manual_seed(seed)
    backbone = TinyFeatures()
    _randomise_buffers(backbone, seed)
    data = DataConfig(num_frames=CLIP[0], crop_size=CLIP[1], resize_size=36)
    return VideoClassifier(backbone, _head(), data, label_names=LABELS).eval()


@pytest.fixture
def video() -> torch.Tensor:
    return torch.randn(2, 3, *CLIP, generator=torch.Generator().manual_seed(1))


def test_model_round_trip_gives_identical_outputs(tmp_path, video):
    model = _model(seed=0)
    folder = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME])
    # Written like plainly created files (umask applies), not with the temporary file's private 0o600.
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(
        [CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME], 0o666 & ~umask)

    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["kind"] == "model" and config["taghead_version"] == taghead.__version__
    assert config["num_classes"] == 5 and config["label_names"] == LABELS
    assert config["data_config"] == model.data_config.to_dict()
    assert config["spec"]["backbone"] is None and config["spec"]["head"] == "tag"
    assert config["spec"]["head_config"] == model.head.get_config()

    # A user-supplied backbone is passed again (freshly initialised); all weights come from the folder.
    fresh = TinyFeatures()
    loaded = taghead.from_pretrained(folder, backbone=fresh)
    assert isinstance(loaded, VideoClassifier) and loaded.backbone is fresh and not loaded.training
    assert loaded.label_names == LABELS and loaded.data_config == model.data_config
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    same = VideoClassifier.from_pretrained(folder, backbone=TinyFeatures())
    with torch.no_grad():
        assert torch.equal(same(video), model(video))


def test_user_backbone_checkpoint_needs_backbone(tmp_path):
    folder = _model().save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"user-supplied backbone.*backbone=my_backbone"):
        taghead.from_pretrained(folder)


def test_head_only_checkpoint_attaches_to_another_backbone(tmp_path, video):
    torch.manual_seed(0)
    head = _head().eval()
    backbone_a, backbone_b = TinyFeatures().eval(), PatchFeatures().eval()
    _randomise_buffers(backbone_b, seed=3)
    with torch.no_grad():
        feats_a, feats_b = backbone_a(video), backbone_b(video)
    assert feats_a.shape == feats_b.shape == (2, C, *GRID)

    head.save_pretrained(tmp_path / "head", label_names=LABELS)
    config = read_config(tmp_path / "head")
    assert config["kind"] == "head" and config["spec"] == {"head": "tag", "head_config": head.get_config()}
    assert config["label_names"] == LABELS and config["data_config"] is None

    loaded = TAGHead.from_pretrained(tmp_path / "head")
    assert isinstance(loaded, TAGHead) and loaded.label_names == LABELS
    model_b = VideoClassifier(backbone_b, loaded, DataConfig(num_frames=8, crop_size=32)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(feats_a), head(feats_a))
        assert torch.equal(model_b(video), head(feats_b))
    # The generic loader returns the head too.
    assert isinstance(taghead.from_pretrained(tmp_path / "head"), TAGHead)


def test_head_can_be_taken_from_a_full_model_checkpoint(tmp_path, video):
    model = _model(seed=4)
    model.save_pretrained(tmp_path / "m")
    head = TAGHead.from_pretrained(tmp_path / "m")
    assert head.label_names == LABELS
    feats = model.forward_features(video)
    with torch.no_grad():
        assert torch.equal(head(feats), model.head(feats))


def test_loading_the_wrong_kind_is_an_error(tmp_path):
    MeanPoolHead(C, *GRID, num_classes=3).save_pretrained(tmp_path / "mp")
    with pytest.raises(TypeError, match="holds a MeanPoolHead, not a TAGHead"):
        TAGHead.from_pretrained(tmp_path / "mp")
    with pytest.raises(ValueError, match="head-only checkpoint"):
        VideoClassifier.from_pretrained(tmp_path / "mp")
    with pytest.raises(ValueError, match="head-only checkpoint; backbone= does not apply"):
        taghead.from_pretrained(tmp_path / "mp", backbone=TinyFeatures())


def test_num_classes_override_reinitialises_only_the_classifier(tmp_path, video):
    model = _model(seed=5)
    model.save_pretrained(tmp_path / "m")
    with pytest.warns(UserWarning, match=r"except the classifier \(head\.fc\.weight, head\.fc\.bias\), which was "
                      r"re-initialised for num_classes=3"):  # nothing else follows the class count in TAG-Head
        loaded = taghead.from_pretrained(tmp_path / "m", backbone=TinyFeatures(), num_classes=3)
    assert loaded.num_classes == 3 and loaded.head.fc.weight.shape == (3, C) and loaded.label_names is None
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        if not key.startswith("head.fc."):
            assert torch.equal(value, reference[key]), key
    with torch.no_grad():
        assert torch.equal(loaded.forward_head(loaded.forward_features(video), pre_logits=True),
                           model.forward_head(model.forward_features(video), pre_logits=True))


def _front_matter(text: str) -> str:
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "model card has no YAML front matter"
    return match.group(1)


def test_model_card_metadata_and_usage_snippet_runs(tmp_path, video):
    model = _model(seed=6)
    model.pretrained_cfg = reference_cfg("gym99")
    folder = model.save_pretrained(tmp_path / "m")
    card = ModelCard.load(folder / MODEL_CARD_NAME)
    assert card.data.library_name == "taghead"
    assert {"video-classification", "action-recognition", "taghead", "tag"} <= set(card.data.tags)
    assert card.data.license == "mit" and card.data.datasets == ["finegym"]
    assert card.data.metrics == ["top1_accuracy", "mean_class_accuracy"]  # the names the results are given under
    text = (folder / MODEL_CARD_NAME).read_text()
    assert "95.6" in text and "93.8" in text and "arXiv:2604.11498" in text and "not re-measured" in text
    assert "reported in the TAG-Head paper" in text and "Input: clips of 8 frames" in text

    # The usage snippet is real code: run it against this folder.
    snippet = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    assert "taghead.from_pretrained(" in snippet and "backbone=my_backbone" in snippet
    snippet = snippet.replace("path/to/this/folder", str(folder)).replace(
        "torch.randn(1, 3, 8, 32, 32)", "torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))")
    scope: dict = {"my_backbone": TinyFeatures()}
    exec(compile(snippet, "model-card-snippet", "exec"), scope)
    assert scope["probs"].shape == (1, 5) and torch.allclose(scope["probs"].sum(), torch.tensor(1.0))

    # A model without known provenance has no licence/dataset claims; a head card says how to attach it.
    plain = _model(seed=6)
    plain_card = ModelCard.load(plain.save_pretrained(tmp_path / "p") / MODEL_CARD_NAME)
    assert plain_card.data.license is None and plain_card.data.datasets is None and plain_card.data.metrics is None
    head_card = (_head().save_pretrained(tmp_path / "h") / MODEL_CARD_NAME).read_text()
    assert "library_name: taghead" in _front_matter(head_card)
    assert f"[B, {C}, {GRID[0]}, {GRID[1]}, {GRID[2]}]" in head_card and "VideoClassifier(my_backbone" in head_card
    assert "Input:" not in head_card  # no data config given: nothing said about the input


def test_model_card_of_own_weights_claims_no_paper():
    model = _model()
    model.pretrained_cfg = PretrainedCfg(num_classes=5, num_frames=8, crop_size=32, metrics={"mAP": 41.0},
                                         dataset="my-clips", citation="Doe, J. My gym model. 2026.")
    text = model_card(config_for(model))
    card = ModelCard(text)
    assert card.data.metrics == ["mAP"] and card.data.datasets == ["my-clips"]
    assert "| my-clips | - | mAP | 41.0 |" in text and "not re-measured" in text
    assert "paper" not in text and "TAG-Head: Time-Aligned" not in text and "arXiv" not in text
    assert "## Citation\n\nDoe, J. My gym model. 2026.\n" in text and "```bibtex" not in text
    model.pretrained_cfg = PretrainedCfg(num_classes=5, num_frames=8, crop_size=32, citation="@misc{me, title={Mine}}")
    text = model_card(config_for(model))
    assert "```bibtex\n@misc{me, title={Mine}}\n```" in text and "TAG-Head: Time-Aligned" not in text
    assert "## Reported results" not in text and "metrics:" not in _front_matter(text)


def test_head_card_describes_the_given_data_config(tmp_path):
    dc = DataConfig(num_frames=8, crop_size=32, resize_size=36)
    folder = _head().save_pretrained(tmp_path / "h", data_config=dc)
    text = (folder / MODEL_CARD_NAME).read_text()
    assert "Input: clips of 8 frames sampled uniformly over the video, shorter side resized to 36, centre crop " \
           "32x32" in text
    assert read_config(folder)["data_config"] == dc.to_dict()
    with pytest.raises(TypeError, match="data_config must be a DataConfig, got dict"):
        _head().save_pretrained(tmp_path / "h2", data_config=dc.to_dict())


def test_push_to_hub_calls_hf_api(monkeypatch, video):
    calls: dict = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = dict(repo_id=repo_id, token_attr=self.token, **kwargs)
        return f"https://huggingface.co/{repo_id}"

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = dict(repo_id=repo_id, **kwargs)
        calls["files"] = sorted(os.listdir(folder_path))
        calls["config"] = json.loads(open(os.path.join(folder_path, CONFIG_NAME)).read())
        calls["card"] = open(os.path.join(folder_path, MODEL_CARD_NAME)).read()
        from taghead.weights import load_safetensors

        calls["weights"] = load_safetensors(os.path.join(folder_path, WEIGHTS_NAME))
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    model = _model(seed=7)
    out = model.push_to_hub("my-org/tag-tiny", private=True, token="hf_secret", commit_message="first upload")
    assert out == "commit-info"
    assert calls["create_repo"]["repo_id"] == "my-org/tag-tiny" and calls["create_repo"]["private"] is True
    assert calls["create_repo"]["token"] == "hf_secret" and calls["create_repo"]["token_attr"] == "hf_secret"
    assert calls["create_repo"]["exist_ok"] is True
    up = calls["upload_folder"]
    assert up["repo_id"] == "my-org/tag-tiny" and up["commit_message"] == "first upload" and up["token"] == "hf_secret"
    assert calls["files"] == sorted([CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME])
    assert calls["config"]["label_names"] == LABELS
    assert 'taghead.from_pretrained("my-org/tag-tiny"' in calls["card"]
    assert calls["weights"].keys() == model.state_dict().keys()
    assert all(torch.equal(calls["weights"][k], v) for k, v in model.state_dict().items())

    _head().push_to_hub("my-org/tag-head", token="hf_secret")
    assert calls["upload_folder"]["repo_id"] == "my-org/tag-head" and calls["config"]["kind"] == "head"
    assert calls["create_repo"]["private"] is None


def test_offline_load_by_repo_id_from_cache(tmp_path, offline_cache, video):
    model, head = _model(seed=8), _head().eval()
    model.save_pretrained(tmp_path / "m")
    head.save_pretrained(tmp_path / "h")
    populate_hub_cache(offline_cache, "taghead-test/tiny-model", tmp_path / "m", "a" * 40)
    populate_hub_cache(offline_cache, "taghead-test/tiny-head", tmp_path / "h", "b" * 40)
    shutil.rmtree(tmp_path / "m")
    shutil.rmtree(tmp_path / "h")

    loaded = taghead.from_pretrained("taghead-test/tiny-model", backbone=TinyFeatures())
    loaded_head = TAGHead.from_pretrained("taghead-test/tiny-head")
    feats = model.forward_features(video)
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))
        assert torch.equal(loaded_head(feats), head(feats))


def test_offline_missing_repo_says_not_cached_and_how_to_fix(offline_cache):
    with pytest.raises(FileNotFoundError) as info:
        taghead.from_pretrained("taghead-test/not-downloaded")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert "unset HF_HUB_OFFLINE" in message and "hf download taghead-test/not-downloaded" in message


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*its folder .* does not exist either"):
        taghead.from_pretrained(str(tmp_path / "no" / "such" / "dir"))  # a path, not a Hub id: nothing downloaded
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        taghead.from_pretrained(tmp_path / "file.bin")
    with pytest.raises(NotADirectoryError):
        _head().save_pretrained(tmp_path / "file.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        taghead.from_pretrained(tmp_path / "empty")
    with pytest.raises(TypeError, match="expected a taghead VideoClassifier or a head"):
        config_for(nn.Linear(2, 2))


def test_truncated_weights_and_corrupt_config_are_clear_errors(tmp_path):
    folder = _head().save_pretrained(tmp_path / "h")
    weights = folder / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        TAGHead.from_pretrained(folder)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        TAGHead.from_pretrained(folder)
    (folder / CONFIG_NAME).write_text('{"kind": "head", "spec": {')
    with pytest.raises(ValueError, match="not valid JSON"):
        TAGHead.from_pretrained(folder)
    (folder / CONFIG_NAME).write_text('{"kind": "engine", "spec": {}, "num_classes": 3}')
    with pytest.raises(ValueError, match="kind must be one of"):
        TAGHead.from_pretrained(folder)


def test_config_weights_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    head = _head()
    folder = head.save_pretrained(tmp_path / "h")
    state = dict(head.state_dict())
    del state["norm.bias"]  # missing
    state["extra.weight"] = torch.zeros(3)  # unexpected
    state["fc.weight"] = torch.zeros(7, C)  # shape mismatch
    save_safetensors(state, folder / WEIGHTS_NAME)
    with pytest.raises(StateDictMismatchError) as info:
        TAGHead.from_pretrained(folder)
    err = info.value
    assert err.missing == ["norm.bias"] and err.unexpected == ["extra.weight"]
    assert err.mismatched == [("fc.weight", (7, C), (5, C))]
    text = str(err)
    assert "missing keys (1" in text and "unexpected keys (1" in text and "fc.weight: weights [7, 32] vs model [5, 32]" in text

    # A config that disagrees with intact weights (a different feed-forward width) is caught the same way.
    folder = _head().save_pretrained(tmp_path / "h2")
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["spec"]["head_config"]["mlp_dim"] = 48
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(StateDictMismatchError, match=r"transformer\.layers\.0\.linear1\.weight: weights \[64, 32\] vs model \[48, 32\]"):
        TAGHead.from_pretrained(folder)


def _contents(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_is_atomic_and_overwrites(tmp_path, monkeypatch):
    folder = tmp_path / "h"
    _head().save_pretrained(folder)
    before = _contents(folder)
    head2 = _head(num_classes=3)

    # The disk fills up while the last file (the model card) is written: no file of the folder changes.
    write_text = pathlib.Path.write_text

    def failing_write_text(self, *args, **kwargs):
        if self.name.startswith(f".{MODEL_CARD_NAME}."):
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="No space left"):
        head2.save_pretrained(folder)
    assert _contents(folder) == before  # old weights, config and card; no temporary files left
    monkeypatch.undo()

    head2.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == sorted([CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME])  # no temp files left
    assert from_pretrained(folder).num_classes == 3


def test_a_failure_before_writing_leaves_the_old_folder(tmp_path, monkeypatch):
    model = _model()
    folder = model.save_pretrained(tmp_path / "m")
    before = _contents(folder)
    model.reset_classifier(3)
    # metrics not a dict; set as the raw provenance (the pretrained_cfg setter would refuse a dict at once)
    model.weights_cfg = dict(reference_cfg("gym99").to_dict(), metrics=[["top1", 50.0]])
    with pytest.raises(ValueError, match=r"PretrainedCfg\.metrics must be a dict of metric name -> number.*"
                                         r"got \[\['top1', 50\.0\]\]"):
        model.save_pretrained(folder)
    assert _contents(folder) == before

    def broken_card(config, *, repo_id=None):
        raise RuntimeError("card template failed")

    model.weights_cfg = None
    monkeypatch.setattr(taghead.hub, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="card template failed"):
        model.save_pretrained(folder)
    assert _contents(folder) == before
    with pytest.raises(RuntimeError):
        model.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists()  # nothing written, not even the folder


def test_label_names_must_be_one_str_per_class(tmp_path):
    model, head = _model(), _head()
    for module, labels in ((model, "abcde"), (head, "xyzuv")):
        with pytest.raises(ValueError, match=rf"one name per class \(5\) as a list of str, got '{labels}' \(a str\)"):
            module.save_pretrained(tmp_path / "x", label_names=labels)
    with pytest.raises(ValueError, match=r"one name per class \(5\), got 2 names"):
        head.save_pretrained(tmp_path / "x", label_names=["a", "b"])
    with pytest.raises(ValueError, match=r"label_names must be strings, got \[1, 2\]"):
        model.save_pretrained(tmp_path / "x", label_names=[1, 2, "c", "d", "e"])
    assert not (tmp_path / "x").exists()
    config = config_for(model)
    config["label_names"] = "abcde"  # a hand-edited config.json
    with pytest.raises(ValueError, match="as a list of str, got 'abcde'"):
        taghead.hub.save_folder(tmp_path / "y", config, model.state_dict())


def test_replaced_head_is_what_is_saved(tmp_path, video):
    torch.manual_seed(0)
    model = taghead.wrap_backbone(tiny_video_cnn(width=8), 5, num_frames=8, crop_size=32, mlp_dim=64, num_heads=4)
    assert model.spec["head"] == "tag"
    model.head = MeanPoolHead(model.head.in_channels, *model.head.grid, num_classes=5)
    folder = model.save_pretrained(tmp_path / "m")
    spec = read_config(folder)["spec"]
    assert spec["head"] == "meanpool" and spec["head_config"] == model.head.get_config()
    loaded = taghead.from_pretrained(folder)  # the registered backbone and the new head, from the folder alone
    assert isinstance(loaded.head, MeanPoolHead)
    with torch.no_grad():
        assert torch.equal(loaded(video), model.eval()(video))

    # A head the registry cannot rebuild is saved as such (and loads through load_weights).
    model.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 2 * 4 * 4, 5))
    model.head.num_classes = 5
    spec = read_config(model.save_pretrained(tmp_path / "c"))["spec"]
    assert spec["head"] is None and spec["head_config"] is None


def test_unserialisable_spec_is_refused(tmp_path):
    model = _model()
    model.spec = {"backbone": None, "adapter": None, "head": "tag", "backbone_kwargs": {"fn": print}}
    with pytest.raises(TypeError, match="JSON-serialisable"):
        model.save_pretrained(tmp_path / "m")


def _changed_tiny_cnn() -> nn.Module:
    """A tiny CNN with one activation replaced: no registered builder makes it, so it is not recognised."""
    model = tiny_video_cnn(width=8)
    model.layer3[2] = nn.GELU()
    return model


def test_wrapped_user_module_round_trip(tmp_path, video):
    torch.manual_seed(9)
    model = taghead.wrap_backbone(_changed_tiny_cnn(), num_classes=4, num_frames=8, crop_size=32,
                                  mlp_dim=64, num_heads=4).eval()
    assert model.spec["backbone"] is None and model.spec["adapter"] is not None
    folder = model.save_pretrained(tmp_path / "w")
    with pytest.raises(ValueError, match="backbone=my_backbone"):
        taghead.from_pretrained(folder)
    loaded = taghead.from_pretrained(folder, backbone=_changed_tiny_cnn())
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))

    # The same module without the change is the registered taghead/tiny_video_cnn: the folder alone rebuilds it.
    torch.manual_seed(9)
    known = taghead.wrap_backbone(tiny_video_cnn(width=8), num_classes=4, num_frames=8, crop_size=32,
                                  mlp_dim=64, num_heads=4).eval()
    assert (known.spec["backbone"], known.spec["backbone_kwargs"]) == ("taghead/tiny_video_cnn", {"width": 8})
    loaded = taghead.from_pretrained(known.save_pretrained(tmp_path / "k"))
    with torch.no_grad():
        assert torch.equal(loaded(video), known(video))
    with pytest.raises(ValueError, match="rebuilds its own backbone"):
        taghead.from_pretrained(tmp_path / "k", backbone=tiny_video_cnn(width=8))


def test_custom_head_factory_loads_through_load_weights(tmp_path, video):
    def factory(in_channels, t, h, w, *, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * t * h * w, num_classes))

    model = taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes=3, head=factory, num_frames=8, crop_size=32,
                                  backbone_kwargs=dict(width=8)).eval()
    folder = model.save_pretrained(tmp_path / "c")
    assert read_config(folder)["spec"]["head"] is None
    with pytest.raises(ValueError, match=r"custom head.*taghead\.hub\.load_weights"):
        taghead.from_pretrained(folder)
    fresh = taghead.wrap_backbone("taghead/tiny_video_cnn", num_classes=3, head=factory, num_frames=8, crop_size=32,
                                  backbone_kwargs=dict(width=8)).eval()
    taghead.hub.load_weights(fresh, folder)
    with torch.no_grad():
        assert torch.equal(fresh(video), model(video))
