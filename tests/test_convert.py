"""Reference checkpoint conversion: logits parity with a rebuilt reference model, CLI, safety, errors.

The reference TAG-Head is rebuilt here from its documented structure (REFERENCE.md section 1):
an ``nn.Sequential`` ``backbone`` of the R(2+1)D-34 VideoResNet children (stem, layer1..layer4),
a ``pos_embedding`` parameter, an ``nn.TransformerEncoder``, a persistent ``edge_index`` buffer
built from an explicit edge list, torch_geometric's ``APPNP(K=2, alpha=0.1)`` on
``Batch.from_data_list`` of per-clip graphs, ``global_mean_pool`` and ``classifier =
nn.Sequential(LayerNorm, Linear)``. Nothing from taghead is used to build or run it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi
from torch import nn

pytest.importorskip("torch_geometric")
pytest.importorskip("torchvision")
from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.nn import APPNP, global_mean_pool  # noqa: E402
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet  # noqa: E402

import taghead  # noqa: E402
from taghead.cli import main as cli_main  # noqa: E402
from taghead.convert import (  # noqa: E402
    convert_official_state_dict,
    infer_preset,
    load_official,
    read_official_state_dict,
)
from taghead.hub import MODEL_CARD_NAME  # noqa: E402
from taghead.models.reference import is_official_state_dict  # noqa: E402
from taghead.weights import CheckpointError, StateDictMismatchError  # noqa: E402

# haa500 preset: 500 classes, 32 frames -> a 4x7x7 grid at 112x112, feed-forward 512.
PRESET, NUM_CLASSES, FRAMES, T, MLP = "haa500", 500, 32, 4, 512


def reference_edge_index(t: int, h: int, w: int) -> torch.Tensor:
    """The reference graph as an explicit list: all ordered pairs inside a frame, same (h, w) across frames."""
    p = h * w
    edges = []
    for f in range(t):
        for i in range(p):
            for j in range(p):
                if i != j:
                    edges.append((f * p + i, f * p + j))
    for f in range(t - 1):
        for i in range(p):
            edges.append((f * p + i, (f + 1) * p + i))
            edges.append(((f + 1) * p + i, f * p + i))
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


def reference_r2plus1d_34() -> VideoResNet:
    """R(2+1)D-34 in the IG-65M layout, as documented."""
    net = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3], stem=R2Plus1dStem)
    net.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    net.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    net.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eps, m.momentum = 1e-3, 0.9
    return net


class ReferenceTAGHead(nn.Module):
    def __init__(self, num_classes: int, t: int, mlp_dim: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*list(reference_r2plus1d_34().children())[:5])
        self.pos_embedding = nn.Parameter(torch.randn(1, t * 7 * 7, 512))
        layer = nn.TransformerEncoderLayer(512, 8, mlp_dim, dropout=0.5, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=2)
        self.register_buffer("edge_index", reference_edge_index(t, 7, 7))
        self.gnn = APPNP(K=2, alpha=0.1)
        self.classifier = nn.Sequential(nn.LayerNorm(512), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(x).flatten(2).transpose(1, 2) + self.pos_embedding
        tokens = self.transformer(tokens)
        batch = Batch.from_data_list([Data(x=clip, edge_index=self.edge_index) for clip in tokens])
        nodes = self.gnn(batch.x, batch.edge_index)
        return self.classifier(global_mean_pool(nodes, batch.batch))


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm3d, nn.LayerNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random reference model, its checkpoint (bare and wrapped), an input clip and the reference logits."""
    torch.manual_seed(0)
    model = ReferenceTAGHead(NUM_CLASSES, T, MLP)
    _randomise(model, seed=1)
    model.eval()
    folder = tmp_path_factory.mktemp("reference")
    state = model.state_dict()
    assert "edge_index" in state and "classifier.1.weight" in state and "backbone.4.1.conv2.0.0.weight" in state
    torch.save(state, folder / "haa500_best.pth")
    torch.save({"epoch": 80, "model_state_dict": state}, folder / "haa500_wrapped.pth")
    clip = torch.randn(1, 3, FRAMES, 112, 112, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(clip)
    del model
    return dict(folder=folder, clip=clip, logits=logits, state=state)


@pytest.fixture(scope="module")
def converted(reference):
    return load_official(reference["folder"] / "haa500_best.pth", PRESET)


def test_converted_checkpoint_reproduces_reference_logits(reference, converted):
    ref_logits = reference["logits"]
    assert ref_logits.shape == (1, NUM_CLASSES) and ref_logits.std() > 0.1  # not a degenerate comparison
    model = converted
    assert not model.training and model.num_classes == NUM_CLASSES
    assert model.head.grid == (T, 7, 7) and model.head.get_config()["mlp_dim"] == MLP
    assert model.data_config.num_frames == FRAMES and model.data_config.crop_size == 112
    with torch.no_grad():
        logits = model(reference["clip"])
    diff = (logits - ref_logits).abs().max().item()
    assert diff <= 1e-4, f"max abs logit difference {diff:.3g}"
    assert model.pretrained_cfg.source_file == "haa500_best.pth" and model.pretrained_cfg.license == "mit"
    state = model.state_dict()
    assert torch.equal(state["head.pos_embed.weight"], reference["state"]["pos_embedding"])
    assert torch.equal(state["head.fc.weight"], reference["state"]["classifier.1.weight"])
    assert torch.equal(state["head.norm.bias"], reference["state"]["classifier.0.bias"])


def test_wrapped_state_dict_equals_bare_and_preset_is_inferred(reference):
    bare = read_official_state_dict(reference["folder"] / "haa500_best.pth")
    wrapped = read_official_state_dict(reference["folder"] / "haa500_wrapped.pth")
    assert bare.keys() == wrapped.keys() and all(torch.equal(bare[k], wrapped[k]) for k in bare)
    assert infer_preset(wrapped) == PRESET


def test_convert_command_writes_a_loadable_hub_folder(reference, converted, tmp_path, capsys, monkeypatch):
    # The Hub cannot be reached here: HfApi's two calls are replaced by recorders.
    calls: dict = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw)))

    def upload_folder(self, *, repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, sorted(os.listdir(folder_path)), kw)
        calls["card"] = (Path(folder_path) / MODEL_CARD_NAME).read_text()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "tag_r2plus1d_34_haa500"
    src = reference["folder"] / "haa500_wrapped.pth"  # under model_state_dict, preset inferred
    assert cli_main(["convert", str(src), "--out", str(out), "--push-to-hub", "org/tag-haa500", "--private"]) == 0
    assert "haa500_wrapped.pth" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    assert calls["create"] == ("org/tag-haa500", dict(token=None, private=True, repo_type="model", exist_ok=True))
    repo_id, files, kw = calls["upload"]
    assert repo_id == "org/tag-haa500" and files == sorted(os.listdir(out))
    assert "haa500_wrapped.pth" in kw["commit_message"]
    assert 'taghead.from_pretrained("org/tag-haa500")' in calls["card"] == (out / MODEL_CARD_NAME).read_text()
    loaded = taghead.from_pretrained(out)
    assert loaded.architecture == "tag_r2plus1d_34_haa500" and loaded.num_classes == NUM_CLASSES
    assert loaded.state_dict().keys() == converted.state_dict().keys()
    assert all(torch.equal(v, converted.state_dict()[k]) for k, v in loaded.state_dict().items())
    # Same weights; check the rebuilt architecture computes the same function (short clip for the
    # backbone, the converted model's features for the head: the full clip was compared above).
    short = reference["clip"][:, :, :8]
    features = torch.randn(1, 512, T, 7, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(short), converted.forward_features(short))
        assert torch.equal(loaded.forward_head(features), converted.forward_head(features))
    card = (out / MODEL_CARD_NAME).read_text()
    assert "haa500_wrapped.pth" in card and "license: mit" in card and "Licence: MIT" in card
    assert "arXiv:2604.11498" in card and "86.1" in card and "datasets:\n- haa500" in card
    # Say what exists: the authors train and name these checkpoints; no public copy of them exists yet.
    config_text = (out / "config.json").read_text()
    assert "train and name" in card and "no public copy" in card and "no public copy exists yet" in config_text
    assert "released" not in card + config_text


