"""🤗 Transformers video backbones: each model's token order against its own embeddings, the maps against the
models' own outputs and heads, recognition and the spec's config, a training step and the reload by folder
(offline), the data configs against transformers' processors, bad input, and taghead without transformers."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from _adapter_checks import check_forward_backward
from torch import nn

import taghead
from taghead.adapters import adapt
from taghead.backbones.transformers import TRANSFORMERS_BACKBONES, config_dict

# Token maps of (T', H', W') = (3, 2, 2): patches of 8 pixels on 16x16 frames, 3 time steps. (ViViT has no
# patch_size field, its tubelet_size sets the patches; transformers keeps the stray keyword as an attribute.)
_VIT = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, patch_size=8, image_size=16)
CONFIGS: dict[str, tuple[str, dict]] = {  # family -> (config class, small config with 1 layer)
    "videomae": ("VideoMAEConfig", dict(_VIT, num_hidden_layers=1, num_frames=6, tubelet_size=2)),
    "timesformer": ("TimesformerConfig", dict(_VIT, num_hidden_layers=1, num_frames=3)),
    "vivit": ("VivitConfig", dict(_VIT, num_hidden_layers=1, num_frames=6, tubelet_size=[2, 8, 8])),
    "vjepa2": ("VJEPA2Config", dict(hidden_size=36, num_attention_heads=2, num_hidden_layers=1, patch_size=8,
                                    crop_size=16, frames_per_clip=6, tubelet_size=2, pred_hidden_size=12,
                                    pred_num_hidden_layers=1, pred_num_attention_heads=2, num_pooler_layers=1)),
    "xclip_vision": ("XCLIPVisionConfig", dict(_VIT, num_hidden_layers=1, num_frames=3, mit_hidden_size=16,
                                               mit_intermediate_size=32, mit_num_attention_heads=2)),
}
GRID, TIME_STEP, PATCH = (3, 2, 2), {"timesformer": 1, "xclip_vision": 1}, 8
CHANNELS = {"vjepa2": 36}


def family(name: str) -> str:
    return name.split("/", 1)[1].removesuffix("_for_video_classification")


def hf_model(name: str, **overrides) -> nn.Module:
    """The transformers model registered as ``name``, built directly by transformers from the small config."""
    config_class, config = CONFIGS[family(name)]
    torch.manual_seed(0)
    model_class = TRANSFORMERS_BACKBONES[name].split(":")[1]
    return getattr(transformers, model_class)(getattr(transformers, config_class)(**{**config, **overrides}))


def clip(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    frames = GRID[0] * TIME_STEP.get(family(name), 2)
    return torch.randn(batch, 3, frames, 16, 16, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ token order
TUBE_CASES = [("transformers/videomae", {}), ("transformers/timesformer", {}),
              ("transformers/timesformer", {"attention_type": "space_only"}), ("transformers/vivit", {}),
              ("transformers/vjepa2", {}), ("transformers/xclip_vision", {})]


@pytest.mark.parametrize("name, overrides", TUBE_CASES, ids=[f"{n}{'-' + '-'.join(o.values()) if o else ''}"
                                                            for n, o in TUBE_CASES])
def test_cell_t_h_w_holds_the_tokens_of_that_tube(name, overrides) -> None:
    """With no Transformer layer every token depends on its own tube only (patch embedding, positions and, where the
    model has them, per-token LayerNorms), so changing the pixels of tube (t, h, w) must change map cell (t, h, w)
    and no other: a map in another token order (h, w, t for t, h, w, a transposed frame, a shifted class token)
    moves the change to another cell. Every cell of a 3 x 2 x 2 grid is tried, the off-diagonal (h != w) ones too."""
    extractor = adapt(hf_model(name, num_hidden_layers=0, **overrides)).eval()
    video = clip(name, batch=1)
    step = TIME_STEP.get(family(name), 2)
    with torch.no_grad():
        base = extractor(video)
        assert tuple(base.shape[2:]) == GRID
        for t in range(GRID[0]):
            for h in range(GRID[1]):
                for w in range(GRID[2]):
                    changed = video.clone()
                    changed[:, :, t * step:(t + 1) * step, h * PATCH:(h + 1) * PATCH, w * PATCH:(w + 1) * PATCH] += 1.0
                    moved = (extractor(changed) - base).abs().amax(dim=(0, 1)) > 0  # [T', H', W']
                    expected = torch.zeros(GRID, dtype=torch.bool)
                    expected[t, h, w] = True
                    assert torch.equal(moved, expected), (t, h, w, moved.nonzero().tolist())


@pytest.mark.parametrize("name", sorted(TRANSFORMERS_BACKBONES))
def test_map_holds_the_models_own_last_hidden_state_and_every_weight_is_used(name) -> None:
    """With a layer: the map's tokens are the model's own last hidden state (class tokens excluded): their mean is the
    mean of the patch tokens transformers returns, which no reordering changes; the classification models' own heads
    give the model's logits from the map (VideoMAE: fc_norm of the mean; V-JEPA 2: its attentive pooler). And every
    backbone weight left is on the path to the logits (what pools or classifies is gone)."""
    module = hf_model(name).eval()
    original = copy.deepcopy(module)
    model = taghead.wrap_backbone(module, 4, head="meanpool")
    video = clip(name)
    fam = family(name)
    with torch.no_grad():
        features = model.forward_features(video)
        tokens = features.flatten(2).transpose(1, 2)  # [B, N, D]
        base = getattr(original, fam) if name.endswith("classification") else original  # the bare encoder
        layout = video.transpose(1, 2)
        if fam == "xclip_vision":
            hidden = base(pixel_values=layout.reshape(-1, 3, 16, 16))[0][:, 1:].reshape(2, -1, features.shape[1])
        elif fam == "vjepa2":
            hidden = base(pixel_values_videos=layout, skip_predictor=True)[0]
        else:
            hidden = base(pixel_values=layout)[0][:, 0 if fam == "videomae" else 1:]
        if fam == "timesformer":  # batch of [1 + H*W*T] tokens
            assert hidden.shape[1] == tokens.shape[1]
        torch.testing.assert_close(tokens.mean(1), hidden.mean(1))
        if name == "transformers/videomae_for_video_classification":
            logits = original(pixel_values=layout).logits
            torch.testing.assert_close(original.classifier(original.fc_norm(tokens.mean(1))), logits)
        if name == "transformers/vjepa2_for_video_classification":
            logits = original(pixel_values_videos=layout).logits
            torch.testing.assert_close(original.classifier(original.pooler(tokens)), logits)
    model.train()
    first = {"xclip_vision": "embeddings.patch_embedding.weight",
             "vjepa2": "encoder.embeddings.patch_embeddings.proj.weight"}.get(fam, "embeddings.patch_embeddings.projection.weight")
    first = f"model.{fam + '.' if name.endswith('classification') else ''}{first}"
    dropped = {"videomae": ("fc_norm", "classifier"), "vjepa2": ("pooler", "classifier", "vjepa2.predictor",
                                                                 "predictor"),
               "xclip_vision": ("post_layernorm",), "vivit": ("classifier", "pooler")}.get(fam, ("classifier",))
    check_forward_backward(model, video, (2, CHANNELS.get(fam, 32), *GRID), 4, first, dropped)


# ------------------------------------------------------------------------------------ recognition and reload
@pytest.mark.parametrize("name", sorted(TRANSFORMERS_BACKBONES))
def test_trained_for_a_step_saved_and_reloaded_by_folder_offline(name, tmp_path, offline_cache) -> None:
    """A transformers module is recognised by class and config; the spec records the whole config; after one training
    step the folder alone (no module, HF_HUB_OFFLINE=1) rebuilds the model with identical outputs."""
    module = hf_model(name)
    recognised = taghead.recognize_backbone(module)
    assert recognised.name == name and recognised.kwargs["config"] == config_dict(module.config)
    model = taghead.wrap_backbone(module, 3, head="attentive", embed_dim=16, num_heads=2)
    assert model.spec["backbone"] == name and model.spec["adapter"].startswith("transformers_")
    recorded = model.spec["backbone_kwargs"]["config"]
    assert all(recorded[k] == v for k, v in CONFIGS[family(name)][1].items() if k != "patch_size" or "vivit" not in name)
    assert "transformers_version" not in recorded and "id2label" not in recorded and recorded["num_labels"] == 2

    video = clip(name)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(video), torch.tensor([0, 2])).backward()
    optimizer.step()
    assert any(not torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())

    model.eval()
    folder = model.save_pretrained(tmp_path / "saved")
    del module
    reloaded = taghead.from_pretrained(folder)
    assert reloaded.spec == model.spec and reloaded.data_config == model.data_config
    with torch.no_grad():
        assert torch.equal(reloaded(video), model(video))


def test_by_name_records_the_whole_config_and_rebuilds_the_same_architecture() -> None:
    small = CONFIGS["videomae"][1]
    model = taghead.wrap_backbone("transformers/videomae", 2, head="meanpool", backbone_kwargs={"config": small})
    config = model.spec["backbone_kwargs"]["config"]
    assert config == config_dict(transformers.VideoMAEConfig(**small))  # the defaults too, not only the given fields
    rebuilt = taghead.create_backbone("transformers/videomae", **model.spec["backbone_kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in hf_model("transformers/videomae").state_dict().items()}
    vivit = hf_model("transformers/vivit")
    no_pooler = transformers.VivitModel(vivit.config, add_pooling_layer=False)
    assert taghead.recognize_backbone(no_pooler).kwargs["add_pooling_layer"] is False
    assert taghead.recognize_backbone(vivit).kwargs["add_pooling_layer"] is True
    changed = hf_model("transformers/videomae")
    changed.encoder.layer.append(nn.Linear(2, 2))  # no longer what any config builds
    assert not taghead.recognize_backbone(changed)


# ------------------------------------------------------------------------------------------------ data configs
def test_data_configs_are_the_transformers_processors_values() -> None:
    """Sizes, means and standard deviations from transformers' own processor classes (VideoMAE's mean and std: the
    constants its pre-training model un-normalises with; ViViT's: its processor's offset rescale and normalisation,
    applied to pixels by transformers itself). Clip length and crop: the model's config."""
    from transformers.models.videomae import modeling_videomae

    def data_config(name: str, config: dict | None = None) -> taghead.DataConfig:
        with torch.device("meta"):
            return adapt(taghead.create_backbone(name, config=config)).default_data_config()

    def check(cfg, processor, frames: int, mean=None, std=None) -> None:
        assert (cfg.num_frames, cfg.crop_size, cfg.resize_size) == (
            frames, processor.crop_size.height, processor.size.shortest_edge)
        assert cfg.mean == pytest.approx(mean or processor.image_mean) and cfg.std == pytest.approx(std or processor.image_std)

    check(data_config("transformers/videomae"), transformers.VideoMAEVideoProcessor(), 16,
          modeling_videomae.IMAGENET_DEFAULT_MEAN, modeling_videomae.IMAGENET_DEFAULT_STD)
    check(data_config("transformers/timesformer"), transformers.TimesformerVideoProcessor(), 8)
    check(data_config("transformers/vjepa2"), transformers.VJEPA2VideoProcessor(), 64)
    check(data_config("transformers/vjepa2", {"crop_size": 32}), transformers.VJEPA2VideoProcessor(crop_size=32), 64)
    check(data_config("transformers/xclip_vision"), transformers.CLIPImageProcessor(), 8)

    vivit = data_config("transformers/vivit_for_video_classification")
    processor = transformers.VivitVideoProcessor()
    assert (vivit.num_frames, vivit.crop_size, vivit.resize_size) == (32, 224, 256) == (
        transformers.VivitConfig().num_frames, processor.crop_size.height, processor.size.shortest_edge)
    pixels = torch.arange(256, dtype=torch.float32).repeat(3, 1).reshape(1, 3, 16, 16)
    theirs = processor.rescale_and_normalize(pixels, True, processor.rescale_factor, True, processor.image_mean,
                                             processor.image_std)
    mean, std = torch.tensor(vivit.mean).view(3, 1, 1), torch.tensor(vivit.std).view(3, 1, 1)
    torch.testing.assert_close((pixels / 255 - mean) / std, theirs)


