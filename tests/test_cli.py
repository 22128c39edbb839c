"""The ``taghead`` commands end to end on small mp4 files: train (CSV and folder layouts), eval, predict, info."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pytest

from taghead.cli import main
from taghead.engine.builders import build_model, parse_kwargs

HEAD = ["--head-kwargs", "embed_dim=16", "--head-kwargs", '{"num_heads": 2, "mlp_dim": 32, "depth": 1}']
TINY = ["--num-frames", "8", "--crop-size", "32", "--backbone-kwargs", "width=4", *HEAD]
QUIET = ["--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training and 4 validation clips of the synthetic benchmark (4 classes) as mp4 + split CSVs."""
    from taghead.data import SyntheticFineGrainedDataset, write_videos

    root = tmp_path_factory.mktemp("videos")
    for split, n in (("train", 8), ("val", 4)):
        write_videos(root, SyntheticFineGrainedDataset(n, num_frames=8, size=32, num_classes=4, seed=0, split=split))
    return root


@pytest.fixture(scope="module")
def trained(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--train-csv", str(videos / "train.csv"), "--val-csv", str(videos / "val.csv"),
               "--video-dir", str(videos), "--hflip-p", "0", *TINY, "--epochs", "2", "--batch-size", "4",
               "--optimizer", "adamw", "--lr", "1e-3", "--clip-grad", "1.0", "--label-smoothing", "0.1",
               "--accum-steps", "2", "--output", str(out), *QUIET])
    assert rc == 0
    return out


def test_parse_kwargs_types_values() -> None:
    assert parse_kwargs(["embed_dim=64", "dropout=0.1", "use_graph=false", "k=null", "activation=gelu",
                         '{"depth": 0, "mlp_dim": 128}']) == dict(
        embed_dim=64, dropout=0.1, use_graph=False, k=None, activation="gelu", depth=0, mlp_dim=128)
    for bad, match in ((["depth"], "key=value"), (["depth=1", "depth=2"], "twice"), (["{oops"], "JSON"),
                       (["1x=2"], "argument name")):
        with pytest.raises(ValueError, match=match):
            parse_kwargs(bad)


