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
    for name in ("demo_curves.png", "example_clip.mp4", "tag_model/config.json", "tag_model/model.safetensors",
                 "runs/tag/metrics.csv", "runs/meanpool/metrics.csv"):
        assert (tmp_path / name).is_file(), name


def test_demo_rejects_unknown_heads(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--heads", "tag,nope", "--output", str(tmp_path)]) == 2
    assert "unknown head(s) ['nope']" in capsys.readouterr().err
