"""What a new user sees (issue 24) and what they never lose (issue 23, items 1-2): the training recipe and the origin
of the weights printed at the start, defaults in --help, an earlier run kept, clean one-line errors for --init,
which weights predict loaded, the demo's outputs kept, and visible MCA curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from taghead.cli import build_parser, main

TINY = ["--num-frames", "8", "--crop-size", "32", "--backbone-kwargs", "width=4", "--head-kwargs", "embed_dim=16",
        "--head-kwargs", "num_heads=2", "--head-kwargs", "mlp_dim=32"]
DATA = ["--data", "synthetic", "--num-classes", "4", "--train-samples", "16", "--val-samples", "8"]
SYNTHETIC = [*DATA, *TINY]
QUIET = ["--no-progress", "--no-tensorboard", "--batch-size", "16"]


def _train_args(argv: list[str]):
    return build_parser().parse_args(["train", *argv])


# ---------------------------------------------------------------------------------------------------- recipes
def test_recipe_by_situation_and_explicit_flags_win() -> None:
    from taghead.engine.recipes import FINE_TUNING, FROM_SCRATCH, resolve_recipe

    scratch = resolve_recipe(_train_args(["--data", "synthetic"]), {})
    assert scratch.recipe is FROM_SCRATCH and scratch.given == []
    assert scratch.options == dict(epochs=60, optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=1.0)
    assert scratch.head_kwargs == {"depth": 1, "dropout": 0.0}  # the study's from-scratch TAG-Head
    mine = resolve_recipe(_train_args(["--data", "synthetic", "--lr", "3e-4", "--epochs", "5"]), {"dropout": 0.1})
    assert mine.options["lr"] == 3e-4 and mine.options["epochs"] == 5 and mine.options["optimizer"] == "adamw"
    assert mine.head_kwargs == {"dropout": 0.1, "depth": 1}
    assert mine.given == ["--epochs 5", "--lr 0.0003", "--head-kwargs dropout=0.1"]
    assert "; from the command line: --epochs 5, --lr 0.0003, --head-kwargs dropout=0.1" in mine.describe()
    tuning = resolve_recipe(_train_args(["--data", "synthetic", "--init", "runs/x/best"]), {})
    assert tuning.recipe is FINE_TUNING and tuning.head_kwargs == {}  # the saved model's head stays as it is
    assert tuning.options == dict(epochs=60, optimizer="adam", lr=1e-5, weight_decay=0.0, warmup_epochs=0.0)
    assert tuning.describe() == ("recipe: fine-tuning (--init runs/x/best: a saved model): Adam, lr 1e-05, weight "
                                 "decay 0, cosine decay, 60 epochs")
    args = _train_args(["--data", "synthetic"])
    args.pretrained_backbone = "kinetics400"  # what --pretrained-backbone sets (issue 18)
    pretrained = resolve_recipe(args, {})
    assert pretrained.recipe is FINE_TUNING and pretrained.head_kwargs == {}
    assert pretrained.describe().startswith("recipe: fine-tuning (--pretrained-backbone kinetics400): Adam, lr 1e-05")
    assert resolve_recipe(_train_args(["--data", "synthetic", "--head", "meanpool"]), {}).head_kwargs == {}


def test_train_prints_its_recipe_and_the_origin_of_its_weights_and_the_lr_its_step_used(tmp_path: Path,
                                                                                        capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(out), *QUIET]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("recipe: from scratch (the backbone starts from random weights): AdamW, lr 0.001, weight decay "
                        "0.05, 1 warm-up epoch(s) then cosine decay, 1 epochs, head depth=1, head dropout=0.0; from the "
                        "command line: --epochs 1")
    assert lines[1] == "weights: random (seed 42), backbone taghead/tiny_video_cnn and head (nothing pretrained)"
    epoch_line = next(line for line in lines if line.startswith("epoch 1/1"))
    assert "lr 1.00e-03" in epoch_line  # one step, at the peak: not the 0 the schedule reaches after it
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["spec"]["head_config"]["depth"] == 1 and config["spec"]["head_config"]["dropout"] == 0.0
    cfg = config["pretrained_cfg"]  # what the card of best/ reports: this run's data, split, epoch, results
    assert (cfg["dataset"], cfg["split"], cfg["epoch"]) == ("taghead-synthetic", "validation", 1)
    val_top1 = float(next(csv.DictReader((out / "metrics.csv").open()))["val_top1"])
    assert cfg["metrics"]["top1_accuracy"] == round(100 * val_top1, 2)
    assert "## Results" in (out / "best" / "README.md").read_text()


def test_weights_origin_names_a_pretrained_backbone_and_init() -> None:
    from taghead.engine.builders import build_model, weights_origin

    model = build_model(num_classes=3, num_frames=8, crop_size=32, backbone_kwargs={"width": 4},
                        head_kwargs={"embed_dim": 16, "num_heads": 2, "depth": 1})
    assert weights_origin(model, seed=7) == "weights: random (seed 7), backbone taghead/tiny_video_cnn and head " \
                                            "(nothing pretrained)"
    model.spec["backbone_weights"] = "kinetics400"  # recorded by a pretrained backbone (issue 18)
    assert weights_origin(model, seed=7) == ("weights: backbone taghead/tiny_video_cnn pretrained (kinetics400); head "
                                             "random (seed 7)")
    model.spec["backbone_weights"] = {"file": "r2plus1d.pth", "sha256": "0" * 8}
    assert "pretrained (r2plus1d.pth)" in weights_origin(model)
    assert weights_origin(model, init="runs/a/best") == "weights: from the saved model --init runs/a/best (backbone " \
                                                        "and head)"


def test_help_shows_defaults_and_the_recipes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE clips per process and step (default 8)" in text
    assert "--seed SEED default: 42" in text and "--output OUTPUT output folder (default: runs/train)" in text
    assert "--lr LR peak learning rate of the head (default: by recipe, see 'recipes' below)" in text
    assert "from scratch: the backbone starts from random weights AdamW, lr 0.001, weight decay 0.05" in text
    assert "fine-tuning: a pretrained backbone (--pretrained-backbone) or a saved model (--init) Adam, lr 1e-05" in text
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--frames FRAMES frames shown on each sheet (default: 8)" in text and "auto (default)" in text


# ----------------------------------------------------------------------------------- an earlier run is kept
def test_train_keeps_an_earlier_run_unless_resumed_or_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(out), *QUIET]) == 0
    capsys.readouterr()
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--lr", "1e-2", "--output", str(out), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err == (f"taghead train: error: '{out}' already holds a training run (metrics.csv, checkpoint_last.pt, "
                   "checkpoint_best.pt, best, curves.png); nothing was changed. Continue it with --resume, write to "
                   "another --output, or pass --overwrite to replace it\n")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept
    assert main(["train", *SYNTHETIC, "--output", str(out), "--resume", "--overwrite", *QUIET]) == 2
    assert "give one" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["train", *SYNTHETIC, "--output", str(tmp_path / "file"), *QUIET]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", *SYNTHETIC, "--epochs", "2", "--output", str(out), "--overwrite", *QUIET]) == 0
    assert f"replacing the earlier run in {out}" in capsys.readouterr().out
    assert (out / "metrics.csv").read_text().count("\n") == 3  # the new run's two epochs


# --------------------------------------------------------------------------------------- --init, one line each
def test_init_errors_are_one_clean_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                        offline_cache) -> None:
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    contacted: list[str] = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: contacted.append(repo) or real(repo, **kw))
    argv = ["train", *DATA, "--output", str(tmp_path / "out"), *QUIET, "--init"]
    for init, message in [("runs/tinyy", "no folder 'runs/tinyy'; did you mean 'runs/tiny'?\n"),
                          ("runs/tinyy/best", "no folder 'runs/tinyy/best'; did you mean 'runs/tiny/best'?\n"),
                          ("./nope/best", "no folder './nope/best' (its folder 'nope' does not exist either)\n"),
                          ("org/name", "'org/name' (revision main) is not in the local Hugging Face cache")]:
        assert main([*argv, init]) == 2, init
        err = capsys.readouterr().err
        assert err.startswith(f"taghead train: error: {message}") and err.count("\n") == 1, err
    assert contacted == ["org/name"]  # the mistyped local paths never went to the Hub


def test_init_with_the_hub_unreachable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(repo, **kwargs):
        raise LocalEntryNotFoundError("Connection error, and we cannot find the requested files in the cache.\n"
                                      "Please check your internet connection and try again.")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    assert main(["train", *DATA, "--output", str(tmp_path / "out"), *QUIET, "--init", "org/name"]) == 2
    err = capsys.readouterr().err
    assert err == ("taghead train: error: 'org/name' is not a local folder, and the Hugging Face Hub could not be "
                   "reached to download it as a repo id (Connection error, and we cannot find the requested files in "
                   "the cache.); it is not in the local cache either. Check the path, or the connection.\n")


# ----------------------------------------------------------------------------- which weights predict loaded
@pytest.fixture(scope="module")
def run_with_an_early_best(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of 3 epochs whose best epoch is the 2nd (scripted validation results), and an mp4 clip."""
    from taghead.data import SyntheticFineGrainedDataset, write_video
    from taghead.engine.builders import build_model
    from taghead.engine.trainer import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("early-best")
    ds = SyntheticFineGrainedDataset(4, num_frames=8, size=32, num_classes=3)
    model = build_model(num_classes=3, num_frames=8, crop_size=32, backbone_kwargs={"width": 4},
                        head_kwargs={"embed_dim": 16, "num_heads": 2, "depth": 1}, label_names=ds.class_names)
    trainer = Trainer(model, ds, ds, TrainConfig(epochs=3, batch_size=4, progress=False, tensorboard=False),
                      output_dir=root / "run", log=lambda _: None)
    scripted = iter([(0.5, 1.0), (1.0, 0.2), (0.75, 0.1)])

    def evaluate(desc: str = "eval"):
        top1, loss = next(scripted)
        return {"top1": top1, "top5": 1.0, "mca": top1, "loss": loss, "count": 4}, None

    trainer.evaluate = evaluate
    trainer.fit()
    return root / "run", write_video(root / "clip.mp4", ds.render(0)[0])


