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


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, steps: int = 500,
                            lr: float = 0.5, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent (numpy): ``(weight, bias)``."""
    weight, bias = np.zeros((x.shape[1], num_classes)), np.zeros(num_classes)
    onehot = np.eye(num_classes)[y]
    for _ in range(steps):
        logits = x @ weight + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(x)
        weight -= lr * (x.T @ grad + l2 * weight)
        bias -= lr * grad.sum(0)
    return weight, bias


@pytest.fixture(scope="module")
def statistics_tables() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Global statistics of 200 training and 200 validation clips, with their labels."""

    def table(ds):
        return np.stack([global_statistics(ds.render(i)[0]) for i in range(len(ds))]), np.array(ds.labels)

    return table(SyntheticFineGrainedDataset(200, seed=0)), table(SyntheticFineGrainedDataset(200, seed=0, split="val"))


def held_out_accuracy(x_train, y_train, x_test, y_test) -> float:
    mean, std = x_train.mean(0), x_train.std(0)
    weight, bias = fit_logistic_regression((x_train - mean) / std, y_train, 8)
    pred = (((x_test - mean) / std) @ weight + bias).argmax(1)
    return float((pred == y_test).mean())


def test_global_statistics_do_not_reveal_the_class(statistics_tables):
    (x_train, y_train), (x_test, y_test) = statistics_tables
    assert (x_train.std(0) > 0).all()  # the statistics vary from clip to clip
    accuracy = held_out_accuracy(x_train, y_train, x_test, y_test)
    # Chance is 1/8 = 0.125; with 200 test clips the standard error is ~0.023.
    assert accuracy < 0.23, accuracy
    # Per-class means of each statistic agree: their range over the 8 classes stays within what
    # sampling noise gives (25 clips per class; the range of 8 draws rarely exceeds 5 standard errors).
    std = x_train.std(0)
    class_means = np.stack([x_train[y_train == c].mean(0) for c in range(8)])
    assert (np.ptp(class_means, axis=0) < 5 * std / np.sqrt(25)).all()


def test_a_logistic_regression_does_separate_classes_that_differ_globally(statistics_tables):
    """Positive control of the test above: the same pipeline detects a global difference when there is one."""
    (x_train, y_train), (x_test, y_test) = statistics_tables
    shifted = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        x = x.copy()
        x[:, 4] += 0.4 * x_train[:, 4].std() * y  # a motion-energy shift that grows with the label
        shifted += [x, y]
    assert held_out_accuracy(*shifted) > 0.35


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


def test_rendered_clips_serve_the_same_items_and_keep_their_source():
    from taghead.engine.datasets import RenderedClips

    ds = SyntheticFineGrainedDataset(6, num_frames=8, size=32, num_classes=3, seed=2, split="val")
    rendered = RenderedClips.render(ds)
    assert rendered.source is ds and len(rendered) == 6 and rendered.class_names == ds.class_names
    for i in (0, 5):
        torch.testing.assert_close(rendered[i][0], ds[i][0])
        assert rendered[i][1] == ds[i][1]
    assert RenderedClips(rendered.frames, rendered.labels, ds.class_names, ds.data_config).source is None
