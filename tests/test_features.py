"""Feature caches: extraction (maps, views, shards, resume after a kill, two processes, unreadable videos), training
heads on the cache (the same result as from videos), the full model it gives back, and the guard rails.

The videos are small mp4 files written here: three classes told apart by their dominant colour channel, 8
frames of 40x48 pixels, for the tiny CNN (width 4) at 8 frames and a 32-pixel crop.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import taghead
from taghead.cli import main
from taghead.data import CorruptVideoWarning, VideoClipDataset, load_clip, write_video
from taghead.engine import TrainConfig, Trainer, load_model, seed_everything
from taghead.engine.checkpoint import load_checkpoint
from taghead.features import FeatureCacheError, FeatureDataset, backbone_fingerprint, extract_features
from taghead.features.cache import read_split_index
from taghead.weights import load_safetensors, save_safetensors

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
CLASSES = ("blue", "green", "red")
TINY = ["--backbone", "taghead/tiny_video_cnn", "--backbone-kwargs", "width=4", "--num-frames", "8", "--crop-size", "32"]
HEAD = dict(embed_dim=16, num_heads=2, mlp_dim=32, depth=1, dropout=0.1, drop_rate=0.2, pos_embed=False)
HEAD_ARGS = [arg for key, value in HEAD.items() for arg in ("--head-kwargs", f"{key}={json.dumps(value)}")]


def write_colour_videos(root: Path, per_class: int, seed: int) -> Path:
    """``root/<colour>/<colour>_<k>.mp4``: noise with one colour channel raised (a task the tiny model learns)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        for k in range(per_class):
            frames = rng.integers(60, 140, size=(8, 40, 48, 3), dtype=np.uint8)
            frames[..., 2 - c] += 70
            write_video(root / name / f"{name}_{k}.mp4", frames)
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_colour_videos(root / "train", 4, seed=0)
    write_colour_videos(root / "val", 2, seed=1)
    return root


def tiny_model(seed: int = 0, width: int = 4, num_frames: int = 8) -> taghead.VideoClassifier:
    seed_everything(seed)
    return taghead.wrap_backbone("taghead/tiny_video_cnn", 3, head="tag", num_frames=num_frames, crop_size=32,
                                 backbone_kwargs={"width": width}, freeze_backbone=True, **HEAD)


def datasets(videos: Path, model: taghead.VideoClassifier, augment: bool = False) -> tuple[VideoClipDataset, ...]:
    return (VideoClipDataset.from_folder(videos / "train", model.data_config, augment),
            VideoClipDataset.from_folder(videos / "val", model.data_config, False))


@pytest.fixture(scope="module")
def caches(videos: Path, tmp_path_factory) -> dict[str, Path]:
    """One cache per stored dtype of the tiny model's maps (train in 3 shards of <= 5 clips, val in 1)."""
    out = {}
    model = tiny_model()
    train, val = datasets(videos, model)
    for dtype in ("float32", "float16"):
        root = tmp_path_factory.mktemp(dtype)
        extract_features(model, train, root, split="train", dtype=dtype, batch_size=4, shard_size=5, progress=False,
                         log=lambda _: None)
        extract_features(model, val, root, split="val", dtype=dtype, progress=False, log=lambda _: None)
        out[dtype] = root
    return out


def quiet(**changes) -> TrainConfig:
    base = dict(epochs=4, batch_size=4, lr=5e-3, optimizer="adamw", progress=False, tensorboard=False, seed=3)
    return TrainConfig(**{**base, **changes})


