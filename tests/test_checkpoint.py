"""Checkpoints: weights-only-safe contents, atomic writes (killed or failing mid-write), resume after a kill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from taghead.engine import checkpoint as ckpt
from taghead.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from taghead.weights import CheckpointError

REPO = Path(__file__).resolve().parents[1]
# One thread per process: bit-reproducible CPU runs, and fair to the other processes on the machine.
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    state = capture_rng_state()
    expected = _draws()
    path = save_checkpoint({"epoch": 1, "model": {}, "optimizer": {}, "rng": [state]}, tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert raw["format"] == ckpt.CHECKPOINT_FORMAT
    _draws()  # move every generator on
    restore_rng_state(load_checkpoint(path)["rng"][0])
    assert _draws() == expected


def test_load_rejects_foreign_and_truncated_files(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.ones(2)}, plain)
    with pytest.raises(CheckpointError, match="not a taghead training checkpoint"):
        load_checkpoint(plain)
    good = save_checkpoint({"epoch": 1, "model": {"w": torch.ones(1000)}, "optimizer": {}, "rng": []}, tmp_path / "g.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint({"epoch": 1, "model": {"w": torch.ones(10)}, "optimizer": {}, "rng": []}, tmp_path / "last.pt")
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)   # the bytes reach the temporary file ...
        fh.truncate(fh.tell() // 2)            # ... then the write breaks off half-way
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(10)}, "optimizer": {}, "rng": []}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file was removed


_SAVE_LOOP = """
import sys, torch
from taghead.engine.checkpoint import save_checkpoint
i = 0
while True:
    i += 1
    save_checkpoint({"epoch": i, "model": {"w": torch.full((3_000_000,), float(i))}, "optimizer": {}, "rng": []},
                    sys.argv[1])
    print(i, flush=True)
"""


def test_process_killed_while_saving_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip()  # at least one checkpoint is complete
        deadline = time.time() + 60
        while not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):  # the next write is in progress now
            assert time.time() < deadline, "the save loop never started a second write"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(path)  # the last complete checkpoint, never a partial file
    assert state["epoch"] >= 1
    assert torch.all(state["model"]["w"] == float(state["epoch"]))


# ------------------------------------------------------------------------ kill a training run, resume it
def _train_cmd(output: Path, epochs: int = 5) -> list[str]:
    return [
        sys.executable, "-m", "taghead.cli", "train", "--data", "synthetic", "--train-samples", "16",
        "--val-samples", "8", "--num-classes", "4", "--num-frames", "8", "--crop-size", "32",
        "--backbone-kwargs", "width=4", "--head-kwargs", "embed_dim=16", "--head-kwargs", "num_heads=2",
        "--head-kwargs", "mlp_dim=32", "--head-kwargs", "depth=1", "--head-kwargs", "dropout=0.1",
        "--optimizer", "adamw", "--lr", "3e-3", "--warmup-epochs", "1", "--epochs", str(epochs), "--batch-size", "8",
        "--seed", "5", "--no-progress", "--no-tensorboard", "--output", str(output),
    ]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref = subprocess.Popen(_train_cmd(reference), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    proc = subprocess.Popen(_train_cmd(killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = killed / "checkpoint_last.pt"
    deadline = time.time() + 240
    while not last.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # while it trains epoch 2 (or saves epoch 1 or 2)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved_epoch = load_checkpoint(last)["epoch"]
    assert 1 <= saved_epoch < 5

    resumed = subprocess.run(_train_cmd(killed) + ["--resume"], env=ENV, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {last} after epoch {saved_epoch}" in resumed.stdout
    assert ref.wait(timeout=400) == 0, ref.stderr.read()

    a, b = load_checkpoint(reference / "checkpoint_last.pt"), load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 5 and a["global_step"] == b["global_step"]
    # Deterministic single-threaded CPU run: the resumed weights equal the uninterrupted ones exactly.
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    rows_a = (reference / "metrics.csv").read_text().splitlines()
    rows_b = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows_b) == 6  # header + epochs 1..5, each once
    strip_time = [",".join(r.split(",")[:-1]) for r in rows_a], [",".join(r.split(",")[:-1]) for r in rows_b]
    assert strip_time[0] == strip_time[1]  # every metric but the wall-clock time


def test_atomic_output_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    from taghead.weights import atomic_output

    target = tmp_path / "sub" / "notes.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and not target.exists()
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            tmp.write_text("half of the sec")
            raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["notes.txt"]
