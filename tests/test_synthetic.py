"""taghead.data.synthetic: determinism, balance, formats, no global shortcut, and the mp4 round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taghead import DataConfig
from taghead.data import SYNTHETIC_CLASSES, SyntheticFineGrainedDataset, VideoClipDataset, write_videos


def test_items_are_deterministic_and_seeded():
    a = SyntheticFineGrainedDataset(12, seed=3)
    b = SyntheticFineGrainedDataset(12, seed=3)
    # Same clip whatever the access order.
    for i in (7, 0, 11, 7):
        va, la = a[i]
        vb, lb = b[i]
        assert torch.equal(va, vb) and la == lb
    other_seed = SyntheticFineGrainedDataset(12, seed=4)
    other_split = SyntheticFineGrainedDataset(12, seed=3, split="val")
    for i in range(3):
        assert not torch.equal(a[i][0], other_seed[i][0])
        assert not torch.equal(a[i][0], other_split[i][0])
        assert not torch.equal(a[i][0], a[i + a.num_classes][0])  # same class, different clip


def test_shapes_dtypes_labels_and_names():
    ds = SyntheticFineGrainedDataset(40, num_frames=16, size=64, num_classes=8)
    video, label = ds[4]
    assert video.shape == (3, 16, 64, 64) and video.dtype == torch.float32 and isinstance(label, int)
    frames, label2 = ds.render(4)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == torch.uint8 and label2 == label
    # Normalised with the (default) config: (x / 255 - 0.45) / 0.225.
    torch.testing.assert_close(video, (frames.permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225)
    assert np.bincount(ds.labels).tolist() == [5] * 8  # balanced
    assert ds.class_names == [name for name, _ in SYNTHETIC_CLASSES] and len(set(ds.class_names)) == 8
    assert ds.data_config.num_frames == 16 and ds.data_config.crop_size == 64 and ds.data_config.resize_size is None
    small = SyntheticFineGrainedDataset(8, num_frames=8, size=32, num_classes=4)
    assert small[0][0].shape == (3, 8, 32, 32) and small.num_classes == 4 and max(small.labels) == 3
    custom = DataConfig(num_frames=16, crop_size=64, resize_size=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    v = SyntheticFineGrainedDataset(4, data_config=custom)[0][0]
    assert v.min() >= -1 - 1e-6 and v.max() <= 1 + 1e-6 and v.min() < -0.3


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticFineGrainedDataset(10, num_classes=9)
    with pytest.raises(ValueError, match="split"):
        SyntheticFineGrainedDataset(10, split="training")
    with pytest.raises(ValueError, match="clips have 16 frames of 64x64"):
        SyntheticFineGrainedDataset(10, data_config=DataConfig(num_frames=16, crop_size=112))
    with pytest.raises(ValueError, match="size"):
        SyntheticFineGrainedDataset(10, size=33)
    with pytest.raises(IndexError):
        SyntheticFineGrainedDataset(10)[10]


def global_statistics(frames: torch.Tensor) -> np.ndarray:
    """Per clip: mean colour, brightness spread, frame-difference energy and its profile over three thirds."""
    x = frames.numpy().astype(np.float32) / 255  # [T, H, W, 3]
    diff = np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3))  # [T-1]
    thirds = diff[: (len(diff) // 3) * 3].reshape(3, -1).mean(1)
    return np.concatenate([x.mean(axis=(0, 1, 2)), [x.std(), diff.mean()], thirds])


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, steps: int = 300) -> torch.nn.Linear:
    torch.manual_seed(0)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    model = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt) + 1e-3 * model.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model


def test_global_statistics_do_not_reveal_the_class():
    train = SyntheticFineGrainedDataset(320, seed=0)
    test = SyntheticFineGrainedDataset(320, seed=0, split="val")

    def table(ds):
        return np.stack([global_statistics(ds.render(i)[0]) for i in range(len(ds))]), np.array(ds.labels)

    (x_train, y_train), (x_test, y_test) = table(train), table(test)
    assert (x_train.std(0) > 0).all()  # the statistics vary from clip to clip
    mean, std = x_train.mean(0), x_train.std(0)
    model = fit_logistic_regression((x_train - mean) / std, y_train, 8)
    with torch.no_grad():
        pred = model(torch.tensor((x_test - mean) / std, dtype=torch.float32)).argmax(1).numpy()
    accuracy = float((pred == y_test).mean())
    # Chance is 1/8 = 0.125; with 320 test clips the standard error is ~0.02.
    assert accuracy < 0.22, accuracy
    # Per-class means of each statistic agree: their range over the 8 classes stays within what
    # sampling noise gives (40 clips per class; the range of 8 draws rarely exceeds 5 standard errors).
    class_means = np.stack([x_train[y_train == c].mean(0) for c in range(8)])
    assert (np.ptp(class_means, axis=0) < 5 * std / np.sqrt(40)).all()


def test_a_logistic_regression_does_separate_classes_that_differ_globally():
    """Positive control of the test above: the same pipeline detects a global difference when there is one."""
    ds = SyntheticFineGrainedDataset(128, seed=0)
    x = np.stack([global_statistics(ds.render(i)[0]) for i in range(len(ds))])
    y = np.array(ds.labels)
    x[:, 4] += 0.3 * x[:, 4].std() * y  # a motion-energy shift that grows with the label
    mean, std = x.mean(0), x.std(0)
    model = fit_logistic_regression((x - mean) / std, y, 8)
    with torch.no_grad():
        accuracy = float((model(torch.tensor((x - mean) / std, dtype=torch.float32)).argmax(1).numpy() == y).mean())
    assert accuracy > 0.4


def test_mp4_round_trip_through_video_clip_dataset(tmp_path):
    ds = SyntheticFineGrainedDataset(8, seed=1)  # one clip per class
    csv_path = write_videos(tmp_path, ds)
    assert csv_path == tmp_path / "train.csv"
    header, *rows = csv_path.read_text().splitlines()
    assert header == "FileName,Class,TotalFrames,ClassEncoded" and len(rows) == 8
    assert all((tmp_path / name / f"train_{i:05d}.mp4").is_file() for i, name in enumerate(ds.class_names))
    from_csv = VideoClipDataset.from_csv(csv_path, tmp_path, ds.data_config)
    from_folder = VideoClipDataset.from_folder(tmp_path, ds.data_config, class_names=ds.class_names)
    assert from_csv.class_names == ds.class_names
    for read in (from_csv, from_folder):
        assert len(read) == 8
        for i in range(8):
            video, label = read[i]
            rendered, expected_label = ds[int(read.samples[i].path[-9:-4])]
            assert label == expected_label
            assert video.shape == rendered.shape
            # H.264 (crf 12, yuv420p) changes pixels a little: mean error below 3/255 (in normalised units / 0.225).
            assert (video - rendered).abs().mean() < 3 / 255 / 0.225
    assert not from_csv.bad_files
