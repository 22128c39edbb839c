"""Peak memory of one training step with and without gradient checkpointing (``model.set_grad_checkpointing()``).

Usage: ``.venv/bin/python benchmarks/bench_grad_checkpointing.py [--no-write] [--threads N]``

Every measurement runs in a fresh subprocess: build the model and a random batch, read the resident set size
(``VmRSS``), run the forward and backward passes of one training step (cross-entropy loss) and read the
process's peak resident set size (``ru_maxrss``). The step's memory is the peak minus the size before the step:
the activations kept for the backward pass, the gradients (the same in both runs) and temporaries; the
optimizer's step is left out (its state is the same with and without checkpointing). The step time is measured
in the same run. Printed, and written to ``benchmarks/RESULTS.md`` (section ``grad_checkpointing``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _results import cpu_name, write_section  # noqa: E402

#: (label, registered model or backbone name, head, frames, crop, batch)
CONFIGS = [
    ("tag_r3d_18", "tag_r3d_18", None, 16, 112, 4),
    ("tag_r2plus1d_34_haa500", "tag_r2plus1d_34_haa500", None, 32, 112, 1),
    ("tag_x3d_m", "tag_x3d_m", None, 16, 224, 2),
    ("tag_slowfast_r50", "tag_slowfast_r50", None, 32, 224, 1),
    ("ART on torchvision/r3d_18", "torchvision/r3d_18", "art", 16, 112, 4),
]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(index: int, checkpointing: bool, threads: int) -> dict[str, float]:
    """One training step of ``CONFIGS[index]`` in this (fresh) process; memory in MiB, time in s."""
    import torch

    import taghead

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, name, head, frames, crop, batch = CONFIGS[index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if head is None:
            model = taghead.create_model(name, num_classes=10, num_frames=frames, crop_size=crop)
        else:
            model = taghead.wrap_backbone(name, 10, head=head, num_frames=frames, crop_size=crop)
    model.train().set_grad_checkpointing(checkpointing)
    video = torch.randn(batch, 3, frames, crop, crop)
    target = torch.randint(0, 10, (batch,))
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / 2**20
    before = _rss_mib()
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(video), target).backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"before": before, "peak": peak, "step": peak - before, "grads": grads, "seconds": seconds}


def measure(index: int, checkpointing: bool, threads: int) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, __file__, "--child", str(index), "--checkpointing", str(int(checkpointing)),
                          "--threads", str(threads)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, bool(args.checkpointing), args.threads)))
        return

    from tqdm import tqdm

    load = os.getloadavg()
    rows = []
    for index, (label, _, _, frames, crop, batch) in enumerate(tqdm(CONFIGS, desc="configs")):
        plain, ckpt = measure(index, False, args.threads), measure(index, True, args.threads)
        rows.append(f"| {label} | {batch} x {frames} x {crop}² | {plain['step']:.0f} | {ckpt['step']:.0f} | "
                    f"{100 * (1 - ckpt['step'] / plain['step']):.0f} % | {plain['grads']:.0f} | "
                    f"{plain['peak']:.0f} | {ckpt['peak']:.0f} | {ckpt['seconds'] / plain['seconds']:.2f}x |")
    end_load = os.getloadavg()
    text = "\n".join([
        "## Gradient checkpointing: memory of one training step (`python benchmarks/bench_grad_checkpointing.py`)",
        "",
        f"CPU: {cpu_name()}, {args.threads} threads, float32, AdamW, random weights; load average (1/5/15 min) "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start, {end_load[0]:.1f} / {end_load[1]:.1f} / "
        f"{end_load[2]:.1f} at the end. One fresh process per cell. *Step memory*: peak resident set size during "
        "the forward and backward passes of one training step minus the size before them (activations, "
        "gradients, temporaries; the gradients alone are the *gradients* column, the same in both runs); "
        "*peak*: the process's peak resident set size (model and libraries included). *Time*: forward and "
        "backward with checkpointing divided by without (one sample each, noisy on a shared machine).",
        "",
        "| model | clips (batch x frames x crop) | step memory, plain (MiB) | step memory, checkpointed (MiB) | saved | "
        "gradients (MiB) | peak, plain (MiB) | peak, checkpointed (MiB) | time ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])
    print(text)
    if not args.no_write:
        write_section("grad_checkpointing", text)


if __name__ == "__main__":
    main()