# ------------------------------------------------------------------------------------------- extraction
def test_cached_maps_are_the_backbones_outputs(videos: Path, caches: dict[str, Path]) -> None:
    model = tiny_model().eval()
    train, _ = datasets(videos, model)
    exact, half = FeatureDataset(caches["float32"], "train"), FeatureDataset(caches["float16"], "train")
    assert len(exact) == len(half) == len(train) == 12
    assert [s["rows"] for s in exact.index["shards"]] == [5, 5, 2]
    with torch.no_grad():
        expected = model.backbone(torch.stack([train[i][0] for i in range(len(train))]))
    got32 = torch.stack([exact[i][0] for i in range(len(exact))])
    got16 = torch.stack([half[i][0] for i in range(len(half))])
    assert got32.dtype == got16.dtype == torch.float32 and got32.shape == (12, 16, 2, 4, 4)
    assert torch.allclose(got32, expected, atol=1e-6, rtol=0)  # the backbone ran on batches of 4, here of 12
    assert torch.equal(got16, expected.half().float()) or torch.allclose(got16, expected, rtol=1e-3, atol=1e-6)
    assert exact.labels.tolist() == [s.label for s in train.samples]
    assert exact.sources == [s.path for s in train.samples] and exact.class_names == list(CLASSES)
    # The cache describes and holds its backbone: spec, data config, weights with their fingerprint.
    info = exact.info
    assert info["spec"]["backbone"] == "taghead/tiny_video_cnn" and info["spec"]["backbone_kwargs"] == {"width": 4}
    assert info["data_config"] == model.data_config.to_dict() and info["feature_shape"] == [16, 2, 4, 4]
    assert info["weights_sha256"] == backbone_fingerprint(model.backbone)
    assert backbone_fingerprint(load_safetensors(caches["float32"] / "backbone.safetensors")) \
        == info["weights_sha256"]
    # float16 halves the disk per clip.
    size = {d: sum(p.stat().st_size for p in (caches[d] / "train").glob("*.safetensors")) for d in caches}
    assert size["float16"] < 0.6 * size["float32"]


def test_augmented_views_are_stored_and_one_is_drawn_per_clip_and_epoch(videos: Path, tmp_path: Path) -> None:
    model = tiny_model()
    train, _ = datasets(videos, model, augment=True)
    extract_features(model, train, tmp_path / "a", views=3, dtype="float32", batch_size=4, progress=False,
                     log=lambda _: None)
    extract_features(model, train, tmp_path / "b", views=3, dtype="float32", batch_size=3, workers=2, progress=False,
                     log=lambda _: None)
    a, b = FeatureDataset(tmp_path / "a"), FeatureDataset(tmp_path / "b")
    fixed_a = [FeatureDataset(tmp_path / "a", view=v) for v in range(3)]
    fixed_b = [FeatureDataset(tmp_path / "b", view=v) for v in range(3)]
    stored = [torch.stack([fixed_a[v][i][0] for v in range(3)]) for i in range(len(a))]
    assert all(not torch.equal(s[0], s[1]) and not torch.equal(s[1], s[2]) for s in stored)  # distinct augmentations
    # Seeded per clip: the same views with other batches and with worker processes.
    assert all(torch.allclose(stored[i][v], fixed_b[v][i][0], atol=1e-6) for i in range(len(a)) for v in range(3))
    # One view per clip and epoch, the same draw every time the epoch comes back; other epochs draw others.
    draws = {}
    for epoch in range(6):
        a.set_epoch(epoch)
        draws[epoch] = [a.view_of(i) for i in range(len(a))]
        assert all(torch.equal(a[i][0], stored[i][draws[epoch][i]]) for i in (0, 7))
    b.set_epoch(4)
    assert [b.view_of(i) for i in range(len(b))] == draws[4]
    assert len({tuple(d) for d in draws.values()}) > 1 and {v for d in draws.values() for v in d} == {0, 1, 2}


