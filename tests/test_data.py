"""taghead.data: temporal sampling, PyAV decoding, transforms, VideoClipDataset (CSV and folder layouts),
and the unreadable-video policy inside a DataLoader. The videos are small mp4 files encoded here."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from taghead import DataConfig
from taghead.data import (
    CorruptVideoWarning,
    EvalTransform,
    TrainTransform,
    VideoClipDataset,
    VideoDecodeError,
    count_frames,
    load_clip,
    read_clip,
    uniform_frame_indices,
    write_video,
)
from taghead.data.transforms import center_crop, normalize, resized_crop, sample_crop_box, to_float_clip

T_VIDEO, H_VIDEO, W_VIDEO = 12, 32, 48


def make_frames(level_offset: int = 0, t: int = T_VIDEO) -> np.ndarray:
    """Frames whose red channel encodes the frame index (20 * i), green a left-to-right ramp."""
    frames = np.zeros((t, H_VIDEO, W_VIDEO, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = 20 * i + level_offset
    frames[..., 1] = np.linspace(0, 255, W_VIDEO).astype(np.uint8)[None, None, :]
    frames[..., 2] = 90
    return frames


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """root/<class>/<file>.mp4 for two classes (2 + 1 videos) and a reference split CSV."""
    root = tmp_path_factory.mktemp("videos")
    rows = []
    for label, (cls, count) in enumerate((("jump", 2), ("spin", 1))):
        for k in range(count):
            name = f"{cls}_{k}.mp4"
            write_video(root / cls / name, make_frames(level_offset=3 * k))
            rows.append((name, cls, T_VIDEO, label))
    with open(root / "split.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["FileName", "Class", "TotalFrames", "ClassEncoded"])
        writer.writerows(rows)
    return root


# ------------------------------------------------------------------------------------------ sampling
def test_uniform_frame_indices_hand_computed():
    assert uniform_frame_indices(10, 4) == [0, 3, 6, 9]  # 0, 3, 6, 9 exactly
    assert uniform_frame_indices(12, 5) == [0, 2, 5, 8, 11]  # 0, 2.75, 5.5, 8.25, 11
    assert uniform_frame_indices(100, 16) == [0, 6, 13, 19, 26, 33, 39, 46, 52, 59, 66, 72, 79, 85, 92, 99]
    assert uniform_frame_indices(3, 5) == [0, 0, 1, 1, 2]  # shorter than the clip: repeats
    assert uniform_frame_indices(1, 4) == [0, 0, 0, 0]
    assert uniform_frame_indices(7, 1) == [0]


def test_uniform_frame_indices_match_exact_rational_floor():
    # floor(k (N - 1) / (n - 1)) in exact integer arithmetic, except where that ratio is an exact integer
    # and float64 linspace lands just below it (the reference truncates numpy's float linspace).
    for total in range(1, 80):
        for num in range(2, 40):
            got = uniform_frame_indices(total, num)
            for k, index in enumerate(got):
                exact, remainder = divmod(k * (total - 1), num - 1)
                assert index == exact or (remainder == 0 and index == exact - 1), (total, num, k)
    # One such case, by hand: linspace(0, 30, 23)[11] = 14.999999999999998 -> 14 (not 15).
    assert uniform_frame_indices(31, 23)[10:13] == [13, 14, 16]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_uniform_frame_indices_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="positive int"):
        uniform_frame_indices(bad, 4)
    with pytest.raises(ValueError, match="positive int"):
        uniform_frame_indices(10, bad)


# ------------------------------------------------------------------------------------------- video
def test_read_clip_decodes_the_sampled_frames(video_root):
    path = video_root / "jump" / "jump_0.mp4"
    assert count_frames(path) == T_VIDEO
    clip, total = read_clip(path, 5)
    assert clip.dtype == np.uint8 and clip.shape == (5, H_VIDEO, W_VIDEO, 3) and total == T_VIDEO
    # The red level identifies the frame: indices 0, 2, 5, 8, 11 -> levels 0, 40, 100, 160, 220.
    red = clip[..., 0].reshape(5, -1).mean(1)
    np.testing.assert_allclose(red, [0, 40, 100, 160, 220], atol=6)
    reference = make_frames()[[0, 2, 5, 8, 11]].astype(float)
    assert np.abs(clip.astype(float) - reference).mean() < 4  # H.264 at crf 12


def test_read_clip_recovers_from_a_wrong_frame_count(video_root):
    path = video_root / "jump" / "jump_0.mp4"
    for claimed in (14, 5):  # a count a little too high, or too low: resampled from the decoded count
        clip, total = read_clip(path, 4, total_frames=claimed)
        assert total == T_VIDEO
        red = clip[..., 0].reshape(4, -1).mean(1)
        np.testing.assert_allclose(red, [20 * i for i in (0, 3, 7, 11)], atol=6)
    with pytest.raises(VideoDecodeError, match="truncated: 12 frames decode but 30"):
        read_clip(path, 4, total_frames=30)


def test_read_clip_shrinks_while_converting(video_root):
    path = video_root / "jump" / "jump_0.mp4"
    full, _ = read_clip(path, 5)
    small, total = read_clip(path, 5, shrink_to=16)
    assert small.shape == (5, 16, 24, 3) and small.dtype == np.uint8 and total == T_VIDEO
    # Antialiased bilinear shrink of the same frames (torch in float) within a level or two.
    expected = torch.nn.functional.interpolate(torch.from_numpy(full).permute(0, 3, 1, 2).float(), size=(16, 24),
                                               mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    assert (torch.from_numpy(small.copy()).float() - expected).abs().mean() < 2.0
    # Not larger than shrink_to: native size, the very frames read_clip gives without it.
    for size in (32, 40):
        np.testing.assert_array_equal(read_clip(path, 5, shrink_to=size)[0], full)
    # A clip longer than the video repeats frames, shrunk or not.
    repeated, _ = read_clip(path, 20, shrink_to=16)
    assert np.array_equal(repeated[0], repeated[1]) and np.array_equal(repeated[0], small[0])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="shrink_to"):
            read_clip(path, 5, shrink_to=bad)


def test_decoder_threads(video_root):
    from taghead.data.video import _resolve_threads

    path = video_root / "spin" / "spin_0.mp4"
    single, _ = read_clip(path, 6, threads=1)
    for threads in (0, 2, None):  # decoding is exact whatever the threading
        np.testing.assert_array_equal(read_clip(path, 6, threads=threads)[0], single)
    assert count_frames(path, threads=1) == T_VIDEO
    with pytest.raises(ValueError, match="threads"):
        read_clip(path, 6, threads=-1)
    # Default: automatic in this process, one thread inside a DataLoader worker.
    assert _resolve_threads(None) == 0

    class Probe(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return _resolve_threads(None)

    assert next(iter(DataLoader(Probe(), num_workers=1))).item() == 1


def encode_faststart(path: Path, frames: np.ndarray) -> None:
    """mp4 with the index (moov) first: a truncated copy still opens and decodes its first frames."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))