def test_predict_says_which_weights_it_loaded(run_with_an_early_best: tuple[Path, Path], capsys) -> None:
    run, clip = run_with_an_early_best
    assert main(["predict", str(clip), "--model", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] is None  # stdout: the predictions only
    assert captured.err == (f"taghead predict: model: {run / 'best'} (the run's best weights, epoch 2 of 3: "
                            "validation Top-1 100.0 %, MCA 100.0 %; the final epoch 3: validation Top-1 75.0 %, MCA "
                            f"75.0 % is in {run / 'checkpoint_last.pt'}: pass that as --model to use it)\n")
    assert main(["predict", str(clip), "--model", str(run / "checkpoint_last.pt")]) == 0
    assert capsys.readouterr().err == (f"taghead predict: model: {run / 'checkpoint_last.pt'} (a training checkpoint, "
                                       "after epoch 3 of 3: validation Top-1 75.0 %, MCA 75.0 %)\n")
    assert main(["predict", str(clip), "--model", str(run / "best")]) == 0
    assert capsys.readouterr().err.startswith(f"taghead predict: model: {run / 'best'} (the run's best weights, epoch 2")
    assert main(["predict", str(clip), "--model", str(run) + "x"]) == 2
    assert capsys.readouterr().err.startswith(f"taghead predict: error: no model folder or checkpoint file '{run}x'; "
                                              f"did you mean '{run}'?")


# -------------------------------------------------------------------------------------------------- the demo
def test_demo_keeps_an_earlier_demo(tmp_path: Path, capsys) -> None:
    (tmp_path / "demo_curves.png").write_bytes(b"an earlier demo's picture")
    assert main(["demo", "--quick", "--output", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith(f"taghead demo: error: '{tmp_path}' holds the outputs of an earlier demo "
                                              "(demo_curves.png); nothing was changed. Pass --overwrite")
    assert (tmp_path / "demo_curves.png").read_bytes() == b"an earlier demo's picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_curves.png"]


def test_training_curves_show_mca_beside_an_equal_top1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import taghead.engine.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    same = [dict(epoch=e, train_loss=1.0 / e, val_loss=1.0 / e, val_top1=e / 4, val_mca=e / 4) for e in (1, 2, 3, 4)]
    apart = [dict(r, val_mca=r["val_top1"] - 0.1) for r in same]
    plots.plot_training_curves({"tag": same, "meanpool": apart}, tmp_path / "c.png")
    accuracy = figures[0].axes[1]
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    assert set(lines) == {"tag MCA (= Top-1 at every epoch)", "tag Top-1", "meanpool MCA", "meanpool Top-1"}
    band, top1 = lines["tag MCA (= Top-1 at every epoch)"], lines["tag Top-1"]
    assert band.get_linewidth() >= 3 * top1.get_linewidth() and band.get_zorder() < top1.get_zorder()  # seen around it
    assert list(band.get_ydata()) == list(top1.get_ydata()) == [25.0, 50.0, 75.0, 100.0]
    assert accuracy.get_ylim()[1] > 100  # a band at 100 % is not cut off
