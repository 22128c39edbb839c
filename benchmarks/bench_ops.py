"""Time and peak memory of the time-aligned graph operator and of TAG-Head against the reference path.

Cases, side by side at the reference shape (B=8, T=8, 7x7, C=512, K=2) and a large one
(B=8, T=16, 14x14, C=768):

* ``taghead op``: :func:`taghead.ops.time_aligned_appnp` alone, and followed by a mean pool;
* ``PyG reference``: what the reference implementation does per batch: one ``Data(x=tokens[i],
  edge_index=E)`` per clip, ``Batch.from_data_list``, ``APPNP(K, alpha)``, ``global_mean_pool``;
* ``dense Â``: K products with the dense normalised ``N x N`` adjacency, then a mean pool;
* ``x.clone()``: the memory-bound floor (read x once, write x once, one allocation);
* ``t x t time mix alone``: the one batched ``t x t`` matrix product the operator is built on
  (``torch.matmul(Q, x.view(B, t, -1))``), i.e. the BLAS floor of any plain-torch formulation.

The operator and the two floors are also timed *cold*: before each call a buffer four times the size
of the last-level cache is written, so that ``x`` comes from memory, as it does in a network whose
activations do not fit in the cache. At the reference shape ``x`` is 6.4 MB: warm, it stays in the
CPU's L3 cache, where ``clone`` is a cache-speed ``memcpy``.

and the whole head, forward + backward: :class:`taghead.TAGHead` (gym99 preset) against the reference
head built from torch's ``nn.TransformerEncoder`` and torch_geometric.

Peak memory is measured in a fresh subprocess per case: on CPU the rise of the process's maximum
resident set size (``ru_maxrss``) over its value once the inputs exist, on CUDA
``torch.cuda.max_memory_allocated`` over the memory the inputs hold. Times are medians (and minima)
after warm-up; the cases of one shape run in one subprocess in interleaved rounds, so that on a shared
machine they all see the same load. The script prints a table, the ratios and PASS/FAIL for the
targets, and writes the table to the ``ops`` section of ``benchmarks/RESULTS.md`` (``ops-cuda`` for
``--device cuda``, ``ops-threads1`` for ``--threads 1``).

On a machine shared with other work, two OpenMP threads per process stall at every parallel region
whenever the other core is busy; ``--threads 1`` then gives steadier numbers.

Usage::

    python benchmarks/bench_ops.py            # CPU, about 4 minutes on 2 idle cores
    python benchmarks/bench_ops.py --quick    # one timed round, reference shape only
    python benchmarks/bench_ops.py --device cuda
    python benchmarks/bench_ops.py --cases op clone --no-write   # a subset, RESULTS.md untouched
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

SHAPES: dict[str, dict[str, int]] = {
    "reference": dict(b=8, t=8, h=7, w=7, c=512, k=2),
    "large": dict(b=8, t=16, h=14, w=14, c=768, k=2),
}
ALPHA = 0.1
OP_CASES = ("op", "op_pool", "pyg", "dense", "clone", "mix")
COLD_CASES = ("op", "clone", "mix")  # forward also timed with a flushed cache
HEAD_CASES = ("head_tag", "head_ref")
LABELS = {
    "op": "taghead op",
    "op_pool": "taghead op + mean pool",
    "pyg": "PyG reference (Data/Batch/APPNP/pool)",
    "dense": "dense Â, K matmuls + mean pool",
    "clone": "x.clone() (memory floor)",
    "mix": "t x t time mix alone (one batched matmul)",
    "head_tag": "TAGHead (gym99 preset)",
    "head_ref": "reference head (TransformerEncoder + PyG)",
}
#: The reference path materialises a C-channel message per edge: skip it where that cannot fit.
DEFAULT_REF_LIMIT_GB = 6.0


# --------------------------------------------------------------------------------------------------
# The reference implementation's path (REFERENCE.md, section 1), written with torch and torch_geometric.
# --------------------------------------------------------------------------------------------------


def _import_pyg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.data import Batch, Data
        from torch_geometric.nn import APPNP, global_mean_pool
    return Batch, Data, APPNP, global_mean_pool


def reference_graph_step(tokens: torch.Tensor, edge_index: torch.Tensor, appnp: torch.nn.Module) -> torch.Tensor:
    """One ``Data`` per clip, ``Batch.from_data_list``, APPNP over the block-diagonal graph, mean pool."""
    Batch, Data, _, global_mean_pool = _import_pyg()
    batch = Batch.from_data_list([Data(x=tokens[i], edge_index=edge_index) for i in range(tokens.shape[0])])
    return global_mean_pool(appnp(batch.x, batch.edge_index), batch.batch)


class ReferenceTAGHead(torch.nn.Module):
    """The reference head: + positional embedding, TransformerEncoder, PyG APPNP, mean pool, LayerNorm + Linear."""

    def __init__(self, c: int, t: int, h: int, w: int, num_classes: int, mlp_dim: int, k: int = 2,
                 alpha: float = ALPHA, depth: int = 2, num_heads: int = 8, dropout: float = 0.5) -> None:
        from taghead.ops import time_aligned_edge_index

        super().__init__()
        _, _, APPNP, _ = _import_pyg()
        self.pos_embedding = torch.nn.Parameter(torch.randn(1, t * h * w, c))
        layer = torch.nn.TransformerEncoderLayer(c, num_heads, mlp_dim, dropout, batch_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.register_buffer("edge_index", time_aligned_edge_index(t, h, w))
        self.appnp = APPNP(K=k, alpha=alpha)
        self.classifier = torch.nn.Sequential(torch.nn.LayerNorm(c), torch.nn.Linear(c, num_classes))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        tokens = self.transformer(feat.flatten(2).transpose(1, 2) + self.pos_embedding)
        return self.classifier(reference_graph_step(tokens, self.edge_index, self.appnp))


def reference_peak_estimate_gb(shape: dict[str, int]) -> float:
    """Rough forward+backward peak of the PyG path: a few ``[E, C]`` float32 message tensors."""
    p = shape["h"] * shape["w"]
    edges = shape["b"] * (shape["t"] * p * (p - 1) + 2 * (shape["t"] - 1) * p + shape["t"] * p)
    return 3 * edges * shape["c"] * 4 / 2**30


# --------------------------------------------------------------------------------------------------
# Workers: memory of one case, or times of a group of cases, in a fresh process.
# --------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _build_case(case: str, shape: dict[str, int], device: torch.device):
    """Inputs and the two callables (forward, forward+backward) of one case."""
    from taghead import TAGHead
    from taghead.ops import time_aligned_adjacency, time_aligned_appnp

    b, t, h, w, c, k = (shape[key] for key in "bthwck")
    n = t * h * w
    gen = torch.Generator().manual_seed(0)

    if case in HEAD_CASES:
        feat = torch.randn(b, c, t, h, w, generator=gen).to(device)
        target = torch.randint(0, 99, (b,), generator=gen).to(device)
        torch.manual_seed(0)
        if case == "head_tag":
            head = TAGHead.from_preset("gym99", in_channels=c).to(device)
        else:
            head = ReferenceTAGHead(c, t, h, w, num_classes=99, mlp_dim=1024, k=k).to(device)

        def forward() -> torch.Tensor:
            head.eval()
            with torch.no_grad():
                return head(feat)

        def forward_backward() -> None:
            head.train()
            head.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(head(feat), target).backward()

        return forward, forward_backward

    x = torch.randn(b, n, c, generator=gen).to(device).requires_grad_()
    pooled = case not in ("op", "clone", "mix")
    grad_out = torch.randn((b, c) if pooled else (b, n, c), generator=gen).to(device)

    if case == "op":
        def fn(v: torch.Tensor) -> torch.Tensor:
            return time_aligned_appnp(v, t, h, w, k, ALPHA)
    elif case == "op_pool":
        def fn(v: torch.Tensor) -> torch.Tensor:
            return time_aligned_appnp(v, t, h, w, k, ALPHA).mean(dim=1)
    elif case == "pyg":
        from taghead.ops import time_aligned_edge_index

        _, _, APPNP, _ = _import_pyg()
        edge_index = time_aligned_edge_index(t, h, w).to(device)  # the reference keeps it as a buffer
        appnp = APPNP(K=k, alpha=ALPHA)

        def fn(v: torch.Tensor) -> torch.Tensor:
            return reference_graph_step(v, edge_index, appnp)
    elif case == "dense":
        adjacency = time_aligned_adjacency(t, h, w).to(device)

        def fn(v: torch.Tensor) -> torch.Tensor:
            out = v
            for _ in range(k):
                out = (1 - ALPHA) * torch.matmul(adjacency, out) + ALPHA * v
            return out.mean(dim=1)
    elif case == "clone":
        def fn(v: torch.Tensor) -> torch.Tensor:
            return v.clone()
    elif case == "mix":
        mixing = torch.randn(t, t, generator=gen).to(device)  # any t x t matrix costs the same

        def fn(v: torch.Tensor) -> torch.Tensor:
            return torch.matmul(mixing, v.view(b, t, -1)).view(b, n, c)
    else:
        raise ValueError(f"unknown case {case!r}")

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return fn(x)

    def forward_backward() -> None:
        x.grad = None
        fn(x).backward(grad_out)

    return forward, forward_backward


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _cache_flusher(device: torch.device) -> Callable[[], None]:
    """A function that evicts the caches: it writes a buffer four times the last-level cache size."""
    if device.type == "cuda":
        size = 4 * torch.cuda.get_device_properties(device).L2_cache_size
    else:
        try:
            size = 4 * os.sysconf("SC_LEVEL3_CACHE_SIZE")
        except (ValueError, OSError):
            size = 0
    buffer = torch.empty(max(size, 128 * 2**20) // 4, device=device)

    def flush() -> None:
        buffer.add_(1.0)
        _sync(device)

    return flush


def measure_memory(spec: dict) -> dict[str, float]:
    """Peak memory (MB) of one forward and one forward+backward call of one case, in this fresh process."""
    device = torch.device(spec["device"])
    forward, forward_backward = _build_case(spec["case"], SHAPES[spec["shape"]], device)
    result: dict[str, float] = {}
    if device.type == "cuda":
        for name, fn in (("fwd", forward), ("fb", forward_backward)):
            _sync(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            out = fn()
            _sync(device)
            result[f"{name}_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            del out
    else:
        base = _maxrss_mb()
        out = forward()
        result["fwd_peak_mb"] = _maxrss_mb() - base
        del out
        forward_backward()
        result["fb_peak_mb"] = _maxrss_mb() - base  # high-water mark: max of both, i.e. forward+backward
    return result


def measure_times(spec: dict) -> dict[str, dict[str, float]]:
    """Median and minimum times (ms) of a group of cases, measured in interleaved rounds.

    Every round times every case once, so that all cases of a group see the same load on a shared
    machine; a fast call is repeated within a round (about 0.3 s worth) to get enough samples.
    """
    device = torch.device(spec["device"])
    shape = SHAPES[spec["shape"]]
    calls = {}
    for case in spec["cases"]:
        forward, forward_backward = _build_case(case, shape, device)
        calls[(case, "fwd")], calls[(case, "fb")] = forward, forward_backward
    first = {key: _timed(fn, device) for key, fn in calls.items()}  # warm-up and a first estimate
    rounds = 1 if spec["quick"] else spec.get("rounds") or (3 if max(first.values()) > 3.0 else 5)
    repeats = {key: 1 if t > 0.1 else max(1, min(30, int(0.3 / max(t, 1e-4)))) for key, t in first.items()}
    for key, fn in calls.items():  # a second warm-up for the fast calls
        if first[key] < 1.0:
            _timed(fn, device)
    cold = [case for case in spec["cases"] if case in COLD_CASES]
    flush = _cache_flusher(device) if cold else None  # its buffer is 4x the cache: only when needed
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    samples.update({(case, "cold"): [] for case in cold})
    for _ in range(rounds):
        for key, fn in calls.items():
            samples[key] += [_timed(fn, device) for _ in range(repeats[key])]
        for case in cold:
            for _ in range(repeats[(case, "fwd")]):
                flush()
                samples[(case, "cold")].append(_timed(calls[(case, "fwd")], device))
    result: dict[str, dict[str, float]] = {case: {} for case in spec["cases"]}
    for (case, mode), times in samples.items():
        result[case][f"{mode}_ms"] = statistics.median(times) * 1e3
        result[case][f"{mode}_min_ms"] = min(times) * 1e3
        result[case][f"{mode}_n"] = len(times)
    return result


def run_worker(spec: dict) -> dict:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return measure_memory(spec) if spec["mode"] == "memory" else measure_times(spec)


def run_subprocess(**spec) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# Driver: run all cases, print, check targets, write RESULTS.md.
# --------------------------------------------------------------------------------------------------


def machine_description(device: str, threads: int | None) -> str:
    from _results import cpu_name

    cpu = cpu_name()
    n = threads or torch.get_num_threads()
    parts = [f"CPU {cpu} ({os.cpu_count()} logical cores), torch {torch.__version__} "
             f"with {n} thread{'s' if n != 1 else ''}"]
    try:
        import torch_geometric

        parts.append(f"torch_geometric {torch_geometric.__version__}")
    except ImportError:
        pass
    if device == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    parts.append(f"Python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} at the end (the benchmark's own workers included)")
    return ", ".join(parts)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _time(r: dict, mode: str) -> str:
    return f"{_fmt(r[f'{mode}_ms'], 2)} ({_fmt(r[f'{mode}_min_ms'], 2)})"


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den <= 0:
        return "-"
    return f"{num / den:,.1f}x"


def build_table(results: dict[tuple[str, str], dict | None]) -> str:
    """Markdown table of the cases that ran (``None`` = skipped), in the order they ran."""
    rows = ["| shape | case | forward ms, median (min) | fwd+bwd ms, median (min) | peak fwd MB | peak fwd+bwd MB "
            "| fwd+bwd speed-up vs reference |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (shape, case), r in results.items():
        s = SHAPES[shape]
        label = f"{shape} B={s['b']} T={s['t']} {s['h']}x{s['w']} C={s['c']} K={s['k']}"
        if case in HEAD_CASES:
            label = f"{shape}, whole head, {label.split(' ', 1)[1]}"
        if r is None:
            rows.append(f"| {label} | {LABELS[case]} | skipped | skipped | - | - | - |")
            continue
        ref = results.get((shape, "head_ref" if case in HEAD_CASES else "pyg"))
        speedup = _ratio(ref["fb_ms"], r["fb_ms"]) if ref and case in ("op", "op_pool", "dense", "head_tag") else "-"
        rows.append(f"| {label} | {LABELS[case]} | {_time(r, 'fwd')} | {_time(r, 'fb')} | "
                    f"{_fmt(r['fwd_peak_mb'])} | {_fmt(r['fb_peak_mb'])} | {speedup} |")
    return "\n".join(rows)


def build_floor_table(results: dict[tuple[str, str], dict | None]) -> str:
    """Forward of the operator against the two floors, with a warm and a flushed (cold) cache."""
    rows = ["| shape | cache | taghead op ms | x.clone() ms | t x t time mix alone ms | op / clone | op / time mix |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for shape in SHAPES:
        op, clone, mix = (results.get((shape, case)) for case in ("op", "clone", "mix"))
        if not (op and clone and mix and "cold_ms" in op):
            continue
        for cache, key in (("warm", "fwd_ms"), ("cold", "cold_ms")):
            rows.append(f"| {shape} | {cache} | {_fmt(op[key], 2)} | {_fmt(clone[key], 2)} | {_fmt(mix[key], 2)} | "
                        f"{_ratio(op[key], clone[key])} | {_ratio(op[key], mix[key])} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def check_targets(results: dict[tuple[str, str], dict | None]) -> list[tuple[bool, str]]:
    """PASS/FAIL of every target whose cases ran."""
    checks: list[tuple[bool, str]] = []
    for shape in SHAPES:
        op, op_pool, pyg, clone = (results.get((shape, case)) for case in ("op", "op_pool", "pyg", "clone"))
        if pyg and op_pool:
            ratio = pyg["fb_ms"] / op_pool["fb_ms"]
            checks.append((ratio >= 100, f"{shape}: operator (+ mean pool) fwd+bwd {ratio:,.0f}x faster than the "
                                         "PyG reference path (target >= 100x)"))
        if op and clone:
            ratio = op["fwd_ms"] / clone["fwd_ms"]
            checks.append((ratio <= 5, f"{shape}: operator forward {ratio:.2f}x the time of x.clone() (target <= 5x)"))
            if "cold_ms" in op and "cold_ms" in clone:
                ratio = op["cold_ms"] / clone["cold_ms"]
                checks.append((ratio <= 5, f"{shape}, cold cache: operator forward {ratio:.2f}x the time of x.clone() "
                                           "(target <= 5x)"))
    tag, ref = results.get(("reference", "head_tag")), results.get(("reference", "head_ref"))
    if tag and ref:
        ratio = ref["fb_ms"] / tag["fb_ms"]
        checks.append((ratio >= 1.5, f"whole head fwd+bwd {ratio:.2f}x faster than the reference head (target >= 1.5x)"))
        checks.append((tag["fb_peak_mb"] < ref["fb_peak_mb"],
                       f"whole head fwd+bwd peak memory {tag['fb_peak_mb']:,.0f} MB vs reference "
                       f"{ref['fb_peak_mb']:,.0f} MB (target: lower)"))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, reference shape only")
    parser.add_argument("--ref-limit-gb", type=float, default=DEFAULT_REF_LIMIT_GB,
                        help="skip the PyG reference path where its estimated peak exceeds this (GB)")
    parser.add_argument("--cases", nargs="+", choices=OP_CASES + HEAD_CASES, default=None,
                        help="run only these cases (the targets of the others are not checked)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each case (default: torch's)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")

    from tqdm import tqdm

    shapes = ["reference"] if args.quick else list(SHAPES)
    groups = [(shape, list(OP_CASES)) for shape in shapes] + [("reference", list(HEAD_CASES))]
    if args.cases:
        groups = [(shape, [c for c in cases if c in args.cases]) for shape, cases in groups]
    order = [(shape, case) for shape, cases in groups for case in cases]
    results: dict[tuple[str, str], dict | None] = {}
    skipped: list[str] = []
    for shape, cases in groups:
        estimate = reference_peak_estimate_gb(SHAPES[shape])
        if "pyg" in cases and estimate > args.ref_limit_gb:
            cases.remove("pyg")
            results[(shape, "pyg")] = None
            skipped.append(f"{shape}: PyG reference path skipped: its per-edge messages need about "
                           f"{estimate:.0f} GB (> --ref-limit-gb {args.ref_limit_gb:g})")
    common = dict(device=args.device, quick=args.quick, threads=args.threads)
    jobs = [("memory", shape, [case]) for shape, cases in groups for case in cases]
    jobs += [("timing", shape, cases) for shape, cases in groups if cases]
    rounds = {"head_tag": 5, "head_ref": 5}  # the head comparison gets five rounds whatever the cost
    started = time.perf_counter()
    for mode, shape, cases in tqdm(jobs, desc="benchmark jobs", unit="job", file=sys.stderr):
        if mode == "memory":
            results[(shape, cases[0])] = run_subprocess(mode=mode, shape=shape, case=cases[0], **common)
        else:
            group_rounds = max((rounds.get(case, 0) for case in cases), default=0) or None
            for case, times in run_subprocess(mode=mode, shape=shape, cases=cases, rounds=group_rounds,
                                              **common).items():
                results[(shape, case)].update(times)
    results = {key: results[key] for key in order}

    machine = machine_description(args.device, args.threads)
    table = build_table(results)
    floors = build_floor_table(results)
    if floors:
        table += ("\n\nForward of the operator against the memory floor (`x.clone()`) and the BLAS floor (the bare "
                  "`t x t` time mix), medians in ms; cold: a buffer of 4x the last-level cache written before each "
                  "call.\n\n" + floors)
    checks = check_targets(results)
    elapsed = time.perf_counter() - started

    print(f"\nMachine: {machine}")
    print(f"Device: {args.device}; times: medians (minimum) after warm-up, the cases of a group timed in "
          "interleaved rounds; peak memory: "
          f"{'max_memory_allocated' if args.device == 'cuda' else 'rise of ru_maxrss'} in a fresh process per case\n")
    print(table)
    for line in skipped:
        print(f"\nNote: {line}")
    print()
    for ok, message in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {message}")
    print(f"\n({elapsed:.0f} s)")

    if args.cases:
        print("(--cases: a partial run, benchmarks/RESULTS.md left as it is)")
    elif not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _results import write_section

        notes = "".join(f"\n\n{line}." for line in skipped)
        verdicts = "\n".join(f"- {'PASS' if ok else 'FAIL'}: {message}" for ok, message in checks)
        mode = " (--quick)" if args.quick else ""
        section = "ops" + (f"-{args.device}" if args.device != "cpu" else "") + (
            f"-threads{args.threads}" if args.threads else "")
        write_section(section, (
            f"## Graph operator and head ({args.device}{mode}"
            f"{f', {args.threads} thread' + ('s' if args.threads > 1 else '') if args.threads else ''})\n\n"
            f"`python benchmarks/bench_ops.py{' '.join([''] + (argv if argv is not None else sys.argv[1:]))}`"
            f" on {time.strftime('%Y-%m-%d')}. {machine}.\n"
            f"Times are medians (minimum) after warm-up, the cases of one shape timed in interleaved rounds "
            f"so that they see the same load; peak memory is measured in a fresh process per case "
            f"({'torch.cuda.max_memory_allocated' if args.device == 'cuda' else 'rise of ru_maxrss'} above the inputs).\n\n"
            f"{table}{notes}\n\n{verdicts}"
        ))
        print(f"wrote the {section} section of benchmarks/RESULTS.md")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