def test_a_truncated_file_that_still_decodes_is_reported(tmp_path):
    full = tmp_path / "full.mp4"
    encode_faststart(full, np.random.default_rng(0).integers(0, 256, (24, 32, 48, 3), dtype=np.uint8))
    assert count_frames(full) == 24
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert 0 < count_frames(tmp_path / "cut.mp4") < 20  # it opens and some frames decode
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_clip(tmp_path / "cut.mp4", 8)


def test_unreadable_files_raise_video_decode_error(tmp_path, video_root):
    data = (video_root / "jump" / "jump_0.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("truncated.mp4", "random.mp4", "empty.mp4", "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=name):
            read_clip(tmp_path / name, 4)


def test_write_video_gives_the_file_the_permissions_of_a_plainly_created_one(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_a_failing_encoder_leaves_the_previous_video_and_no_temporary_file(tmp_path):
    path = write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    before = path.read_bytes()
    with pytest.raises(Exception, match="libnope|codec|encoder"):
        write_video(path, np.full((2, 8, 8, 3), 255, np.uint8), codec="libnope")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 7, 8, 3), np.uint8))
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------------------------------- transforms
def random_frames(t=4, h=40, w=60, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def test_eval_transform_shapes_values_and_centre_crop():
    cfg = DataConfig(num_frames=4, crop_size=20, resize_size=None, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    frames = random_frames()
    out = EvalTransform(cfg)(frames)
    assert out.shape == (3, 4, 20, 20) and out.dtype == torch.float32
    # Centre crop of a 40x60 frame: rows 10..29, columns 20..39; normalised with the config's mean/std.
    raw = frames[:, 10:30, 20:40].permute(3, 0, 1, 2).float() / 255
    expected = (raw - torch.tensor(cfg.mean).view(3, 1, 1, 1)) / torch.tensor(cfg.std).view(3, 1, 1, 1)
    torch.testing.assert_close(out, expected)


def test_normalisation_uses_the_config_mean_and_std():
    frames = torch.full((2, 16, 16, 3), 153, dtype=torch.uint8)  # 153 / 255 = 0.6
    for mean, std in (((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)), ((0.2, 0.4, 0.6), (0.5, 0.25, 0.1))):
        cfg = DataConfig(num_frames=2, crop_size=16, resize_size=None, mean=mean, std=std)
        for transform in (EvalTransform(cfg), TrainTransform(cfg, generator=torch.Generator().manual_seed(0))):
            out = transform(frames)
            for c in range(3):
                torch.testing.assert_close(out[c], torch.full_like(out[c], (0.6 - mean[c]) / std[c]))


def test_eval_transform_resizes_the_shorter_side():
    cfg = DataConfig(num_frames=4, crop_size=16, resize_size=20)
    frames = random_frames(h=40, w=60)
    out = EvalTransform(cfg)(frames)
    assert out.shape == (3, 4, 16, 16)
    lo, hi = (0 - 0.45) / 0.225, (1 - 0.45) / 0.225
    assert out.min() >= lo - 1e-5 and out.max() <= hi + 1e-5
    # Tall frames: the width is the shorter side.
    assert EvalTransform(DataConfig(4, 16, 20))(random_frames(h=60, w=40)).shape == (3, 4, 16, 16)
    with pytest.raises(ValueError, match="crop"):
        EvalTransform(DataConfig(4, 64, None))(random_frames(h=40, w=60))


def test_train_transform_flip_is_a_mirror_of_the_whole_clip():
    cfg = DataConfig(num_frames=4, crop_size=32, resize_size=None)
    frames = random_frames(h=32, w=32)
    plain = EvalTransform(cfg)(frames)
    flipped = TrainTransform(cfg, hflip_p=1.0, scale=(1.0, 1.0))(frames)
    kept = TrainTransform(cfg, hflip_p=0.0, scale=(1.0, 1.0))(frames)
    torch.testing.assert_close(flipped, plain.flip(-1))
    torch.testing.assert_close(kept, plain)
    # p = 0.5: both outcomes happen, in about half of the draws.
    g = torch.Generator().manual_seed(0)
    half = TrainTransform(cfg, hflip_p=0.5, scale=(1.0, 1.0), generator=g)
    flips = sum(bool(torch.equal(half(frames), flipped)) for _ in range(200))
    assert 70 < flips < 130


def test_crop_boxes_are_square_in_bounds_and_cover_the_scale_range():
    g = torch.Generator().manual_seed(1)
    h, w = 40, 60
    fractions = []
    for _ in range(2000):
        top, left, side = sample_crop_box(h, w, (0.5, 1.0), g)
        assert 0 <= top and top + side <= h and 0 <= left and left + side <= w
        fractions.append(side * side / (h * w))
    fractions = np.array(fractions)
    # Squares of a 40x60 frame: at most 40x40 = 2/3 of the area (larger draws are redrawn), at least ~0.5.
    assert fractions.min() >= 0.5 - 0.02 and fractions.max() <= 2 / 3 + 1e-9
    assert fractions.min() < 0.52 and fractions.max() > 0.64  # both ends of the range are reached
    # A square frame: the full scale range (0.5, 1).
    square = np.array([sample_crop_box(50, 50, (0.5, 1.0), g)[2] ** 2 / 2500 for _ in range(2000)])
    assert square.min() >= 0.49 and square.max() <= 1.0 and square.min() < 0.52 and square.max() > 0.97
    assert abs(square.mean() - 0.75) < 0.02  # uniform area fraction


def test_train_transform_matches_torchvision_resized_crop():
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    cfg = DataConfig(num_frames=4, crop_size=24, resize_size=None, mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3))
    frames = random_frames(h=40, w=60, seed=3)
    out = TrainTransform(cfg, hflip_p=0.0, generator=torch.Generator().manual_seed(5))(frames)
    g = torch.Generator().manual_seed(5)
    torch.rand((), generator=g)  # the flip draw
    top, left, side = sample_crop_box(40, 60, (0.5, 1.0), g)
    images = frames.permute(0, 3, 1, 2).float() / 255  # [T, 3, H, W]
    crop = tvf.resized_crop(images, top, left, side, side, [24, 24], antialias=True)
    expected = tvf.normalize(crop, list(cfg.mean), list(cfg.std)).permute(1, 0, 2, 3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_frames_already_at_the_resize_size_are_not_resized_again():
    cfg = DataConfig(num_frames=4, crop_size=20, resize_size=28, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    frames = random_frames(h=28, w=42)  # shorter side already 28 (as load_clip decodes them)
    plain = DataConfig(num_frames=4, crop_size=20, resize_size=None, mean=cfg.mean, std=cfg.std)
    torch.testing.assert_close(EvalTransform(cfg)(frames), EvalTransform(plain)(frames))
    a = TrainTransform(cfg, generator=torch.Generator().manual_seed(2))(frames)
    b = TrainTransform(plain, generator=torch.Generator().manual_seed(2))(frames)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed", range(4))
def test_train_transform_is_flip_then_random_resized_crop(seed):
    """Cropping the mirrored box and mirroring the crop is the same as flipping the clip and cropping the box."""
    cfg = DataConfig(num_frames=3, crop_size=24, resize_size=36, mean=(0.3, 0.4, 0.5), std=(0.2, 0.25, 0.3))
    frames = random_frames(t=3, h=40, w=70, seed=seed)
    out = TrainTransform(cfg, hflip_p=0.5, generator=torch.Generator().manual_seed(seed))(frames)
    g = torch.Generator().manual_seed(seed)
    clip = torch.nn.functional.interpolate(to_float_clip(frames).transpose(0, 1), size=(36, 63), mode="bilinear",
                                           antialias=True).transpose(0, 1)
    if torch.rand((), generator=g).item() < 0.5:
        clip = clip.flip(-1)
    top, left, side = sample_crop_box(36, 63, (0.5, 1.0), g)
    expected = normalize(resized_crop(clip, top, left, side, 24), cfg.mean, cfg.std)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_center_crop_and_normalize_take_uint8_or_float_clips():
    frames = random_frames(h=30, w=44, seed=4)
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    as_uint8 = frames.permute(3, 0, 1, 2)
    as_float = to_float_clip(frames)
    crop8, crop32 = center_crop(as_uint8, 20), center_crop(as_float, 20)
    assert crop8.dtype == torch.uint8 and crop8.shape == (3, 4, 20, 20)
    torch.testing.assert_close(crop8.float() / 255, crop32)
    expected = (crop32 - torch.tensor(mean).view(3, 1, 1, 1)) / torch.tensor(std).view(3, 1, 1, 1)
    torch.testing.assert_close(normalize(crop8, mean, std), expected)
    torch.testing.assert_close(normalize(crop32, mean, std), expected)
    assert normalize(crop32.double(), mean, std).dtype == torch.float64 and normalize(crop32, mean, std).is_contiguous()
    for bad in (as_uint8.int(), as_float[:2], as_float[0]):
        with pytest.raises(ValueError, match=r"expected a uint8 or float clip \[3, T, H, W\]"):
            normalize(bad, mean, std)
    with pytest.raises(ValueError, match="cannot centre-crop 31x31 from frames of 30x44"):
        center_crop(as_uint8, 31)


def test_train_transform_is_seedable():
    cfg = DataConfig(num_frames=4, crop_size=24, resize_size=30)
    frames = random_frames()
    a = TrainTransform(cfg, generator=torch.Generator().manual_seed(7))
    b = TrainTransform(cfg, generator=torch.Generator().manual_seed(7))
    outs_a, outs_b = [a(frames) for _ in range(5)], [b(frames) for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b))
    assert not all(torch.equal(outs_a[0], x) for x in outs_a[1:])
    assert outs_a[0].shape == (3, 4, 24, 24)


def test_transforms_reject_bad_input():
    cfg = DataConfig(num_frames=4, crop_size=16, resize_size=None)
    with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, 3\]"):
        EvalTransform(cfg)(torch.zeros(4, 16, 16, 3))
    with pytest.raises(ValueError, match=r"uint8 frames \[T, H, W, 3\]"):
        EvalTransform(cfg)(np.zeros((3, 4, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="hflip_p"):
        TrainTransform(cfg, hflip_p=1.5)
    with pytest.raises(ValueError, match="scale"):
        TrainTransform(cfg, scale=(0.0, 1.0))
    with pytest.raises(TypeError, match="DataConfig"):
        EvalTransform({"num_frames": 4})


# ------------------------------------------------------------------------------------------ dataset
CFG = DataConfig(num_frames=6, crop_size=24, resize_size=28)


def test_dataset_from_folder(video_root):
    ds = VideoClipDataset.from_folder(video_root, CFG)
    assert ds.class_names == ["jump", "spin"] and ds.num_classes == 2 and len(ds) == 3
    assert [Path(s.path).name for s in ds.samples] == ["jump_0.mp4", "jump_1.mp4", "spin_0.mp4"]
    assert [s.label for s in ds.samples] == [0, 0, 1]
    video, label = ds[2]
    assert video.shape == (3, 6, 24, 24) and video.dtype == torch.float32 and label == 1
    torch.testing.assert_close(video, load_clip(ds.samples[2].path, CFG))
    # An explicit class order wins over the alphabetical one.
    flipped = VideoClipDataset.from_folder(video_root, CFG, class_names=["spin", "jump"])
    assert {Path(s.path).name: s.label for s in flipped.samples} == {"spin_0.mp4": 0, "jump_0.mp4": 1, "jump_1.mp4": 1}
    with pytest.raises(ValueError, match="not in class_names"):
        VideoClipDataset.from_folder(video_root, CFG, class_names=["jump"])


def test_dataset_from_csv(video_root, tmp_path):
    ds = VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, train=True,
                                   generator=torch.Generator().manual_seed(0))
    assert ds.class_names == ["jump", "spin"] and [s.label for s in ds.samples] == [0, 0, 1]
    assert all(s.total_frames == T_VIDEO for s in ds.samples)
    assert ds.samples[1].path == str(video_root / "jump" / "jump_1.mp4")
    batch, labels = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, 3, 6, 24, 24) and labels.tolist() == [0, 0, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("FileName,Class,ClassEncoded\na.mp4,jump,0\n")
    with pytest.raises(ValueError, match="TotalFrames"):
        VideoClipDataset.from_csv(bad, video_root, CFG)
    bad.write_text("FileName,Class,TotalFrames,ClassEncoded\na.mp4,jump,12,0\nb.mp4,spin,12,0\n")
    with pytest.raises(ValueError, match="ClassEncoded 0"):
        VideoClipDataset.from_csv(bad, video_root, CFG)


def test_dataset_from_csv_with_the_models_class_count(video_root, tmp_path):
    # A split lacking classes: the class count comes from num_classes (the model's), not max(ClassEncoded) + 1.
    ds = VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, num_classes=5)
    assert ds.num_classes == 5 and ds.class_names == ["jump", "spin", "class_2", "class_3", "class_4"]
    assert [s.label for s in ds.samples] == [0, 0, 1]
    named = VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, class_names=["jump", "spin", "c", "d"])
    assert named.num_classes == 4 and named.class_names == ["jump", "spin", "c", "d"]
    # Given names must agree with the split's Class column: another class order is an error, not a relabelling.
    with pytest.raises(ValueError, match=r"split.csv:2: ClassEncoded 0 is 'jump' here but 'spin' in the given class"):
        VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, class_names=["spin", "jump"])
    with pytest.raises(ValueError, match=r"split.csv:4: ClassEncoded 1 \('spin'\) is outside the 1 classes, \[0, 1\)"):
        VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, num_classes=1)
    with pytest.raises(ValueError, match=r"split.csv:4: ClassEncoded 1 \('spin'\) is outside the 1 classes"):
        VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, class_names=["jump"])
    with pytest.raises(ValueError, match="2 class names were given for num_classes=3"):
        VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, class_names=["a", "b"], num_classes=3)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="num_classes must be a positive int"):
            VideoClipDataset.from_csv(video_root / "split.csv", video_root, CFG, num_classes=bad)