# ------------------------------------------------------------------------------------------------- bad input
def test_clips_the_model_cannot_place_are_refused_with_the_config_fields() -> None:
    videomae = adapt(hf_model("transformers/videomae"))
    with pytest.raises(ValueError, match=r"built for clips of 6 frames at 16x16 pixels \(config num_frames, "
                                         r"image_size\); got a clip \(1, 3, 4, 16, 16\)"):
        videomae(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(ValueError, match=r"16x16 pixels.*got a clip \(1, 3, 6, 32, 32\)"):
        videomae(torch.zeros(1, 3, 6, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\].*looks like \[B, T, 3, H, W\]"):
        videomae(torch.zeros(1, 6, 3, 16, 16))  # transformers' own layout is refused, not guessed
    vjepa2 = adapt(hf_model("transformers/vjepa2")).eval()
    assert vjepa2(torch.zeros(1, 3, 10, 16, 16)).shape == (1, 36, 5, 2, 2)  # rotary positions extend in time
    with pytest.raises(ValueError, match="a multiple of 2 frames"):
        vjepa2(torch.zeros(1, 3, 5, 16, 16))
    with pytest.raises(ValueError, match="crop_size"):
        vjepa2(torch.zeros(1, 3, 6, 24, 24))  # rotary positions of a 2x2 grid would be wrong, not an error
    xclip = adapt(hf_model("transformers/xclip_vision"))
    with pytest.raises(ValueError, match="3 frames"):
        xclip(torch.zeros(1, 3, 6, 16, 16))  # two clips' frames would exchange messages
    with pytest.raises(ValueError, match="cannot run a clip of 4 frames"):
        taghead.wrap_backbone(hf_model("transformers/vivit"), 2, head="meanpool", num_frames=4)


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(TypeError, match=r"config must be a dict of VideoMAEConfig fields.*config.to_dict\(\)"):
        taghead.create_backbone("transformers/videomae", config=transformers.VideoMAEConfig())
    with pytest.raises(ValueError, match=r"unknown VideoMAEConfig field\(s\) \['num_frame'\].*'num_frames'"):
        taghead.create_backbone("transformers/videomae", config={"num_frame": 8})
    with pytest.raises(ValueError, match="takes a VivitConfig.*model_type 'videomae'"):
        taghead.create_backbone("transformers/vivit", config={"model_type": "videomae"})
    with pytest.raises(TypeError, match=r"takes config=.*got \['add_pooling_layer'\]"):
        taghead.create_backbone("transformers/videomae", add_pooling_layer=False)


# -------------------------------------------------------------------------------------------- without the extra
def test_taghead_imports_without_transformers_and_names_the_extra(tmp_path) -> None:
    """``import taghead`` never imports transformers; with transformers missing, building one of its backbones (also
    by reloading a saved model) fails with the extra to install."""
    model = taghead.wrap_backbone(hf_model("transformers/timesformer"), 2, head="meanpool")
    folder = model.save_pretrained(tmp_path / "saved")
    script = textwrap.dedent(f"""
        import sys
        import taghead
        assert "transformers" not in sys.modules, "import taghead imported transformers"
        sys.modules["transformers"] = None  # as if it were not installed
        for build in (lambda: taghead.create_backbone("transformers/videomae"),
                      lambda: taghead.from_pretrained({str(folder)!r})):
            try:
                build()
            except ModuleNotFoundError as err:
                print(err)
    """)
    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": repo, "PATH": "", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "backbone 'transformers/videomae' needs transformers, which is not installed: pip install 'taghead[hf]' "
        "(or pip install transformers)",
        "backbone 'transformers/timesformer' needs transformers, which is not installed: pip install 'taghead[hf]' "
        "(or pip install transformers)",
    ]
