"""Pretrained 🤗 Transformers backbones by Hub id, through a prepared Hugging Face cache (HF_HUB_OFFLINE=1).

Each family is built at a small config in the class its published checkpoint has (VideoMAEForPreTraining,
...ForVideoClassification, VJEPA2Model, XCLIPModel), saved by transformers' own ``save_pretrained`` (which writes the
original key names: VideoMAE's ``q_bias``, ViViT's ``encoder.layer.``), given the published preprocessor config, and
placed in the cache under the published repository id; taghead loads it through the same path as a download. The
oracle is transformers itself: its ``from_pretrained`` on the same files, and its processor classes on the same
preprocessor configs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from _hub_cache import populate_hub_cache
from safetensors.torch import load_file
from test_transformers_backbones import CONFIGS

import taghead
from taghead.adapters import adapt
from taghead.backbones import WeightsUnavailableError, get_backbone_weights
from taghead.backbones.transformers import HUB_FAMILIES
from taghead.backbones.transformers_hub import checkpoint_data_config, parse_hub_id
from taghead.cli import main
from taghead.weights import StateDictMismatchError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
_RESIZE_224 = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}
# The preprocessor configs of the published repositories, as the Hub shows them:
# huggingface.co/facebook/timesformer-base-finetuned-k400/blob/4022b66.../preprocessor_config.json ("update processor
# params"; the k600 repository has the same values), google/vivit-b-16x2-kinetics400 (commit 8a7171a, "Update
# preprocessor_config.json (#2)"), microsoft/xclip-base-patch32/blob/main (e437ef9, a legacy VideoMAEFeatureExtractor
# file: "size": 224, no crop_size). MCG-NJU's VideoMAE repositories: the VideoMAEFeatureExtractor file with ImageNet
# statistics that their fine-tuned copies on the Hub carry. V-JEPA 2: VJEPA2VideoProcessor at 256 pixels.
PUBLISHED_PROCESSORS = {
    "MCG-NJU/videomae-base": {"feature_extractor_type": "VideoMAEFeatureExtractor", **_IMAGENET, **_RESIZE_224,
                              "do_resize": True, "do_center_crop": True, "do_normalize": True, "resample": 2},
    "facebook/timesformer-base-finetuned-k400": {"image_processor_type": "VideoMAEImageProcessor", "image_mean": [0.45] * 3,
                                                 "image_std": [0.225] * 3, "rescale_factor": 0.00392156862745098,
                                                 **_RESIZE_224},
    "google/vivit-b-16x2-kinetics400": {"image_processor_type": "ViViTImageProcessor", "image_mean": [0.5] * 3,
                                        "image_std": [0.5] * 3, "rescale_factor": 0.00784313725490196, **_RESIZE_224},
    "facebook/vjepa2-vitl-fpc64-256": {"video_processor_type": "VJEPA2VideoProcessor", "crop_size": 256},
    "microsoft/xclip-base-patch32": {"feature_extractor_type": "VideoMAEFeatureExtractor", **_IMAGENET, "size": 224,
                                     "processor_class": "XCLIPProcessor", "resample": 2},
}
PUBLISHED_PROCESSORS["MCG-NJU/videomae-base-finetuned-kinetics"] = PUBLISHED_PROCESSORS["MCG-NJU/videomae-base"]
PUBLISHED_PROCESSORS["facebook/timesformer-base-finetuned-k600"] = PUBLISHED_PROCESSORS[
    "facebook/timesformer-base-finetuned-k400"]
PUBLISHED_PROCESSORS["facebook/vjepa2-vitl-fpc16-256-ssv2"] = PUBLISHED_PROCESSORS["facebook/vjepa2-vitl-fpc64-256"]
#: frames and crop of the published config.json files
PUBLISHED_CLIPS = {"MCG-NJU/videomae-base": (16, 224), "MCG-NJU/videomae-base-finetuned-kinetics": (16, 224),
                   "facebook/timesformer-base-finetuned-k400": (8, 224), "facebook/timesformer-base-finetuned-k600": (8, 224),
                   "google/vivit-b-16x2-kinetics400": (32, 224), "facebook/vjepa2-vitl-fpc64-256": (64, 256),
                   "facebook/vjepa2-vitl-fpc16-256-ssv2": (16, 256), "microsoft/xclip-base-patch32": (8, 224)}
#: the transformers video processor that reads each family's preprocessor config (X-CLIP's names VideoMAE's)
VIDEO_PROCESSORS = {"videomae": "VideoMAEVideoProcessor", "timesformer": "TimesformerVideoProcessor",
                    "vivit": "VivitVideoProcessor", "vjepa2": "VJEPA2VideoProcessor",
                    "xclip_vision": "VideoMAEVideoProcessor"}


def _config(family: str, **extra):
    config_class, small = CONFIGS[family]
    return getattr(transformers, config_class)(**{**small, **extra})


def published_model(repo_id: str) -> torch.nn.Module:
    """A small model in the class the repository publishes, random weights (seeded)."""
    torch.manual_seed(0)
    if repo_id == "MCG-NJU/videomae-base":
        return transformers.VideoMAEForPreTraining(_config(
            "videomae", use_mean_pooling=False, decoder_hidden_size=16, decoder_num_attention_heads=2,
            decoder_intermediate_size=32, decoder_num_hidden_layers=1))
    if repo_id == "MCG-NJU/videomae-base-finetuned-kinetics":
        return transformers.VideoMAEForVideoClassification(_config("videomae", num_labels=4))
    if repo_id.startswith("facebook/timesformer"):
        return transformers.TimesformerForVideoClassification(_config("timesformer", num_labels=4))
    if repo_id.startswith("google/vivit"):
        return transformers.VivitForVideoClassification(_config("vivit", num_labels=4))
    if repo_id == "facebook/vjepa2-vitl-fpc64-256":
        return transformers.VJEPA2Model(_config("vjepa2"))
    if repo_id == "microsoft/xclip-base-patch32":
        return transformers.XCLIPModel(transformers.XCLIPConfig(
            vision_config=CONFIGS["xclip_vision"][1], projection_dim=16, prompt_layers=1, prompt_attention_heads=2,
            text_config=dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=1)))
    raise KeyError(repo_id)


def publish(cache: Path, repo_id: str, tmp: Path, *, like: str | None = None, bin_file: bool = False,
            card: str | None = None, commit: str = COMMIT) -> tuple[torch.nn.Module, Path]:
    """Save the small model as the repository ``like`` (default: ``repo_id``) publishes it, and place it in the cache
    as ``repo_id``; returns the model and the snapshot folder."""
    like = like or repo_id
    model = published_model(like).eval()
    folder = tmp / repo_id.replace("/", "--")
    model.save_pretrained(folder)
    if bin_file:  # the older layout: pytorch_model.bin only (TimeSformer, ViViT and X-CLIP publish it)
        torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    name = "video_preprocessor_config.json" if like.startswith("facebook/vjepa2") else "preprocessor_config.json"
    (folder / name).write_text(json.dumps(PUBLISHED_PROCESSORS[like]))
    if card is not None:
        (folder / "README.md").write_text(card)
    populate_hub_cache(cache, repo_id, folder, commit)
    return model, cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def video(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, frames, 16, 16, generator=torch.Generator().manual_seed(seed))


# (name.tag, the repository, how transformers loads the same files, the frames of a clip)
CASES = [
    ("transformers/videomae.base", "MCG-NJU/videomae-base", "VideoMAEModel", 6),
    ("transformers/videomae_for_video_classification.base_kinetics400", "MCG-NJU/videomae-base-finetuned-kinetics",
     "VideoMAEForVideoClassification", 6),
    ("transformers/timesformer_for_video_classification.base_kinetics400", "facebook/timesformer-base-finetuned-k400",
     "TimesformerForVideoClassification", 3),
    ("transformers/vivit.b16x2_kinetics400", "google/vivit-b-16x2-kinetics400", "VivitModel", 6),
    ("transformers/vjepa2.vitl_fpc64_256", "facebook/vjepa2-vitl-fpc64-256", "VJEPA2Model", 6),
    ("transformers/xclip_vision.base_patch32", "microsoft/xclip-base-patch32", "XCLIPModel", 3),
]


@pytest.mark.parametrize("name, repo_id, oracle_class, frames", CASES, ids=[c[0].split("/")[1] for c in CASES])
def test_published_layout_loads_through_the_cache_as_transformers_loads_it(name, repo_id, oracle_class, frames,
                                                                           tmp_path, offline_cache) -> None:
    """``create_backbone(name.tag, pretrained=True)`` finds the repository in the cache (offline), builds the model
    from its config.json and loads its weights: the outputs are those of transformers' ``from_pretrained`` on the same
    files (X-CLIP: its full model's vision tower, which transformers 5.25 does not map onto XCLIPVisionModel itself);
    the data config is the repository's preprocessor config."""
    published, snapshot = publish(offline_cache, repo_id, tmp_path, bin_file="timesformer" in name)
    ours = taghead.create_backbone(name, pretrained=True).eval()
    oracle = getattr(transformers, oracle_class).from_pretrained(snapshot).eval()
    clip = video(frames)
    with torch.no_grad():
        if oracle_class == "XCLIPModel":
            pixels = clip.transpose(1, 2).reshape(-1, 3, 16, 16)
            torch.testing.assert_close(ours(pixel_values=pixels).last_hidden_state,
                                       oracle.vision_model(pixel_values=pixels).last_hidden_state, rtol=0, atol=0)
        elif oracle_class.endswith("ForVideoClassification"):  # the classifier too: the width is the file's
            torch.testing.assert_close(ours(pixel_values=clip.transpose(1, 2)).logits,
                                       oracle(pixel_values=clip.transpose(1, 2)).logits, rtol=0, atol=0)
        else:  # the encoder's token map, through taghead's adapter on both
            torch.testing.assert_close(adapt(ours)(clip), adapt(oracle)(clip), rtol=0, atol=0)

    family = HUB_FAMILIES[name.split("/")[1].split(".")[0].removesuffix("_for_video_classification")]
    model = taghead.wrap_backbone(name, 5, head="meanpool", pretrained_backbone=True)
    processor = getattr(transformers, VIDEO_PROCESSORS[family.key]).from_dict(PUBLISHED_PROCESSORS[repo_id])
    crop = processor.crop_size.height
    assert model.data_config.crop_size == 16 and model.data_config.num_frames == frames
    assert model.data_config.resize_size == round(16 * (292 if family.resize_from_crop else processor.size.shortest_edge)
                                                  / crop)
    assert model.spec["backbone_weights"] == {
        "tag": name.split(".")[1], "source": f"hf-hub:{repo_id}",
        "filename": "pytorch_model.bin" if "timesformer" in name else "model.safetensors",
        "license": get_backbone_weights(name).license, "dataset": get_backbone_weights(name).dataset,
        "revision": COMMIT}


@pytest.mark.parametrize("repo_id", sorted(PUBLISHED_PROCESSORS))
def test_data_configs_normalise_pixels_as_the_transformers_processors_do(repo_id) -> None:
    """The mean and std taghead reads from a preprocessor config, applied to pixels in [0, 1], give what the family's
    transformers video processor (built by transformers from the same file) gives on the 0-255 pixels (ViViT: its
    rescale to [-1, 1] included); resize and crop are the processor's. The registered tag's clip is this too."""
    family = next(f for f in HUB_FAMILIES.values() if any(w.hf_hub_id == repo_id for w in _tags(f)))
    frames, crop = PUBLISHED_CLIPS[repo_id]
    clip = checkpoint_data_config(PUBLISHED_PROCESSORS[repo_id], family, dict(zip(family.clip_fields, (frames, crop))))
    assert all(w.data_config == clip for w in _tags(family) if w.hf_hub_id == repo_id)

    processor = getattr(transformers, VIDEO_PROCESSORS[family.key]).from_dict(PUBLISHED_PROCESSORS[repo_id])
    assert (clip.crop_size, clip.resize_size) == (processor.crop_size.height, processor.size.shortest_edge)
    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    theirs = processor(videos=[pixels], do_resize=False, do_center_crop=False, return_tensors="pt")
    theirs = next(iter(theirs.values()))[0]
    mean, std = torch.tensor(clip.mean).view(3, 1, 1), torch.tensor(clip.std).view(3, 1, 1)
    torch.testing.assert_close((pixels.float() / 255 - mean) / std, theirs, rtol=1e-5, atol=1e-5)


def _tags(family):
    return [w for name in taghead.list_backbones(f"{family.name}*") for w in
            taghead.backbones.registry.get_backbone_entry(name).weights]


def test_any_hub_id_chooses_the_family_records_id_and_commit_and_reloads_offline(tmp_path, offline_cache) -> None:
    """``wrap_backbone("hf-hub:<repo>", pretrained_backbone=True)``: the family from the repository's model_type,
    the licence and data from its model card, the commit in the spec; the saved folder reloads with identical outputs
    after the cache is gone; a pinned revision loads the same files; without ``pretrained_backbone`` the repository's
    architecture has random weights."""
    card = "---\nlicense: apache-2.0\ndatasets:\n- our/clips\n---\n# a model\n"
    published, snapshot = publish(offline_cache, "someone/videomae-clips", tmp_path, like="MCG-NJU/videomae-base",
                                 card=card)
    model = taghead.wrap_backbone("hf-hub:someone/videomae-clips", 3, head="tag", pretrained_backbone=True,
                                  embed_dim=16, num_heads=2, depth=1)
    assert model.spec["backbone"] == "transformers/videomae"
    assert model.spec["backbone_kwargs"]["config"]["hidden_size"] == 32
    assert model.spec["backbone_weights"] == {"tag": None, "source": "hf-hub:someone/videomae-clips",
                                              "filename": "model.safetensors", "license": "apache-2.0",
                                              "dataset": "our/clips", "revision": COMMIT}
    assert model.data_config == taghead.DataConfig(6, 16, 16, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    torch.testing.assert_close(model.backbone.model.embeddings.patch_embeddings.projection.weight,
                               published.videomae.embeddings.patch_embeddings.projection.weight, rtol=0, atol=0)
    pinned = taghead.create_backbone(f"hf-hub:someone/videomae-clips@{COMMIT}", pretrained=True)
    assert all(torch.equal(p, q) for p, q in zip(pinned.parameters(), model.backbone.model.parameters()))
    random = taghead.create_backbone("hf-hub:someone/videomae-clips")
    assert not torch.equal(random.embeddings.patch_embeddings.projection.weight,
                           pinned.embeddings.patch_embeddings.projection.weight)

    folder = model.eval().save_pretrained(tmp_path / "saved")
    assert "someone/videomae-clips" in (folder / "README.md").read_text() and COMMIT in (folder / "README.md").read_text()
    for blob in (offline_cache / "models--someone--videomae-clips" / "blobs").iterdir():
        blob.unlink()  # nothing of the repository is left to read
    reloaded = taghead.from_pretrained(folder)
    clip = video(6)
    with torch.no_grad():
        assert torch.equal(reloaded(clip), model(clip))
    assert reloaded.spec == model.spec


def test_local_folder_and_files_and_config_overrides(tmp_path, offline_cache) -> None:
    """A folder of the repository's files works where a Hub id does (a cluster without network); a single weights
    file loads into the config given; ``config=`` changes fields of the checkpoint's config, and a change of shape is
    an error that lists the keys."""
    published = published_model("google/vivit-b-16x2-kinetics400")
    folder = tmp_path / "vivit"
    published.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PUBLISHED_PROCESSORS["google/vivit-b-16x2-kinetics400"]))
    model = taghead.wrap_backbone("transformers/vivit_for_video_classification", 2, head="meanpool",
                                  pretrained_backbone=str(folder))
    assert model.spec["backbone_weights"] == {"tag": None, "source": "local file", "filename": "vivit", "license": None,
                                              "dataset": None}
    assert model.data_config.mean == pytest.approx((0.75,) * 3) and model.data_config.std == pytest.approx((0.25,) * 3)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(video(6)), adapt(published.eval())(video(6)), rtol=0, atol=0)

    dropout = taghead.create_backbone("transformers/vivit_for_video_classification", pretrained=folder,
                                      config={"hidden_dropout_prob": 0.25})
    assert dropout.config.hidden_dropout_prob == 0.25 and dropout.config.hidden_size == 32
    file_only = taghead.create_backbone("transformers/vivit", pretrained=folder / "model.safetensors",
                                        config={k: v for k, v in CONFIGS["vivit"][1].items() if k != "patch_size"})
    assert torch.equal(file_only.embeddings.cls_token, published.vivit.embeddings.cls_token)
    with pytest.raises(StateDictMismatchError, match=r"mis-shaped|shape"):
        taghead.create_backbone("transformers/vivit", pretrained=folder, config={"intermediate_size": 48})