def test_dataset_rejects_bad_arguments(video_root):
    with pytest.raises(TypeError, match="DataConfig"):
        VideoClipDataset([("a.mp4", 0)], ["a"], {"num_frames": 4})
    with pytest.raises(ValueError, match="label 3"):
        VideoClipDataset([("a.mp4", 3)], ["a", "b"], CFG)
    with pytest.raises(ValueError, match="at least one"):
        VideoClipDataset([], ["a"], CFG)


@pytest.fixture()
def root_with_corrupt_files(tmp_path, video_root) -> Path:
    root = tmp_path / "set"
    for cls in ("jump", "spin"):
        (root / cls).mkdir(parents=True)
        for f in (video_root / cls).iterdir():
            (root / cls / f.name).write_bytes(f.read_bytes())
    data = (video_root / "jump" / "jump_0.mp4").read_bytes()
    (root / "jump" / "jump_0b_truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    (root / "spin" / "spin_0b_random.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    return root


def test_corrupt_videos_are_replaced_counted_and_warned_once(root_with_corrupt_files):
    ds = VideoClipDataset.from_folder(root_with_corrupt_files, CFG)
    names = [Path(s.path).name for s in ds.samples]
    assert names == ["jump_0.mp4", "jump_0b_truncated.mp4", "jump_1.mp4", "spin_0.mp4", "spin_0b_random.mp4"]
    assert ds.failure_summary() is None  # nothing failed yet: no line to print
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptVideoWarning)]
    assert len(messages) == 2  # once per file, not once per access
    assert any("jump_0b_truncated.mp4" in m for m in messages) and any("spin_0b_random.mp4" in m for m in messages)
    # Replacement = the next readable item (wrapping around), with its label.
    torch.testing.assert_close(items[1][0], items[2][0])
    assert items[1][1] == 0
    torch.testing.assert_close(items[4][0], items[0][0])
    assert items[4][1] == 0
    assert ds.num_replaced == 4 and sorted(Path(p).name for p in ds.bad_files) == names[1:2] + names[4:5]
    summary = ds.failure_summary()
    assert "4 item(s) replaced" in summary
    # named by the path below the data root: unambiguous when two class folders hold files of the same name
    assert f": {os.path.join('jump', 'jump_0b_truncated.mp4')} (" in summary
    assert f", {os.path.join('spin', 'spin_0b_random.mp4')} (" in summary
    ds.reset_failures()
    assert ds.num_replaced == 0 and len(ds.bad_files) == 2