def test_train_writes_metrics_checkpoints_and_model(trained: Path) -> None:
    for name in ("metrics.csv", "checkpoint_last.pt", "checkpoint_best.pt", "curves.png", "best/config.json",
                 "best/model.safetensors"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[-1]["step"] == "2"  # 8 clips / batch 4 = 2 batches, accumulated into 1 step per epoch
    config = json.loads((trained / "best/config.json").read_text())
    from taghead.data import SyntheticFineGrainedDataset

    assert config["label_names"] == SyntheticFineGrainedDataset(4, num_frames=8, size=32, num_classes=4).class_names
    assert config["spec"]["head_config"]["embed_dim"] == 16


def test_eval_reports_metrics_confusion_and_per_class(trained: Path, videos: Path, capsys) -> None:
    out = trained / "report"
    rc = main(["eval", str(trained), "--csv", str(videos / "val.csv"), "--video-dir", str(videos),
               "--output", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Top-1" in printed and "MCA" in printed and "trivial: 5 >= number of classes" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    per_class = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["class_name"] for r in per_class] == json.loads((trained / "best/config.json").read_text())["label_names"]
    correct, support = sum(int(r["correct"]) for r in per_class), sum(int(r["support"]) for r in per_class)
    assert support == metrics["count"] == 4
    assert metrics["top1"] == pytest.approx(correct / support)
    accs = [float(r["accuracy"]) for r in per_class if r["accuracy"]]
    assert metrics["mca"] == pytest.approx(sum(accs) / len(accs))

    # A second evaluation into the same folder keeps the first report unless told to replace it.
    before = {name: (out / name).read_bytes() for name in ("metrics.json", "per_class.csv", "confusion_matrix.png")}
    again = ["eval", str(trained), "--data", "synthetic", "--samples", "3", "--output", str(out), "--no-progress"]
    assert main(again) == 2
    err = capsys.readouterr().err
    assert f"taghead eval: error: {str(out)!r} already holds an evaluation report (metrics.json, per_class.csv, " \
           "confusion_matrix.png); nothing was evaluated" in err and "--overwrite" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert main([*again, "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["count"] == 3
    assert metrics["top5"] == 1.0
    assert (out / "confusion_matrix.png").stat().st_size > 1000


def _model_without_label_names(tmp_path: Path, num_classes: int) -> Path:
    """A saved tiny model that carries no label names (as a converted reference checkpoint)."""
    model = build_model(num_classes=num_classes, num_frames=8, crop_size=32, backbone_kwargs={"width": 4},
                        head_kwargs={"embed_dim": 16, "num_heads": 2, "mlp_dim": 32, "depth": 1})
    assert model.label_names is None
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_eval_on_synthetic_takes_the_class_count_from_a_model_without_label_names(tmp_path: Path, capsys) -> None:
    model = _model_without_label_names(tmp_path, 3)
    rc = main(["eval", str(model), "--data", "synthetic", "--samples", "3", "--output", str(tmp_path / "r"),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["num_classes"] == 3 and metrics["count"] == 3
    too_many = _model_without_label_names(tmp_path / "nine", 9)
    assert main(["eval", str(too_many), "--data", "synthetic", "--no-progress"]) == 2
    assert "the synthetic benchmark has 2 to 8 classes; the model has 9" in capsys.readouterr().err


def test_eval_on_a_folder_set_needs_one_folder_per_model_class(videos: Path, tmp_path: Path, capsys) -> None:
    model = _model_without_label_names(tmp_path, 3)
    assert main(["eval", str(model), "--dir", str(videos), "--no-progress"]) == 2
    assert f"{videos} has 4 class folders, the model 3 classes" in capsys.readouterr().err


def test_predict_prints_topk_and_reports_unreadable_files(trained: Path, videos: Path, capsys) -> None:
    clips = sorted(videos.glob("*/val_*.mp4"))[:2]
    missing = videos / "nope.mp4"
    rc = main(["predict", *map(str, clips), str(missing), "--model", str(trained), "-k", "3", "--json"])
    assert rc == 1  # one video could not be read
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["source"] for r in lines] == [str(c) for c in clips] + [str(missing)]
    for r in lines[:2]:
        assert len(r["labels"]) == 3 and r["error"] is None
        assert r["scores"] == sorted(r["scores"], reverse=True) and 0 < sum(r["scores"]) <= 1 + 1e-6
    assert lines[2]["error"] and lines[2]["labels"] == []


def test_train_on_folder_layout_with_bf16(videos: Path, tmp_path: Path) -> None:
    rc = main(["train", "--train-dir", str(videos), "--hflip-p", "0", *TINY, "--epochs", "1", "--batch-size", "2",
               "--max-steps-per-epoch", "1", "--amp", "bf16", "--output", str(tmp_path), *QUIET])
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows[0]["step"] == "1" and "val_top1" not in rows[0]  # one step; no validation set given


def test_build_model_from_a_registered_name() -> None:
    model = build_model(num_classes=5, model="tag_r3d_18", num_frames=8, crop_size=32, head_kwargs={"mlp_dim": 64},
                        label_names=list("abcde"))
    assert model.num_classes == 5 and model.label_names == list("abcde")
    assert (model.data_config.num_frames, model.data_config.crop_size) == (8, 32)
    assert model.head.get_config()["mlp_dim"] == 64 and model.head.grid == (1, 2, 2)


@pytest.mark.parametrize("argv, message", [
    (["train"], "exactly one training data source"),
    (["train", "--data", "synthetic", "--train-dir", "x"], "exactly one training data source"),
    (["train", "--data", "synthetic", "--head-kwargs", "depth"], "key=value"),
    (["train", "--data", "synthetic", "--head", "nope"], "unknown head"),
    (["eval", "no/such/model", "--data", "synthetic"], "no model folder or checkpoint file 'no/such/model'"),
])
def test_bad_command_lines_fail_with_a_message(argv, message, capsys) -> None:
    assert main(argv + QUIET[:1] if argv[0] == "train" else argv) == 2
    assert message in capsys.readouterr().err


def test_info_lists_versions_and_registries(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "heads" in out and "tag" in out and "meanpool" in out and "models" in out


ART_HEAD = ["--head-kwargs", '{"embed_dim": 16, "num_heads": 2, "se_depth": 1, "rssa_depth": 1, "mlp_dim": 32}']
TINY_SYNTHETIC = ["--data", "synthetic", "--num-classes", "3", "--train-samples", "4", "--val-samples", "3",
                  "--num-frames", "8", "--crop-size", "32", "--epochs", "1", "--batch-size", "2",
                  "--max-steps-per-epoch", "2", "--lr", "1e-3", *QUIET]


def _check_text_bank_run(out: Path, dim: int) -> None:
    """The saved best/ model has an ART head whose bank is the class names' ``[K, M, dim]`` bank, and the
    text losses were trained (their columns are in metrics.csv)."""
    import taghead
    from taghead.text import DEFAULT_TEMPLATES

    model = taghead.from_pretrained(out / "best")
    names = list(model.label_names)
    bank = model.head.text_bank
    assert tuple(bank.shape) == (3, len(DEFAULT_TEMPLATES), dim)
    # two small optimiser steps move the bank by at most (1 - bank_momentum) * their size
    expected = taghead.build_text_bank(names, encoder=f"hashing:{dim}", progress=False)
    assert (bank - expected).abs().max() < 1e-2
    header = next(csv.reader((out / "metrics.csv").open()))
    assert "train_text_video" in header and "train_text_prototype" in header and "train_mtc_spatial" in header


def test_train_art_with_text_bank(tmp_path: Path) -> None:
    rc = main(["train", *TINY_SYNTHETIC, "--backbone-kwargs", "width=4", "--head", "art", *ART_HEAD,
               "--text-bank", "hashing:24", "--output", str(tmp_path)])
    assert rc == 0
    _check_text_bank_run(tmp_path, 24)


def test_train_registered_art_model_with_text_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taghead.models import registry
    from taghead.models.wrap import wrap_backbone

    def tiny_art(num_classes: int, **kwargs):
        return wrap_backbone("taghead/tiny_video_cnn", num_classes, head="art", backbone_kwargs={"width": 4}, **kwargs)

    monkeypatch.setitem(registry._MODELS, "test_cli_tiny_art", tiny_art)
    rc = main(["train", *TINY_SYNTHETIC, "--model", "test_cli_tiny_art", *ART_HEAD, "--text-bank", "hashing:20",
               "--output", str(tmp_path)])
    assert rc == 0
    _check_text_bank_run(tmp_path, 20)


@pytest.mark.parametrize("argv, message", [
    (["--head", "tag", "--text-bank", "hashing:8"], "--text-bank needs an ART head (--head art, or a --model whose "
                                                    "head is ART), got --head tag"),
    (["--model", "tag_r3d_18", "--text-bank", "hashing:8"], "but the head of --model tag_r3d_18 is TAGHead"),
    (["--head", "art", "--text-bank", "nope:8"], "unknown text encoder 'nope:8'"),
    (["--head", "art", "--text-bank", "hashing:0"], "needs a positive integer DIM"),
])
def test_text_bank_errors(argv, message, capsys) -> None:
    rc = main(["train", "--data", "synthetic", "--num-classes", "3", "--num-frames", "8", "--crop-size", "32",
               *argv, *QUIET])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_train_init_starts_from_a_saved_model(trained: Path, tmp_path: Path) -> None:
    """``--init``: the saved architecture and weights; a new class count re-initialises only the classifier."""
    import warnings

    import torch
    from safetensors.torch import load_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["train", "--init", str(trained / "best"), "--data", "synthetic", "--num-classes", "3",
                   "--train-samples", "4", "--val-samples", "3", "--epochs", "1", "--batch-size", "2",
                   "--max-steps-per-epoch", "1", "--lr", "1e-9", "--freeze-backbone", "--output", str(tmp_path),
                   *QUIET])
    assert rc == 0
    assert any("re-initialised for num_classes=3" in str(w.message) for w in caught)
    before = load_file(trained / "best" / "model.safetensors")
    after = load_file(tmp_path / "best" / "model.safetensors")
    assert after["head.fc.weight"].shape[0] == 3 and before["head.fc.weight"].shape[0] == 4
    kept = [k for k in before if not k.startswith("head.fc.")]
    assert any(k.startswith("backbone.") for k in kept) and any(k.startswith("head.") for k in kept)
    for key in kept:  # frozen backbone: exactly the loaded weights; head: one step of lr 1e-9 away from them
        if key.startswith("backbone."):
            assert after[key].equal(before[key]), key
        else:
            torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0, msg=key)
    assert json.loads((tmp_path / "best" / "config.json").read_text())["spec"]["freeze_backbone"] is True
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    assert config["data_config"]["num_frames"] == 8 and config["spec"]["head_config"]["embed_dim"] == 16


@pytest.mark.parametrize("extra, message", [
    (["--num-frames", "16"], "--num-frames cannot change them"),
    (["--head-kwargs", "depth=2"], "--head-kwargs cannot change them"),
    (["--model", "tag_r3d_18"], "not allowed with argument"),
])
def test_train_init_refuses_architecture_options(trained: Path, extra: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) if "--model" in extra else contextlib.nullcontext():
        rc = main(["train", "--init", str(trained / "best"), "--data", "synthetic", *extra, *QUIET])
        assert rc == 2
    assert message in capsys.readouterr().err
