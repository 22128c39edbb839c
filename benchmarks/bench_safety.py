"""What the safety checks cost when saving and loading a real-size model (``tag_r2plus1d_34_gym99``).

Side by side, in interleaved rounds in one process (so that all see the same machine load; each round
times the saves, then the loads, each group in an order that rotates from round to round):

* **save**: ``model.save_pretrained(dir)`` (all-or-nothing: temporary files, ``fsync``, a commit record,
  renames, the record removed) against **per-file atomic** writes of the same three files (each its own
  temporary file, ``fsync`` and rename, one after the other: what taghead did before the commit record)
  and the **plain** write straight onto their names (``write_safetensors`` + ``write_text``, nothing
  flushed, not atomic);
* **load**: ``taghead.from_pretrained(dir)`` (config parsed as untrusted JSON, the architecture built on
  the ``meta`` device and compared with the safetensors header, then built and loaded, dtypes
  checked) against the **unchecked** path (``VideoClassifier.from_config`` + ``load_state_dict``).

Before each timed case the page caches are written back (``os.sync``), so that no case pays for the
dirty pages of the one before it. Times are medians of the rounds; the script prints the machine load (``os.getloadavg``), a table and
the ratios, and writes the table to the ``safety`` section of ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_safety.py             # 5 rounds, about a minute on 2 cores
    python benchmarks/bench_safety.py --rounds 2 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import taghead
from taghead.hub import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, model_card, read_config
from taghead.models.classifier import VideoClassifier
from taghead.weights import atomic_output, atomic_write_text, load_safetensors, write_safetensors

try:
    from _results import cpu_name, write_section
except ImportError:  # run from elsewhere
    from benchmarks._results import cpu_name, write_section


def _plain_save(model: VideoClassifier, folder: Path) -> None:
    config = model.hub_config()
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(model.state_dict(), folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (folder / MODEL_CARD_NAME).write_text(model_card(config))


def _per_file_atomic_save(model: VideoClassifier, folder: Path) -> None:
    config = model.hub_config()
    with atomic_output(folder / WEIGHTS_NAME) as tmp:
        write_safetensors(model.state_dict(), tmp)
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write_text(folder / MODEL_CARD_NAME, model_card(config))


def _unchecked_load(folder: Path) -> VideoClassifier:
    model = VideoClassifier.from_config(json.loads((folder / CONFIG_NAME).read_text()))
    model.load_state_dict(load_safetensors(folder / WEIGHTS_NAME))
    return model.eval()


def _timed(fn) -> float:
    os.sync()  # start from clean page caches: no case pays for the write-back of the one before it
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="tag_r2plus1d_34_gym99")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md as it is")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = taghead.create_model(args.model)
    size_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    times: dict[str, list[float]] = {k: [] for k in ("save", "per-file atomic save", "plain save", "load",
                                                     "unchecked load")}
    root = Path(tempfile.mkdtemp(prefix="bench-safety-"))
    load_before = os.getloadavg()
    try:
        # The loads read a folder of their own: the saves never replace a file a loaded model still maps.
        checked, per_file, plain, loaded = root / "checked", root / "per-file", root / "plain", root / "loaded"
        model.save_pretrained(checked)
        model.save_pretrained(loaded)
        _per_file_atomic_save(model, per_file)
        _plain_save(model, plain)
        read_config(loaded)  # warm the caches of both paths once
        saves = {
            "save": lambda: model.save_pretrained(checked),
            "per-file atomic save": lambda: _per_file_atomic_save(model, per_file),
            "plain save": lambda: _plain_save(model, plain),
        }
        loads = {"load": lambda: taghead.from_pretrained(loaded), "unchecked load": lambda: _unchecked_load(loaded)}
        for r in range(args.rounds):
            # The first large write after a load runs slower (the freed model's memory is being reclaimed): an
            # untimed plain save first, then the saves in an order that rotates from round to round.
            _plain_save(model, plain)
            for group in (saves, loads):
                names = list(group)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(_timed(group[name]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [f"| {name} | {med[name]:.2f} | {min(times[name]):.2f} |" for name in times]
    table = "\n".join(["| case | median (s) | min (s) |", "| --- | ---: | ---: |", *rows])
    low = {k: min(v) for k, v in times.items()}
    summary = "; ".join(
        f"{a} / {b} = {med[a] / med[b]:.2f}x (medians), {low[a] / low[b]:.2f}x (minima)"
        for a, b in (("save", "per-file atomic save"), ("save", "plain save"), ("load", "unchecked load")))
    machine = (f"{cpu_name()}, torch {torch.__version__}, 1 thread; load average {load_before[0]:.1f} before, "
               f"{load_after[0]:.1f} after; {args.rounds} interleaved rounds")
    markdown = (f"## Cost of the safety checks (`python benchmarks/bench_safety.py`)\n\n"
                f"`{args.model}` ({size_mb:.0f} MB of weights), {machine}.\n\n{table}\n\n{summary}.\n")
    print(markdown)
    if not args.no_write:
        write_section("safety", markdown)


if __name__ == "__main__":
    main()
