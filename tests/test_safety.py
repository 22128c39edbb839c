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
from taghead.weights import COMMIT_RECORD, StateDictMismatchError, save_safetensors

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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------------------------------- exhaustion from a few bytes
def _tiny_model(label_names: list[str] | None = None, **data: object):
    """A tiny backbone + TAG head (2 classes, 4 frames at 32 px), optionally with another data config."""
    import dataclasses

    from taghead.engine.builders import build_model

    model = build_model(num_classes=2, num_frames=4, crop_size=32, backbone_kwargs={"width": 4},
                        head_kwargs={"embed_dim": 16, "num_heads": 2, "mlp_dim": 32, "depth": 1})
    model.data_config = dataclasses.replace(model.data_config, **data)
    model.label_names = label_names
    return model


def _edit_config(folder: Path, edit) -> Path:
    config = json.loads((folder / CONFIG_NAME).read_text())
    edit(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


_BOUNDED = """
import json, resource, sys, time
import taghead
from taghead.config import DataConfig
from taghead.data import VideoClipDataset
from taghead.models.loading import from_pretrained, from_pretrained_config

def vm_size():  # bytes of address space in use now
    line = next(l for l in open("/proc/self/status") if l.startswith("VmSize:"))
    return int(line.split()[1]) * 1024

headroom = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + headroom, resource.RLIM_INFINITY))
resource.setrlimit(resource.RLIMIT_CPU, (60, 60))  # a run past this is killed (SIGXCPU)
root = sys.argv[1]
cases = {
    "mlp_dim": lambda: from_pretrained(root + "/wide"),
    "config_only": lambda: from_pretrained_config(root + "/wide"),
    "clip": lambda: from_pretrained(root + "/clip"),
    "data_config": lambda: DataConfig(num_frames=10**6, crop_size=512),
    "label": lambda: VideoClipDataset.from_csv(root + "/split.csv", root, DataConfig()),
    "k": lambda: from_pretrained(root + "/k")(__import__("torch").zeros(1, 16, 2, 2, 2)).shape,
}
out = {}
for name, case in cases.items():
    t0 = time.process_time()
    try:
        out[name] = ["ok", str(case())]
    except Exception as err:
        out[name] = [type(err).__name__, str(err)]
    out[name].append(time.process_time() - t0)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


@pytest.mark.slow
def test_hostile_configs_and_splits_are_refused_in_bounded_memory_and_time(tmp_path: Path) -> None:
    """Each case asks for gigabytes (or, for k, minutes) and must be refused, or run, within 1 GiB more address
    space than the imports and a minute of CPU."""
    head = _head(1, OLD)
    _edit_config(head.save_pretrained(tmp_path / "wide"),  # weights of mlp_dim 32; config asks for 10**9 (128 GB)
                 lambda c: c["spec"]["head_config"].update(mlp_dim=10**9))
    _edit_config(head.save_pretrained(tmp_path / "k"),  # 10**18 APPNP steps: the old loop took 90 s for 10**7
                 lambda c: c["spec"]["head_config"].update(k=10**18))
    _edit_config(_tiny_model().save_pretrained(tmp_path / "clip"),  # a 256 x 512 px dummy clip took 1.4 GB
                 lambda c: c["data_config"].update(num_frames=256, crop_size=512, resize_size=None))
    (tmp_path / "split.csv").write_text("FileName,Class,TotalFrames,ClassEncoded\na.mp4,jump,10,0\nb.mp4,spin,10,1000000000\n")

    run = subprocess.run([sys.executable, "-c", _BOUNDED, str(tmp_path), str(2**30)], env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["mlp_dim"][0] == "StateDictMismatchError"
    assert "linear1.weight: weights [32, 16] vs model [1000000000, 16]" in out["mlp_dim"][1]
    assert out["config_only"][0] == "ValueError" and "122.9 GiB of parameters, beyond the 16 GiB" in out["config_only"][1]
    assert out["clip"][0] == "ValueError" and "spec and data config disagree" in out["clip"][1]
    assert out["data_config"][0] == "ValueError" and "beyond taghead's limit" in out["data_config"][1]
    assert out["label"][0] == "ValueError" and "split.csv:3: ClassEncoded 1000000000" in out["label"][1]
    assert out["k"][:2] == ["ok", "torch.Size([1, 3])"]  # a legal k, computed in O(log k)
    print("peak RSS (MB):", out["peak_rss_mb"], "CPU seconds per case:", {k: round(v[2], 2) for k, v in out.items()
                                                                       if isinstance(v, list)})


# ------------------------------------------------------------------------ one bad input stops nothing
def _video(path: Path, height: int = 48, width: int = 48, frames: int = 6, seed: int = 0) -> Path:
    import numpy as np

    from taghead.data import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return write_video(path, pixels, fps=8)


HOSTILE_LABELS = ["red\x1b[31m\rNUL\x00", "=HYPERLINK(\"http://x\")"]


@pytest.fixture(scope="module")
def no_resize_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model without resize_size (frames are centre-cropped at their own size), with label names
    that hold terminal control sequences and a spreadsheet formula."""
    folder = tmp_path_factory.mktemp("no-resize") / "model"
    _tiny_model(HOSTILE_LABELS, resize_size=None).save_pretrained(folder)
    return folder


def test_predict_reports_bad_videos_and_prints_the_good_ones_with_labels_escaped(
        no_resize_model: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from taghead import limits
    from taghead.cli import main

    good = _video(tmp_path / "good.mp4")
    tiny = _video(tmp_path / "tiny.mp4", 2, 2)  # smaller than the 32 px crop, no resize to enlarge it
    huge = _video(tmp_path / "huge.mp4", 96, 96)  # beyond the decoded-clip limit set below
    monkeypatch.setattr(limits, "MAX_DECODED_CLIP_BYTES", 4 * 64 * 64 * 3)
    monkeypatch.setattr("taghead.data.video.MAX_DECODED_CLIP_BYTES", limits.MAX_DECODED_CLIP_BYTES)
    rc = main(["predict", str(tiny), str(huge), str(good), "--model", str(no_resize_model), "-k", "2"])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{tiny}: error: ") and "frames of 2x2 pixels are smaller than the model's 32x32 crop" in lines[0]
    assert lines[1].startswith(f"{huge}: error: ") and "would take" in lines[1] and "give the model's data config a resize_size" in lines[1]
    assert lines[2].startswith(f"{good}: ")
    assert "\x1b" not in out and "\r" not in out and "\x00" not in out  # nothing reaches the terminal raw
    assert "red\\x1b[31m\\x0dNUL\\x00" in lines[2]


def test_explain_goes_on_after_a_video_whose_name_is_mathtext(no_resize_model: Path, tmp_path: Path, capsys) -> None:
    from taghead.cli import main

    odd = _video(tmp_path / "clip_$a_b_c$.mp4")
    other = _video(tmp_path / "other.mp4", seed=1)
    rc = main(["explain", str(odd), str(other), "--model", str(no_resize_model), "--output", str(tmp_path / "out"),
               "--no-progress", "--frames", "2"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    # outputs named <name>.<method>.png/.mp4 (issue 24); --method auto is HiResCAM for this TAG-Head model
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_$a_b_c$.hirescam.mp4",
                                                                    "clip_$a_b_c$.hirescam.png",
                                                                    "other.hirescam.mp4", "other.hirescam.png"]


def test_eval_writes_all_reports_for_mathtext_and_formula_labels(tmp_path: Path, capsys) -> None:
    import csv

    from taghead.cli import main

    labels = ["$a_b_c$", "=1+1"]
    model = tmp_path / "model"
    _tiny_model(labels).save_pretrained(model)
    rows = ["FileName,Class,TotalFrames,ClassEncoded"]
    for i, label in enumerate(labels):
        _video(tmp_path / "videos" / label / f"v{i}.mp4", seed=i)
        rows.append(f"v{i}.mp4,{label},6,{i}")
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    rc = main(["eval", str(model), "--csv", str(tmp_path / "split.csv"), "--video-dir", str(tmp_path / "videos"),
               "--output", str(tmp_path / "report"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["confusion_matrix.png", "metrics.json",
                                                                       "per_class.csv"]
    with open(tmp_path / "report" / "per_class.csv", newline="") as fh:
        names = [row["class_name"] for row in csv.DictReader(fh)]
    assert names == ["$a_b_c$", "'=1+1"]  # a spreadsheet shows the formula as text


def test_a_dataset_item_smaller_than_the_crop_is_replaced_and_counted(tmp_path: Path) -> None:
    from taghead.config import DataConfig
    from taghead.data import CorruptVideoWarning, VideoClipDataset

    tiny, good = _video(tmp_path / "a" / "tiny.mp4", 2, 2), _video(tmp_path / "a" / "good.mp4")
    ds = VideoClipDataset([(str(tiny), 0), (str(good), 1)], ["a", "b"],
                          DataConfig(num_frames=4, crop_size=32, resize_size=None))
    with pytest.warns(CorruptVideoWarning, match="smaller than the model's 32x32 crop"):
        clip, label = ds[0]
    assert label == 1 and clip.shape == (3, 4, 32, 32)
    assert ds.bad_files == [str(tiny)] and ds.num_replaced == 1


# ----------------------------------------------------------------------- clear errors, not tracebacks
@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(spec=["not", "a", "dict"]), "spec must be a JSON object"),
    (lambda c: c.update(num_classes=7), "num_classes is 7 but the head's config"),
    (lambda c: c["spec"]["head_config"].update(dropout=float("nan")), "NaN is not a number taghead accepts"),
    (lambda c: c["spec"]["head_config"].update(mlp_dim=10**30), "beyond 64 bits"),
    (lambda c: c["spec"]["head_config"].update(nested=json.loads("[" * 40 + "]" * 40)), "more than 32 levels deep"),
    (lambda c: c["spec"]["backbone_kwargs"].update(checkpoint_path="model.pth"),
     r"names local files.*spec.backbone_kwargs.checkpoint_path: 'model.pth'"),
    (lambda c: c["spec"]["adapter_kwargs"].update(anything="/etc/passwd"), "spec.adapter_kwargs.anything"),
    (lambda c: c["pretrained_cfg"].update(file="/etc/passwd"), "pretrained_cfg.file"),
])
def test_hostile_config_json_is_refused_with_a_message(edit, message: str, tmp_path: Path) -> None:
    from taghead.models.pretrained import PretrainedCfg

    model = _tiny_model(["a", "b"])
    model.pretrained_cfg = PretrainedCfg(num_classes=2, num_frames=4, crop_size=32, source="test")
    folder = model.save_pretrained(tmp_path / "m")
    config = json.loads((folder / CONFIG_NAME).read_text())
    edit(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))  # json.dumps writes NaN as NaN, as a careless writer would
    with pytest.raises(ValueError, match=message):
        from_pretrained(folder)


def test_a_config_nested_beyond_the_recursion_limit_is_a_cli_error_line(tmp_path: Path, capsys) -> None:
    from taghead.cli import main

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000)
    assert main(["predict", str(_video(tmp_path / "v.mp4")), "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taghead predict: error: ") and "nests objects and lists too deeply" in err


def test_cli_refuses_absurd_options_outputs_and_devices(tmp_path: Path, capsys, monkeypatch) -> None:
    from taghead.cli import main

    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    for argv, message in [
        (["train", "--data", "synthetic", "--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
        (["train", "--data", "synthetic", "--num-frames", "0"], "argument --num-frames: expected an integer >= 1, got 0"),
        (["predict", "v.mp4", "--model", "m", "-k", "0"], "argument -k/--topk: expected an integer >= 1, got 0"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err
    model = tmp_path / "model"
    _tiny_model(["a", "b"]).save_pretrained(model)
    video = str(_video(tmp_path / "v.mp4"))
    for argv in (["eval", str(model), "--data", "synthetic", "--output", str(a_file / "sub")],
                 ["explain", video, "--model", str(model), "--output", str(a_file)],
                 ["train", "--data", "synthetic", "--output", str(a_file)]):
        assert main(argv) == 2
        assert f"{str(a_file)!r} is a file, not a folder" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (["predict", video, "--model", str(model)], ["explain", video, "--model", str(model), "--output",
                                                                str(tmp_path / "x")]):
        assert main([*command, "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA GPU is available here" in capsys.readouterr().err


# ---------------------------------------------------------------------- accepted when it should not be
def test_weights_of_a_wrong_kind_of_dtype_are_refused_and_float_ones_converted_with_a_note(tmp_path: Path) -> None:
    head = _head(1, OLD)
    folder = head.save_pretrained(tmp_path / "h")
    state = head.state_dict()
    for dtype in (torch.int8, torch.bool):
        save_safetensors({k: v.to(dtype) for k, v in state.items()}, folder / WEIGHTS_NAME)
        with pytest.raises(StateDictMismatchError,
                           match=rf"cannot be converted \(17;.*pos_embed.weight: weights {str(dtype)[6:]} vs model float32"):
            from_pretrained(folder)
    save_safetensors({k: v.half() for k, v in state.items()}, folder / WEIGHTS_NAME)
    with pytest.warns(UserWarning, match=r"converted \d+ weight tensor\(s\) to the model's dtype \(float16 -> float32"):
        loaded = from_pretrained(folder)
    assert loaded.fc.weight.dtype == torch.float32
    assert torch.equal(loaded.fc.weight, state["fc.weight"].half().float())


def test_training_refuses_non_finite_options_and_never_saves_non_finite_weights(tmp_path: Path) -> None:
    from taghead.engine.trainer import TrainConfig, Trainer

    for bad in (dict(lr=float("inf")), dict(lr=float("nan")), dict(weight_decay=float("inf")),
                dict(clip_grad=float("nan"))):
        with pytest.raises(ValueError, match="must be a finite number"):
            TrainConfig(**bad)
    model = _tiny_model(["a", "b"])
    data = [(torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(i)), i % 2) for i in range(4)]
    trainer = Trainer(model, data, data, TrainConfig(epochs=1, batch_size=4, progress=False, tensorboard=False,
                                                     plot=False), output_dir=tmp_path / "run")
    trainer.fit()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with torch.no_grad():
        model.head.fc.weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"1 weight tensor\(s\) hold NaN or infinity \(head.fc.weight\)"):
        trainer._end_of_epoch(1, improved=True)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["epoch"] == 1


def test_save_leaves_out_builder_arguments_that_name_local_files(tmp_path: Path) -> None:
    model = _tiny_model(["a", "b"])
    model.spec["backbone_kwargs"] = dict(model.spec["backbone_kwargs"], checkpoint_path="/home/me/init.pth")
    with pytest.warns(UserWarning, match=r"leaves out the builder arguments that name local files "
                                         r"\(spec.backbone_kwargs.checkpoint_path: '/home/me/init.pth'\)"):
        folder = model.save_pretrained(tmp_path / "m")
    assert "checkpoint_path" not in (folder / CONFIG_NAME).read_text()
    assert torch.equal(from_pretrained(folder).head.fc.weight, model.head.fc.weight)


# ---------------------------------------------------------------------------------------- split CSVs
def _split(tmp_path: Path, text: str | bytes, name: str = "split.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


HEADER = "FileName,Class,TotalFrames,ClassEncoded\n"


@pytest.mark.parametrize("line, column", [
    ("../../secret.mp4,jump,10,0", "FileName '../../secret.mp4'"),
    ("/etc/passwd,jump,10,0", "FileName '/etc/passwd'"),
    ("a.mp4,../..,10,1", "Class '../..'"),
])
def test_csv_paths_outside_the_video_folder_are_refused_unless_allowed(line: str, column: str, tmp_path: Path) -> None:
    from taghead.config import DataConfig
    from taghead.data import VideoClipDataset

    split = _split(tmp_path, HEADER + "ok.mp4,jump,10,0\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"split.csv:3: {column} leads outside the video folder"):
        VideoClipDataset.from_csv(split, tmp_path / "videos", DataConfig())
    allowed = VideoClipDataset.from_csv(split, tmp_path / "videos", DataConfig(), allow_outside_video_dir=True)
    assert len(allowed) == 2


def test_csv_encoding_columns_and_numbers(tmp_path: Path) -> None:
    from taghead.config import DataConfig
    from taghead.data import VideoClipDataset

    bom = _split(tmp_path, b"\xef\xbb\xbf" + (HEADER + "a.mp4,jump,10,0\n").encode(), "bom.csv")
    assert VideoClipDataset.from_csv(bom, tmp_path, DataConfig()).samples[0].path == str(tmp_path / "jump" / "a.mp4")
    twice = _split(tmp_path, "FileName,Class,TotalFrames,ClassEncoded,Class\na.mp4,jump,10,0,spin\n", "twice.csv")
    with pytest.raises(ValueError, match=r"twice.csv has the columns \['Class'\] more than once"):
        VideoClipDataset.from_csv(twice, tmp_path, DataConfig())
    latin = _split(tmp_path, (HEADER + "a.mp4,sauté,10,0\n").encode("latin-1"), "latin.csv")
    with pytest.raises(ValueError, match=r"latin.csv is not UTF-8 text"):
        VideoClipDataset.from_csv(latin, tmp_path, DataConfig())
    for total in ("inf", "1e30", "nan", "-3", "2.5"):
        bad = _split(tmp_path, HEADER + f"a.mp4,jump,{total},0\n", "frames.csv")
        with pytest.raises(ValueError, match=rf"frames.csv:2: TotalFrames must be empty or a whole number.*got '{total}'"):
            VideoClipDataset.from_csv(bad, tmp_path, DataConfig())
    gaps = _split(tmp_path, HEADER + "a.mp4,jump,10,0\nb.mp4,spin,10.0,40\n", "gaps.csv")
    assert VideoClipDataset.from_csv(gaps, tmp_path, DataConfig()).num_classes == 41  # a gap within the bound


# ------------------------------------------------------------------------------------ output injection
def test_the_model_card_shows_config_strings_as_text(tmp_path: Path) -> None:
    from taghead.models.pretrained import PretrainedCfg

    model = _tiny_model(["a", "b"])
    model.architecture = "<script>alert(1)</script>"
    model.pretrained_cfg = PretrainedCfg(num_classes=2, num_frames=4, crop_size=32, license="<b>x</b>",
                                         source='<img src=x onerror="alert(2)"> [click](javascript:alert(3))',
                                         citation="@misc{x, title={```\n<script>alert(4)</script>}}")
    card = (model.save_pretrained(tmp_path / "m") / MODEL_CARD_NAME).read_text()
    body = card.split("---", 2)[2]
    assert "<script" not in body.replace("````bibtex\n@misc{x, title={```\n<script>alert(4)</script>}}\n````", "")
    assert "<img" not in body and "<b>" not in body
    assert "\\[click\\](javascript:alert(3))" in body  # escaped brackets: text, not a link
    assert "# &lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "````bibtex\n@misc{x, title={```\n<script>alert(4)</script>}}\n````" in body  # literal, in a longer fence


def test_escapes() -> None:
    from taghead.utils.escape import code_span, spreadsheet_cell, terminal_text

    assert terminal_text("a\x1b[2Jb\r\n\x00\x7f\u202eok é") == "a\\x1b[2Jb\\x0d\\x0a\\x00\\x7f\\u202eok é"
    assert [spreadsheet_cell(v) for v in ("=1+1", " +1", "-x", "@SUM(A1)", "\tx", "plain", 3)] == \
        ["'=1+1", "' +1", "'-x", "'@SUM(A1)", "'\tx", "plain", 3]
    assert code_span("a`b") == "`` a`b ``"


# ------------------------------------------------------------------------------------ rotation metadata
@pytest.mark.parametrize("degrees, hflip", [(90, False), (-90, False), (180, False), (90, True)])
@pytest.mark.parametrize("shrink_to", [None, 16])
def test_frames_come_upright_as_the_display_matrix_says(degrees: int, hflip: bool, shrink_to: int | None,
                                                        tmp_path: Path) -> None:
    """PyAV's ``set_display_rotation(degrees, hflip)`` means: rotate the decoded frame counter-clockwise by
    ``degrees``, then mirror it left-right (what a player shows; libavutil's display-matrix convention)."""
    import av
    import numpy as np

    from taghead.data import iter_frames, read_clip

    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:8, :16] = 255  # a white block at the top left of the stored frame
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt, stream.options = 64, 32, "yuv420p", {"crf": "0"}
        stream.set_display_rotation(degrees, hflip=hflip)
        for _ in range(2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    shown = np.rot90(frame, degrees // 90)
    shown = shown[:, ::-1] if hflip else shown
    clip, _ = read_clip(path, 2, shrink_to=shrink_to)
    scale = 1 if shrink_to is None else 2
    assert clip.shape == (2, shown.shape[0] // scale, shown.shape[1] // scale, 3)
    expected = shown[::scale, ::scale].astype(float) if scale == 1 else \
        shown.reshape(shown.shape[0] // 2, 2, shown.shape[1] // 2, 2, 3).mean((1, 3))
    assert np.abs(clip[0].astype(float) - expected).mean() < 8  # the white block is where a player shows it
    streamed = list(iter_frames(path, resize_to=shrink_to))  # the whole-video frames (explain's overlay) agree
    assert len(streamed) == 2 and streamed[0].shape == clip[0].shape
    assert np.abs(streamed[0].astype(float) - expected).mean() < 8


@pytest.mark.slow
def test_a_first_save_killed_after_its_commit_loads_by_every_route(tmp_path: Path) -> None:
    """No old files at all: the killed save left its weights moved and its config under a temporary name."""
    from taghead.engine.predict import load_model
    from taghead.hub import load_weights

    run = tmp_path / "run"
    _kill_at("atomic_outputs:moving:1", _SAVE_NEW, str(run / "best"), tmp_path=tmp_path)
    assert not (run / "best" / CONFIG_NAME).exists() and (run / "best" / COMMIT_RECORD).exists()
    assert load_model(run).label_names == NEW  # a training output folder: its best/
    assert _files(run / "best") == SAVED
    head = _head(5, ["p", "q", "r"])
    load_weights(head, run / "best")
    assert torch.equal(head.fc.weight, from_pretrained(run / "best").fc.weight)