def test_unreadable_videos_are_skipped_counted_and_named(videos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for f in (videos / "train" / name).iterdir():
            (folder / name / f.name).write_bytes(f.read_bytes())
    (folder / "green" / "broken.mp4").write_bytes(b"not a video at all")
    model = tiny_model()
    dataset = VideoClipDataset.from_folder(folder, model.data_config, False)
    lines: list[str] = []
    with pytest.warns(CorruptVideoWarning, match="broken.mp4"):
        index = extract_features(model, dataset, tmp_path / "cache", batch_size=4, progress=False, log=lines.append)
    assert [s["source"] for s in index["skipped"]] == [str(folder / "green" / "broken.mp4")]
    assert index["skipped"][0]["reason"] and index["complete"]
    assert "1 unreadable video(s) of 13 skipped: broken.mp4 (" in lines[-1]
    cached = FeatureDataset(tmp_path / "cache")
    assert len(cached) == 12 and "broken.mp4" not in " ".join(cached.sources)
    assert cached.labels.tolist() == [s.label for s in dataset.samples if "broken" not in s.path]
    with warnings.catch_warnings():  # done: a second run neither retries the file nor extracts anything again
        warnings.simplefilter("error")
        again = extract_features(model, dataset, tmp_path / "cache", progress=False, log=lines.append)
    assert again["shards"] == index["shards"] and again["skipped"] == index["skipped"]


_KILLED_EXTRACTION = """
import os, signal, sys
import taghead.features.extract as extract
import taghead.weights as weights

point, when = sys.argv[1], int(sys.argv[2])
calls = [0]
if point == "before-registration":  # a shard is complete on disk, the index does not list it yet
    real_index = extract.write_split_index
    def write_split_index(folder, index):
        calls[0] += 1
        if calls[0] == when:
            os.kill(os.getpid(), signal.SIGKILL)
        real_index(folder, index)
    extract.write_split_index = write_split_index
else:  # "mid-shard": the process dies half-way through writing a shard's bytes
    real_write = weights.write_safetensors
    def write_safetensors(state, path, metadata=None):
        calls[0] += 1
        real_write(state, path, metadata)
        if calls[0] == when:
            with open(path, "r+b") as fh:
                fh.truncate(os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    weights.write_safetensors = write_safetensors
from taghead.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("point, when", [("before-registration", 3), ("mid-shard", 3)])
def test_a_killed_extraction_resumes_where_it_stopped(videos: Path, caches: dict[str, Path], tmp_path: Path,
                                                      point: str, when: int, capsys) -> None:
    # Index writes: 1 = the empty index, 2 = after shard 1, 3 = after shard 2. Weight files: 1 = backbone.safetensors,
    # 2 = shard 1, 3 = shard 2. Either way the kill hits the second shard of 5 clips.
    args = ["extract-features", *TINY, "--train-dir", str(videos / "train"), "--output", str(tmp_path / "cache"),
            "--dtype", "float32", "--batch-size", "4", "--shard-size", "5", "--seed", "0", "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", _KILLED_EXTRACTION, point, str(when), *args], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    split = tmp_path / "cache" / "train"
    index = read_split_index(split)
    assert not index["complete"] and [s["rows"] for s in index["shards"]] == [5]
    left = sorted(p.name for p in split.iterdir())
    if point == "before-registration":
        assert "r0-0000005.safetensors" in left  # written, never registered
    else:
        assert any(name.endswith(".tmp") for name in left) and "r0-0000005.safetensors" not in left
    with pytest.raises(FeatureCacheError, match=r"incomplete \(5 of 12 clips\).*resume"):
        FeatureDataset(tmp_path / "cache")

    assert main(args) == 0
    assert f"resuming the extraction of {split}: 5 of 12 clips done, 7 to go" in capsys.readouterr().out
    resumed, reference = FeatureDataset(tmp_path / "cache"), FeatureDataset(caches["float32"])
    assert resumed.indices.tolist() == list(range(12))  # every clip once
    assert [s["rows"] for s in resumed.index["shards"]] == [5, 5, 2]
    assert all(torch.allclose(resumed[i][0], reference[i][0], atol=1e-6) for i in range(12))
    assert sorted(p.name for p in split.iterdir()) == ["index.json", "r0-0000000.safetensors", "r0-0000005.safetensors",
                                                      "r0-0000010.safetensors"]  # no leftovers


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``taghead`` in two Gloo processes on the CPU."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "taghead.cli", *args], env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_write_their_own_shards_and_train_on_them(videos: Path, caches: dict[str, Path],
                                                               tmp_path: Path) -> None:
    args = ["extract-features", *TINY, "--train-dir", str(videos / "train"), "--val-dir", str(videos / "val"),
            "--output", str(tmp_path / "cache"), "--dtype", "float32", "--batch-size", "2", "--shard-size", "2",
            "--seed", "0", "--no-progress"]
    run = torchrun(*args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("train: 12 clips") == 1  # rank 0 alone reports
    index = read_split_index(tmp_path / "cache" / "train")
    ranks = {s["rank"]: sorted(i for t in index["shards"] if t["rank"] == s["rank"] for i in t["indices"])
             for s in index["shards"]}
    assert ranks == {0: [0, 2, 4, 6, 8, 10], 1: [1, 3, 5, 7, 9, 11]}  # every second clip, three shards each
    assert sorted(s["file"] for s in index["shards"] if s["rank"] == 1) == [
        "r1-0000001.safetensors", "r1-0000005.safetensors", "r1-0000009.safetensors"]
    for split in ("train", "val"):
        two, one = FeatureDataset(tmp_path / "cache", split), FeatureDataset(caches["float32"], split)
        assert two.indices.tolist() == one.indices.tolist() and two.labels.tolist() == one.labels.tolist()
        assert all(torch.allclose(two[i][0], one[i][0], atol=1e-6) for i in range(len(one)))

    # DistributedDataParallel over the head alone: two processes with batch 2 take the steps of one with batch 4
    # (no dropout: its masks are drawn per process; see tests/test_ddp.py for the comparison).
    head = [arg for key, value in {**HEAD, "dropout": 0.0, "drop_rate": 0.0}.items()
            for arg in ("--head-kwargs", f"{key}={json.dumps(value)}")]
    train = ["train", "--features", str(tmp_path / "cache"), "--head", "tag", *head, "--lr", "5e-3", "--epochs", "2",
             "--seed", "3", "--no-progress", "--no-tensorboard"]
    ddp = torchrun(*train, "--batch-size", "2", "--output", str(tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 process(es) on cpu" in ddp.stdout and "global batch 4" in ddp.stdout
    assert main([*train, "--batch-size", "4", "--output", str(tmp_path / "one")]) == 0
    a, b = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt"), load_checkpoint(tmp_path / "ddp" / "checkpoint_last.pt")
    assert a["global_step"] == b["global_step"] == 6
    for key, tensor in a["model"].items():
        other = b["model"][key]
        if key.endswith("self_attn.in_proj_bias"):  # the key bias has no effect and a zero gradient (test_ddp.py)
            e = tensor.shape[0] // 3
            tensor, other = torch.cat([tensor[:e], tensor[2 * e:]]), torch.cat([other[:e], other[2 * e:]])
        assert torch.allclose(tensor.float(), other.float(), atol=1e-5, rtol=0), key
    rows = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("one", "ddp")]
    top1 = [[r.split(",")[lines[0].split(",").index("val_top1")] for r in lines[1:]] for lines in rows]
    assert top1[0] == top1[1]


# ---------------------------------------------------------------------------------- training on the cache
def test_head_from_the_cache_learns_as_from_the_videos(videos: Path, caches: dict[str, Path]) -> None:
    """Same seed, same sampling, no augmentation, the frozen backbone in eval mode, dropout in the head: float32
    maps give the same run bit for bit; float16 maps the same metrics within the stated tolerance."""
    model = tiny_model()
    train, val = datasets(videos, model)
    runs = {}
    for name, (tr, va) in {"videos": (train, val),
                           **{d: (FeatureDataset(root, "train"), FeatureDataset(root, "val")) for d, root in caches.items()}
                           }.items():
        trained = copy.deepcopy(model)
        runs[name] = (Trainer(trained, tr, va, quiet(), log=lambda _: None).fit(), trained)
    (video_rows, from_videos), (exact_rows, from_exact) = runs["videos"], runs["float32"]
    assert len({r["val_top1"] for r in video_rows}) > 1  # the head does learn: the metrics move
    for a, b in zip(video_rows, exact_rows):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {k: v for k, v in b.items() if k != "epoch_seconds"}
    for (name, p), q in zip(from_videos.state_dict().items(), from_exact.state_dict().values()):
        assert torch.equal(p, q), name
    for a, c in zip(video_rows, runs["float16"][0]):
        for key in ("val_top1", "val_mca", "val_top5"):
            assert abs(a[key] - c[key]) <= 1 / 6 + 1e-9, key  # at most one of the 6 validation clips
        assert abs(a["val_loss"] - c["val_loss"]) < 1e-3 and abs(a["train_loss"] - c["train_loss"]) < 1e-3


def test_build_model_starts_the_head_as_wrap_backbone_does(caches: dict[str, Path]) -> None:
    cached = FeatureDataset(caches["float32"])
    seed_everything(5)
    built = cached.build_model("tag", **HEAD)
    reference = tiny_model(seed=5)
    for (name, p), q in zip(built.head.state_dict().items(), reference.head.state_dict().values()):
        assert torch.equal(p, q), name
    assert backbone_fingerprint(built.backbone) == cached.info["weights_sha256"]  # the extraction's weights
    assert built.backbone.frozen and built.spec["freeze_backbone"] and built.label_names == list(CLASSES)


def test_training_resumes_on_the_cache(videos: Path, tmp_path: Path) -> None:
    """Killed after epoch 2 of 3 (an exception at the epoch-3 log line) and resumed: the same weights as one run,
    with two stored views per clip (the drawn views follow the epoch, not the process)."""
    model = tiny_model()
    train, _ = datasets(videos, model, augment=True)
    extract_features(model, train, tmp_path / "cache", views=2, batch_size=4, progress=False, log=lambda _: None)
    cached = FeatureDataset(tmp_path / "cache")
    full = copy.deepcopy(model)
    Trainer(full, cached, None, quiet(epochs=3), log=lambda _: None).fit()

    def stop_at_epoch_3(line: str) -> None:
        if line.startswith("epoch 3/3"):
            raise KeyboardInterrupt

    first = copy.deepcopy(model)
    with pytest.raises(KeyboardInterrupt):
        Trainer(first, FeatureDataset(tmp_path / "cache"), None, quiet(epochs=3), output_dir=tmp_path / "run",
                log=stop_at_epoch_3).fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["epoch"] == 2
    resumed = copy.deepcopy(model)
    trainer = Trainer(resumed, FeatureDataset(tmp_path / "cache"), None, quiet(epochs=3), output_dir=tmp_path / "run",
                      log=lambda _: None)
    trainer.resume(tmp_path / "run" / "checkpoint_last.pt")
    trainer.fit()
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_the_cli_result_is_a_full_model_for_videos(videos: Path, tmp_path: Path, capsys) -> None:
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["extract-features", *TINY, "--train-dir", str(videos / "train"), "--val-dir", str(videos / "val"),
                 "--output", str(cache), "--seed", "0", "--no-progress"]) == 0
    assert main(["train", "--features", str(cache), "--head", "tag", *HEAD_ARGS, "--lr", "5e-3", "--optimizer", "adamw",
                 "--epochs", "3", "--batch-size", "4", "--no-progress", "--no-tensorboard", "--output", str(run)]) == 0
    out = capsys.readouterr().out
    assert "(cached feature maps: the head alone)" in out and "done: 3 epochs" in out
    # the start-up lines name the situation: a new head on the cache's frozen backbone, with the extracted weights
    assert f"recipe: from scratch (--features {cache}: a new head on the cache's frozen backbone)" in out
    assert f"weights: backbone taghead/tiny_video_cnn from the feature cache {cache} (as extracted, frozen)" in out
    for name in ("metrics.csv", "checkpoint_last.pt", "checkpoint_best.pt", "curves.png", "best/config.json"):
        assert (run / name).is_file(), name
    # best/ is the cache's backbone with its weights + the trained head: on a video it computes what the backbone
    # that made the cache followed by the trained head computes.
    best = load_model(run)
    extraction_backbone = tiny_model(seed=0).backbone.eval()  # --seed 0 built the cache's (random) backbone
    assert backbone_fingerprint(extraction_backbone) == FeatureDataset(cache).info["weights_sha256"]
    clip_path = str(videos / "val" / "green" / "green_1.mp4")
    clip = load_clip(clip_path, best.data_config)[None]
    with torch.no_grad():
        direct = best.head(extraction_backbone(clip))
        assert torch.allclose(best(clip), direct, atol=1e-6)
    assert main(["predict", clip_path, "--model", str(run), "-k", "3", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    probs = direct.softmax(1)[0]
    assert predicted["indices"] == probs.argsort(descending=True).tolist()
    assert np.allclose(predicted["scores"], probs.sort(descending=True).values.tolist(), atol=1e-6)
    assert main(["explain", clip_path, "--model", str(run), "--output", str(tmp_path / "why"), "--no-progress"]) == 0
    # explain's outputs are named <name>.<method>.png/.mp4 (issue 24); auto picks HiResCAM for a TAG-Head
    assert (tmp_path / "why" / "green_1.hirescam.png").is_file() and (tmp_path / "why" / "green_1.hirescam.mp4").is_file()
    # eval on the videos gives the best epoch's validation metric of training on the cache.
    assert main(["eval", str(run), "--dir", str(videos / "val"), "--no-progress", "--output", str(tmp_path / "ev")]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    best_top1 = max(float(r.split(",")[rows[0].split(",").index("val_top1")]) for r in rows[1:])
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["top1"] == pytest.approx(best_top1)


# ------------------------------------------------------------------------------------------ guard rails
def test_a_model_the_cache_does_not_belong_to_is_refused(caches: dict[str, Path]) -> None:
    cached = FeatureDataset(caches["float32"])
    seed_everything(0)
    with pytest.raises(FeatureCacheError, match=r"takes feature maps \[B, 16, 4, 4, 4\].*the cache holds \[N, 16, 2, 4, 4\]"):
        cached.check_model(tiny_model(num_frames=16))  # a head for another grid
    with pytest.raises(FeatureCacheError, match=r"backbone_kwargs: the cache has \{'width': 4\}, the model \{'width': 8\}"):
        cached.check_model(cached_head_on(tiny_model(width=8), cached))
    other_config = tiny_model()
    other_config.data_config = taghead.DataConfig(num_frames=8, crop_size=32, resize_size=37, mean=(0.5, 0.5, 0.5))
    with pytest.raises(FeatureCacheError, match=r"data config \(cache vs model\): mean"):
        cached.check_model(other_config)
    with pytest.raises(FeatureCacheError, match="other backbone weights"):  # same architecture, other weights
        cached.check_model(tiny_model(seed=1))
    with pytest.raises(FeatureCacheError, match="other backbone weights"):  # the Trainer checks too
        Trainer(tiny_model(seed=1), cached, None, quiet())
    cached.check_model(tiny_model(seed=0))  # the model that made the cache is accepted
    unfrozen = tiny_model()
    unfrozen.backbone.freeze(False)
    with pytest.raises(ValueError, match="must be frozen"):
        Trainer(unfrozen, cached, None, quiet())
    with pytest.raises(ValueError, match="give both as videos or both as cached feature maps"):
        Trainer(tiny_model(), cached, torch.utils.data.TensorDataset(torch.zeros(2, 3, 8, 32, 32), torch.zeros(2).long()))


def cached_head_on(model: taghead.VideoClassifier, cached: FeatureDataset) -> taghead.VideoClassifier:
    """``model`` with a head for the cache's maps (so that only the backbone differs)."""
    model.head = taghead.create_head("tag", *cached.feature_shape, num_classes=3, **HEAD)
    return model


def test_caches_refuse_another_backbone_other_settings_and_damaged_files(videos: Path, tmp_path: Path) -> None:
    model = tiny_model()
    train, _ = datasets(videos, model)
    extract_features(model, train, tmp_path, progress=False, log=lambda _: None)
    with pytest.raises(FeatureCacheError, match="(?s)already holds features of another backbone.*fingerprint"):
        extract_features(tiny_model(seed=1), train, tmp_path, split="val", progress=False)
    with pytest.raises(FeatureCacheError, match=r"other settings: dtype \(saved 'float16', now 'float32'\)"):
        extract_features(model, train, tmp_path, dtype="float32", progress=False)
    with pytest.raises(FeatureCacheError, match="has no split 'val'"):
        FeatureDataset(tmp_path, "val")
    with pytest.raises(FeatureCacheError, match="(?s)is not a feature cache.*looks like one split"):
        FeatureDataset(tmp_path / "train")
    shard = tmp_path / "train" / "r0-0000000.safetensors"
    intact = shard.read_bytes()
    shard.write_bytes(intact[:-100])
    with pytest.raises(FeatureCacheError, match="r0-0000000.safetensors' is not a valid safetensors file.*extract the split again"):
        FeatureDataset(tmp_path)
    shard.write_bytes(intact)
    weights = tmp_path / "backbone.safetensors"
    state = load_safetensors(weights)
    state["model.stem.0.weight"] = state["model.stem.0.weight"] + 1e-3
    save_safetensors(state, weights)
    with pytest.raises(FeatureCacheError, match="does not hold the weights the maps were extracted with"):
        FeatureDataset(tmp_path).build_model("meanpool")


def test_train_features_cli_refuses_what_the_cache_contradicts(caches: dict[str, Path], videos: Path, tmp_path: Path,
                                                              capsys) -> None:
    base = ["train", "--features", str(caches["float32"]), "--epochs", "1", "--no-progress", "--output", str(tmp_path)]
    assert main([*base, "--backbone-kwargs", "width=8"]) == 2
    assert "--backbone-kwargs {'width': 8} (the cache: {'width': 4})" in capsys.readouterr().err
    assert main([*base, "--backbone", "taghead/tiny_video_cnn", "--num-frames", "16", "--head", "meanpool"]) == 2
    assert "data config (cache vs model): num_frames 8 vs 16" in capsys.readouterr().err
    assert main([*base, "--train-dir", str(videos / "train")]) == 2
    assert "--train-dir cannot be combined with it" in capsys.readouterr().err
    # A model that names the cache's backbone takes the cache's weights and trains.
    assert main([*base, "--backbone", "taghead/tiny_video_cnn", "--backbone-kwargs", "width=4", "--head", "meanpool",
                 "--no-tensorboard", "--batch-size", "4"]) == 0
    assert backbone_fingerprint(load_model(tmp_path).backbone) == FeatureDataset(caches["float32"]).info["weights_sha256"]


def test_a_cache_description_naming_local_files_is_refused(caches: dict[str, Path], tmp_path: Path) -> None:
    """``cache.json``'s spec rebuilds a backbone, so a stranger's cache may not make that read a local file (as a
    saved model's ``config.json`` may not): refused on reading, before anything is built."""
    import shutil

    root = tmp_path / "cache"
    shutil.copytree(caches["float32"], root)
    info = json.loads((root / "cache.json").read_text())
    for field, value in (("backbone_kwargs", {"width": 4, "pretrained": "/home/someone/.ssh/id_rsa"}),
                         ("adapter_kwargs", {"checkpoint_path": "weights.pth"})):
        bad = dict(info, spec=dict(info["spec"], **{field: value}))
        (root / "cache.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=rf"cache\.json' names local files.*spec\.{field}\.\w+: "):
            FeatureDataset(root, "train")
    (root / "cache.json").write_text(json.dumps(dict(info, spec=["not", "a", "spec"])))
    with pytest.raises(FeatureCacheError, match="spec must be a JSON object"):
        FeatureDataset(root, "train")
    (root / "cache.json").write_text(json.dumps(info))
    assert len(FeatureDataset(root, "train")) == 12


def test_extraction_leaves_builder_arguments_naming_local_files_out_of_the_cache(videos: Path, tmp_path: Path) -> None:
    model = tiny_model()
    model.spec = dict(model.spec, backbone_kwargs={"width": 4, "weights_file": "/data/mine.pth"})
    train, _ = datasets(videos, model)
    root = tmp_path / "cache"
    with pytest.warns(UserWarning, match=r"leaves out the builder arguments that name local files \(spec\.backbone_kwargs"
                                         r"\.weights_file: '/data/mine\.pth'\)"):
        extract_features(model, train, root, split="train", progress=False, log=lambda _: None)
    cached = FeatureDataset(root, "train")
    assert cached.spec["backbone_kwargs"] == {"width": 4} and len(cached) == 12