def test_corrupt_videos_inside_a_dataloader_with_workers(root_with_corrupt_files):
    ds = VideoClipDataset.from_folder(root_with_corrupt_files, CFG, train=True)
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=True)
    for epoch in range(2):
        ds.reset_failures()
        seen = 0
        for videos, labels in loader:
            assert torch.isfinite(videos).all() and videos.shape[1:] == (3, 6, 24, 24)
            seen += len(labels)
        assert seen == len(ds)  # the epoch completed with every item
        # Counted in the main process although the workers did the decoding.
        assert ds.num_replaced == 2, epoch
        assert sorted(Path(p).name for p in ds.bad_files) == ["jump_0b_truncated.mp4", "spin_0b_random.mp4"]
        assert ds.failures == {p: 1 for p in ds.bad_files}


def test_a_dataset_without_readable_videos_raises(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"not a video")
    ds = VideoClipDataset.from_folder(tmp_path, CFG)
    with pytest.warns(CorruptVideoWarning), pytest.raises(RuntimeError, match="no readable video"):
        ds[0]


def test_frames_streamed_in_and_out_and_the_clip_source(tmp_path):
    """write_video from a generator at a fractional rate, iter_frames back (resized), frame_rate, and which source
    frames (and times) load_clip_with_source's clip holds."""
    from taghead.data import frame_rate, iter_frames, load_clip_with_source

    frames = np.concatenate([make_frames(), make_frames(), make_frames()[:6]])  # 30 frames, red = 20 * (i mod 12)
    path = write_video(tmp_path / "v.mp4", (f for f in frames), fps=29.97, crf=0)
    assert frame_rate(path) == pytest.approx(29.97, abs=1e-3) and count_frames(path) == 30
    back = list(iter_frames(path, resize_to=16))
    assert len(back) == 30 and back[0].shape == (16, 24, 3)
    assert [int(f[..., 0].mean() > 100) for f in iter_frames(path)][:3] == [int(20 * i > 100) for i in range(3)]
    clip, source = load_clip_with_source(path, DataConfig(num_frames=4, crop_size=24, resize_size=None))
    torch.testing.assert_close(clip, load_clip(path, DataConfig(num_frames=4, crop_size=24, resize_size=None)))
    assert source.frame_indices == tuple(uniform_frame_indices(30, 4)) == (0, 9, 19, 29) and source.total_frames == 30
    assert source.frame_labels() == [f"frame {i}, {i / 29.97:.2f} s" for i in (0, 9, 19, 29)]
    with pytest.raises(ValueError, match="frame 1 is 32x46, the first frame 32x48"):
        write_video(tmp_path / "bad.mp4", iter([frames[0], frames[1][:, :46]]))
    with pytest.raises(ValueError, match="at least one frame"):
        write_video(tmp_path / "none.mp4", iter([]))
    assert not (tmp_path / "bad.mp4").exists() and not (tmp_path / "none.mp4").exists()  # nothing half-written
