"""Nothing lost, nothing exhausted: kills at exact points of a save, hostile configs and weights, bounded refusals.

Kills use the writers' fault points (``TAGHEAD_FAULT_POINT``): the writer stops at the named step and a
test kills it there, instead of hoping to hit a window. Memory bounds run the refusal in a subprocess under
an address-space limit (``RLIMIT_AS``) far below what the hostile input asks for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from taghead.engine.checkpoint import load_checkpoint, save_checkpoint
from taghead.heads import TAGHead
from taghead.hub import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME
from taghead.models.loading import from_pretrained
from taghead.weights import COMMIT_RECORD

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
SAVED = sorted([CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME])


def _head(seed: int, labels: list[str]) -> TAGHead:
    torch.manual_seed(seed)
    head = TAGHead(16, 2, 2, 2, num_classes=len(labels), embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    head.label_names = labels
    return head


OLD, NEW = ["old a", "old b", "old c"], ["new a", "new b", "new c"]


def _kill_at(point: str, script: str, *args: str, tmp_path: Path) -> None:
    """Run ``script`` with the fault point ``point`` armed, wait until it stops there, kill it (SIGKILL)."""
    ready = tmp_path / f"ready-{point.replace(':', '-')}"
    env = dict(ENV, TAGHEAD_FAULT_POINT=point, TAGHEAD_FAULT_READY=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ready.exists():
            assert proc.poll() is None, f"the writer ended before reaching {point}: {proc.stderr.read()}"
            assert time.time() < deadline, f"the writer never reached {point}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


_SAVE_NEW = """
    import sys, torch
    from taghead.heads import TAGHead
    torch.manual_seed(2)
    head = TAGHead(16, 2, 2, 2, num_classes=3, embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    head.save_pretrained(sys.argv[1], label_names=["new a", "new b", "new c"])
"""


def _files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("point, expected", [
    ("atomic_outputs:written", OLD),   # every new file written and flushed, nothing committed yet
    ("atomic_outputs:moving:1", NEW),  # committed; the weights moved, the config and the card not yet
    ("atomic_outputs:moved", NEW),     # every file moved, the commit record not yet removed
])
def test_a_save_killed_at_any_step_loads_all_old_or_all_new(point: str, expected: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    old = _head(1, OLD)
    old.save_pretrained(folder)
    new_weights = _head(2, NEW).state_dict()

    _kill_at(point, _SAVE_NEW, str(folder), tmp_path=tmp_path)
    assert len(_files(folder)) > 3  # the killed save left something behind: temporaries or its commit record

    loaded = from_pretrained(folder)  # finishes a committed save first; never a mix of the two
    assert loaded.label_names == expected
    reference = old.state_dict() if expected == OLD else new_weights
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.items())
    assert expected == OLD or _files(folder) == SAVED  # a finished commit leaves the three files only

    # The next save removes the killed writer's temporary files (its process is gone) and replaces the folder.
    _head(3, ["x", "y", "z"]).save_pretrained(folder)
    assert _files(folder) == SAVED
    assert from_pretrained(folder).label_names == ["x", "y", "z"]


def test_a_folder_whose_config_and_weights_come_from_two_saves_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _head(1, OLD).save_pretrained(a)
    _head(2, NEW).save_pretrained(b)
    (a / CONFIG_NAME).write_bytes((b / CONFIG_NAME).read_bytes())  # new labels beside the old weights
    with pytest.raises(ValueError, match="come from two different saves"):
        from_pretrained(a)
    config = json.loads((a / CONFIG_NAME).read_text())
    del config["save_id"]  # pairing them by hand is still possible
    (a / CONFIG_NAME).write_text(json.dumps(config))
    assert from_pretrained(a).label_names == NEW


def test_a_forged_commit_record_cannot_move_files_out_of_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    _head(1, OLD).save_pretrained(folder)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    record = {"format": "taghead-commit", "version": 1, "moves": [["../outside.txt", CONFIG_NAME]]}
    (folder / COMMIT_RECORD).write_text(json.dumps(record))
    with pytest.raises(OSError, match="not a valid record of an interrupted save"):
        from_pretrained(folder)
    assert outside.read_text() == "keep me" and (folder / CONFIG_NAME).is_file()


_CHECKPOINT_LOOP = """
    import sys, torch
    from taghead.engine.checkpoint import save_checkpoint
    save_checkpoint({"epoch": 2, "model": {"w": torch.full((1000,), 2.0)}, "optimizer": {}, "rng": []}, sys.argv[1])
"""


def test_a_killed_checkpoint_write_keeps_the_old_one_and_its_temporary_is_removed_next_time(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.full((1000,), 1.0)}, "optimizer": {}, "rng": []}, path)
    _kill_at("atomic_output:written", _CHECKPOINT_LOOP, str(path), tmp_path=tmp_path)
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint_last.pt.")]
    assert len(stale) == 1 and stale[0].stat().st_size > 4000  # the complete new file, never renamed
    assert load_checkpoint(path)["epoch"] == 1

    save_checkpoint({"epoch": 3, "model": {"w": torch.full((1000,), 3.0)}, "optimizer": {}, "rng": []}, path)
    assert not stale[0].exists()
    assert load_checkpoint(path)["epoch"] == 3