def test_wrong_preset_lists_the_mismatched_shapes(reference):
    with pytest.raises(StateDictMismatchError) as info:
        load_official(reference["folder"] / "haa500_best.pth", "gym99")
    text = str(info.value)
    assert "head.pos_embed.weight: weights [1, 196, 512] vs model [1, 392, 512]" in text
    assert "head.fc.weight: weights [500, 512] vs model [99, 512]" in text


def test_incomplete_reference_checkpoint_lists_missing_and_unexpected_keys(reference, converted):
    state = dict(reference["state"])
    del state["backbone.4.1.conv2.1.running_var"]
    state["backbone.5.weight"] = torch.zeros(2)
    with pytest.raises(StateDictMismatchError) as info:
        convert_official_state_dict(state, converted)
    assert len(info.value.missing) == 1 and info.value.missing[0].endswith("layer4.1.conv2.1.running_var")
    assert info.value.unexpected == ["backbone.5.weight"] and info.value.mismatched == []


class _Exploit:
    """Unpickling this runs ``open(marker, 'w')``, i.e. arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"pos_embedding": torch.zeros(1), "payload": _Exploit(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_official(tmp_path / "evil.pth", PRESET)
    with pytest.raises(CheckpointError, match="refused to load"):
        taghead.create_model("tag_r2plus1d_34_haa500", pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(tmp_path / "evil.pth")))
    assert not marker.exists()
    assert cli_main(["convert", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "out")]) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_truncated_and_foreign_files_are_clear_errors(reference, tmp_path):
    data = (reference["folder"] / "haa500_best.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_official(tmp_path / "cut.pth", PRESET)
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a reference TAG-Head state dict"):
        load_official(tmp_path / "other.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_official(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official(tmp_path / "missing.pth")


def test_unknown_shapes_and_foreign_graph_are_refused(reference, converted):
    state = dict(reference["state"])
    state["classifier.1.weight"] = torch.zeros(7, 512)
    with pytest.raises(ValueError, match="matches no reference preset"):
        infer_preset(state)
    state = dict(reference["state"])
    state["edge_index"] = state["edge_index"][:, :-2]  # drop one temporal edge pair
    with pytest.raises(CheckpointError, match="not the time-aligned graph"):
        convert_official_state_dict(state, converted)
    state["edge_index"] = torch.flip(reference["state"]["edge_index"], dims=[1])  # same graph, other order
    assert convert_official_state_dict(state, converted).keys() == converted.state_dict().keys()


def test_reference_file_loads_through_create_model_overlay(reference, tmp_path):
    parallel = {f"module.{k}": v for k, v in reference["state"].items()}  # saved from nn.DataParallel
    assert is_official_state_dict(parallel) and is_official_state_dict({"model_state_dict": parallel})
    assert not is_official_state_dict({"module.fc.weight": reference["state"]["pos_embedding"]})
    torch.save(parallel, tmp_path / "haa500_best.pth")
    model = taghead.create_model("tag_r2plus1d_34_haa500", pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(tmp_path / "haa500_best.pth")))
    parallel_state = model.state_dict()
    model = taghead.create_model("tag_r2plus1d_34_haa500", pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(reference["folder"] / "haa500_best.pth")))
    state = model.state_dict()
    assert parallel_state.keys() == state.keys() and all(torch.equal(parallel_state[k], v) for k, v in state.items())
    assert torch.equal(state["head.pos_embed.weight"], reference["state"]["pos_embedding"])
    stem_key = next(k for k in state if k.endswith("stem.0.weight"))
    assert torch.equal(state[stem_key], reference["state"]["backbone.0.0.weight"])
    assert Path(model.pretrained_cfg.file).name == model.pretrained_cfg.source_file == "haa500_best.pth"
