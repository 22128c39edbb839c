"""DistributedDataParallel on the CPU: ``torchrun --nproc_per_node 2 -m taghead.cli train`` (Gloo) versus one process.

Comparable by design: the two processes use a per-process batch of 4, one process a batch of 8, so
the global batch is the same; ``DistributedSampler`` deals the positions of one permutation
(seeded by seed + epoch) alternately to the ranks, so each global step sees exactly the same 8
clips in both runs; DDP averages the two half-batch mean gradients, which equals the full-batch
mean. The backbone is frozen (its BatchNorm uses running statistics: per-process batch statistics
would otherwise differ) and the head has no dropout (random masks are drawn per process). What is
left is floating-point summation order in the gradient all-reduce, so the tolerance is 1e-5 on the
weights after 4 Adam steps (measured: <= 4e-6), 1e-5 on the losses, and exact equality on the
accuracies (validation is sharded without padding over 9 clips, 5 + 4, and the counts are summed).
The attention key bias is left out of the weight comparison: its gradient is zero in theory, so
Adam turns rounding noise into +-lr steps there, without any effect on the outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from taghead.engine.checkpoint import load_checkpoint
from taghead.engine.plots import read_metrics_csv

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _args(output: Path, batch_size: int) -> list[str]:
    return [
        "-m", "taghead.cli", "train", "--data", "synthetic", "--train-samples", "16", "--val-samples", "9",
        "--num-classes", "3", "--num-frames", "8", "--crop-size", "32", "--backbone-kwargs", "width=4",
        "--freeze-backbone", "--head-kwargs", "embed_dim=16", "--head-kwargs", "num_heads=2",
        "--head-kwargs", "mlp_dim=32", "--head-kwargs", "depth=1", "--head-kwargs", "dropout=0.0",
        "--optimizer", "adam", "--lr", "1e-2", "--epochs", "2", "--batch-size", str(batch_size), "--seed", "3",
        "--no-progress", "--no-tensorboard", "--output", str(output),
    ]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    one = subprocess.Popen([sys.executable, *_args(single, 8)], env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *_args(ddp, 4)],
        env=ENV, capture_output=True, text=True, timeout=500,
    )
    out_one, err_one = one.communicate(timeout=500)
    assert one.returncode == 0, err_one
    assert two.returncode == 0, two.stderr[-3000:]

    # Rank 0 alone logs and writes: one summary line, one set of files.
    assert two.stdout.count("done: 2 epochs") == 1
    assert "2 process(es) on cpu" in two.stdout and "global batch 8" in two.stdout
    assert "1 process(es) on cpu" in out_one and "global batch 8" in out_one

    a, b = load_checkpoint(single / "checkpoint_last.pt"), load_checkpoint(ddp / "checkpoint_last.pt")
    assert a["global_step"] == b["global_step"] == 4
    assert b["world_size"] == 2 and len(b["rng"]) == 2  # every rank's generators are saved
    for key, tensor in a["model"].items():
        other = b["model"][key]
        if key.endswith("self_attn.in_proj_bias"):
            # The key bias (middle third) adds the same score to every key, which softmax cancels: its gradient
            # is exactly 0 in theory and rounding noise in practice, which Adam turns into +-lr steps. It has
            # no effect on any output, so only the query and value biases are compared.
            e = tensor.shape[0] // 3
            tensor, other = torch.cat([tensor[:e], tensor[2 * e:]]), torch.cat([other[:e], other[2 * e:]])
        if tensor.is_floating_point():
            assert torch.allclose(tensor, other, atol=1e-5, rtol=0), key

    rows_a, rows_b = read_metrics_csv(single / "metrics.csv"), read_metrics_csv(ddp / "metrics.csv")
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        for key in ("train_loss", "val_loss"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-5), key
        for key in ("train_top1", "val_top1", "val_top5", "val_mca"):
            assert rb[key] == ra[key], key
    # Training did move the weights (matching them is not trivial): lr 1e-2 for 4 Adam steps.
    assert rows_a[0]["train_loss"] != rows_a[1]["train_loss"]
