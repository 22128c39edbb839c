"""``taghead demo --quick``: the whole demo path (render, train both heads, table, plot, save -> reload -> predict an mp4)."""

from __future__ import annotations

from pathlib import Path

from taghead.cli import main


def test_quick_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--output", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| head | val Top-1 | val MCA")
    assert [row.split("|")[1].strip() for row in table[2:]] == ["tag", "meanpool"]
    assert "TAG-Head vs mean pooling:" in out
    assert "identical logits: True" in out
    assert f"prediction on {tmp_path / 'example_clip.mp4'} (decoded with PyAV)" in out
    assert f"explanation of that clip (HiResCAM): {tmp_path / 'example_explanation.png'}; the heatmap is " in out
    for name in ("demo_curves.png", "example_clip.mp4", "tag_model/config.json", "tag_model/model.safetensors",
                 "runs/tag/metrics.csv", "runs/meanpool/metrics.csv", "example_explanation.png"):
        assert (tmp_path / name).is_file(), name


def test_demo_rejects_unknown_heads(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--heads", "tag,nope", "--output", str(tmp_path)]) == 2
    assert "unknown head(s) ['nope']" in capsys.readouterr().err


def test_quick_demo_with_art_rows_with_and_without_text_bank(tmp_path: Path, capsys) -> None:
    import taghead

    assert main(["demo", "--quick", "--heads", "art,art-notext", "--output", str(tmp_path), "--no-progress"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[2:]] == ["art", "art-notext"]
    for name in ("runs/art/metrics.csv", "runs/art-notext/metrics.csv", "art_model/config.json"):
        assert (tmp_path / name).is_file(), name
    assert taghead.from_pretrained(tmp_path / "art_model").head.has_text  # the saved one is "art", with its bank
    header = (tmp_path / "runs/art-notext/metrics.csv").read_text().splitlines()[0]
    with_text = (tmp_path / "runs/art/metrics.csv").read_text().splitlines()[0]
    assert "train_text_video" in with_text and "train_text_video" not in header  # text-bank losses need a bank


def test_demo_rejects_repeated_heads(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--heads", "tag,tag", "--output", str(tmp_path)]) == 2
    assert "names a head twice" in capsys.readouterr().err


def test_quick_demo_with_the_attentive_probe(tmp_path: Path, capsys) -> None:
    import taghead

    assert main(["demo", "--quick", "--heads", "tag,attentive", "--output", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table[2:]] == ["tag", "attentive"]
    assert "TAG-Head vs the attentive probe:" in out and "TAG-Head vs mean pooling" not in out
    assert (tmp_path / "runs/attentive/metrics.csv").is_file()
    probe = taghead.wrap_backbone("taghead/tiny_video_cnn", 8, head="attentive", num_frames=8, crop_size=32,
                                  backbone_kwargs={"width": 4}, embed_dim=16, num_heads=2, depth=1, mlp_ratio=2.0)
    params = sum(p.numel() for p in probe.parameters())
    assert "| attentive |" in out and f"{params / 1e3:.1f} k" in out  # the recipe's probe was trained