def test_bad_sources_fail_with_what_to_do(tmp_path, offline_cache) -> None:
    with pytest.raises(WeightsUnavailableError) as err:
        taghead.create_backbone("transformers/videomae", pretrained=True)  # not in the cache, offline
    assert "MCG-NJU/videomae-base" in str(err.value) and str(offline_cache / "models--MCG-NJU--videomae-base") in str(
        err.value) and "HF_HUB_OFFLINE=1" in str(err.value) and "taghead weights download" in str(err.value)
    with pytest.raises(WeightsUnavailableError, match="hf-hub:nobody/nothing"):
        taghead.wrap_backbone("hf-hub:nobody/nothing", 2, pretrained_backbone=True)

    publish(offline_cache, "MCG-NJU/videomae-base", tmp_path)
    with pytest.raises(ValueError, match=r"model_type 'videomae'; backbone 'transformers/vivit' takes ViViT"):
        taghead.create_backbone("transformers/vivit", pretrained="hf-hub:MCG-NJU/videomae-base")
    with pytest.raises(ValueError, match="only repository backbones"):
        taghead.create_backbone("taghead/tiny_video_cnn", pretrained="hf-hub:MCG-NJU/videomae-base")
    with pytest.raises(ValueError, match="pretrained must be True .* or False"):
        taghead.create_backbone("hf-hub:MCG-NJU/videomae-base", pretrained="base")
    with pytest.raises(ValueError, match="not a Hub repository id"):
        parse_hub_id("hf-hub:bad repo/x y")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        taghead.create_backbone("transformers/videomae", pretrained=tmp_path)
    with pytest.raises(TypeError, match="config must be a dict"):
        taghead.create_backbone("transformers/videomae", pretrained=True, config=transformers.VideoMAEConfig())


def test_weights_download_fetches_a_whole_repository(tmp_path, offline_cache, capsys) -> None:
    """``taghead weights download`` takes registered tags and hf-hub ids; for a repository it returns the snapshot
    folder holding config.json, the weights and the preprocessor config (here from the cache, offline)."""
    _, snapshot = publish(offline_cache, "microsoft/xclip-base-patch32", tmp_path, bin_file=True)
    assert main(["weights", "download", "transformers/xclip_vision", "hf-hub:microsoft/xclip-base-patch32",
                 "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"transformers/xclip_vision.base_patch32: {snapshot}", f"hf-hub:microsoft/xclip-base-patch32: {snapshot}"]
    assert sorted(os.listdir(snapshot)) == ["config.json", "preprocessor_config.json", "pytorch_model.bin"]
    assert main(["weights", "download", "hf-hub:nobody/nothing", "--no-progress"]) == 2
    assert "hf-hub:nobody/nothing (config.json) is not in the local cache" in capsys.readouterr().err
