"""The time-aligned graph operator against torch_geometric's APPNP, its cost and its error paths.

Relative error here is norm-wise: ``max|a - b| / max|b|`` (element-wise ratios are meaningless near 0).
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from taghead.ops import time_aligned_adjacency, time_aligned_appnp, time_aligned_edge_index

with warnings.catch_warnings():  # torch_geometric's import warns about torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import APPNP
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import to_dense_adj

# torch_geometric compiles some helpers with the deprecated torch.jit.script on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().clamp_min(1e-30)
    return float((actual - expected).abs().max() / scale) if expected.numel() else 0.0


def pyg_reference(x: torch.Tensor, t: int, h: int, w: int, k: int, alpha: float, intra: bool = True,
                  temporal: bool = True) -> torch.Tensor:
    """What the reference does: one ``Data`` per clip, ``Batch.from_data_list``, ``APPNP(K, alpha)``."""
    n, c = x.shape[-2:]
    clips = x.reshape(-1, n, c)
    edge_index = time_aligned_edge_index(t, h, w, intra=intra, temporal=temporal, device=x.device)
    batch = Batch.from_data_list([Data(x=clip, edge_index=edge_index) for clip in clips])
    out = APPNP(K=k, alpha=alpha)(batch.x, batch.edge_index)
    return out.reshape(x.shape)


def edges_by_definition(t: int, h: int, w: int, intra: bool, temporal: bool) -> set[tuple[int, int]]:
    """The edge set straight from the definition, node ``(τ, i, j)`` numbered ``τ*h*w + i*w + j``."""
    node = {(tau, i, j): tau * h * w + i * w + j for tau in range(t) for i in range(h) for j in range(w)}
    edges = set()
    for (tau, i, j), a in node.items():
        for (sigma, k, m), b in node.items():
            if intra and tau == sigma and a != b:
                edges.add((a, b))
            if temporal and abs(tau - sigma) == 1 and (i, j) == (k, m):
                edges.add((a, b))
    return edges


# ------------------------------------------------------------------ parity with torch_geometric


@settings(max_examples=50, deadline=None)
@given(
    t=st.integers(1, 6), h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 6),
    k=st.integers(0, 6), alpha=st.floats(0.0, 1.0), intra=st.booleans(), temporal=st.booleans(),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16),
)
def test_matches_pyg_appnp(t, h, w, c, k, alpha, intra, temporal, lead, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, t * h * w, c, generator=gen, dtype=dtype)
    out = time_aligned_appnp(x, t, h, w, k, alpha, intra=intra, temporal=temporal)
    expected = pyg_reference(x, t, h, w, k, alpha, intra, temporal)
    assert out.shape == x.shape and out.dtype == dtype
    assert rel_err(out, expected) <= TOL[dtype]


EDGE_CASES = {
    "t=1": dict(t=1, h=3, w=3, k=2),
    "h*w=1": dict(t=5, h=1, w=1, k=3),
    "t=1 and h*w=1": dict(t=1, h=1, w=1, k=2),
    "k=0": dict(t=3, h=2, w=2, k=0),
    "both edge sets off": dict(t=3, h=2, w=3, k=4, intra=False, temporal=False),
    "intra only": dict(t=3, h=2, w=3, k=3, temporal=False),
    "temporal only": dict(t=4, h=2, w=2, k=3, intra=False),
    "reference grid": dict(t=8, h=7, w=7, k=2),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(EDGE_CASES), ids=list(EDGE_CASES))
def test_edge_cases_match_pyg(case, dtype, generator):
    cfg = dict(EDGE_CASES[case])
    t, h, w, k = cfg.pop("t"), cfg.pop("h"), cfg.pop("w"), cfg.pop("k")
    x = torch.randn(2, t * h * w, 5, generator=generator, dtype=dtype)
    out = time_aligned_appnp(x, t, h, w, k, 0.1, **cfg)
    assert rel_err(out, pyg_reference(x, t, h, w, k, 0.1, **cfg)) <= TOL[dtype]
    if case in ("k=0", "both edge sets off", "t=1 and h*w=1"):
        assert torch.allclose(out, x, rtol=0, atol=TOL[dtype])  # nothing to propagate over: the identity


def test_several_leading_batch_dims(generator):
    t, h, w = 3, 2, 3
    x = torch.randn(2, 3, 4, t * h * w, 5, generator=generator, dtype=torch.float64)
    out = time_aligned_appnp(x, t, h, w)
    assert out.shape == x.shape
    assert rel_err(out, pyg_reference(x, t, h, w, 2, 0.1)) <= 1e-10
    for index in itertools.product(range(2), range(3), range(4)):  # every clip on its own graph
        assert torch.equal(out[index], time_aligned_appnp(x[index], t, h, w))


def test_unbatched_input(generator):
    x = torch.randn(2 * 3 * 3, 4, generator=generator, dtype=torch.float64)
    assert rel_err(time_aligned_appnp(x, 2, 3, 3), pyg_reference(x, 2, 3, 3, 2, 0.1)) <= 1e-10


def test_empty_batch():
    x = torch.zeros(0, 12, 3)
    assert time_aligned_appnp(x, 3, 2, 2).shape == (0, 12, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(dtype, generator):
    b, c, t, h, w = 2, 6, 4, 3, 2
    feat = torch.randn(b, c, t, h, w, generator=generator, dtype=dtype)
    channels_first = feat.flatten(2).transpose(1, 2)  # what a head sees: [B, N, C] over a [B, C, N] buffer
    assert not channels_first.is_contiguous()
    expected = pyg_reference(channels_first.contiguous(), t, h, w, 2, 0.1)
    out = time_aligned_appnp(channels_first, t, h, w)
    assert rel_err(out, expected) <= TOL[dtype]
    sliced = torch.randn(b, t * h * w, 2 * c, generator=generator, dtype=dtype)[..., ::2]  # strided channels
    assert rel_err(time_aligned_appnp(sliced, t, h, w), pyg_reference(sliced.contiguous(), t, h, w, 2, 0.1)) <= TOL[dtype]
    leading = torch.randn(2 * b, t * h * w, c, generator=generator, dtype=dtype)[::2]  # strided batch
    assert rel_err(time_aligned_appnp(leading, t, h, w), pyg_reference(leading.contiguous(), t, h, w, 2, 0.1)) <= TOL[dtype]


def test_self_adjoint(generator):
    """The propagation is symmetric: <A x, y> = <x, A y> (what its backward relies on)."""
    x, y = torch.randn(2, 2, 36, 3, generator=generator, dtype=torch.float64)
    for k, intra, temporal in [(2, True, True), (5, False, True), (None, True, False)]:
        ax = time_aligned_appnp(x, 4, 3, 3, k, 0.3, intra=intra, temporal=temporal)
        ay = time_aligned_appnp(y, 4, 3, 3, k, 0.3, intra=intra, temporal=temporal)
        assert abs(float((ax * y).sum() - (x * ay).sum())) <= 1e-12 * float(ax.abs().sum())


# ------------------------------------------------------------------ K -> infinity, dense reference, edges


@pytest.mark.parametrize("alpha", [0.1, 0.5])
@pytest.mark.parametrize("intra,temporal", [(True, True), (True, False), (False, True)])
def test_k_none_is_the_limit(alpha, intra, temporal, generator):
    t, h, w = 4, 2, 3
    x = torch.randn(2, t * h * w, 3, generator=generator, dtype=torch.float64)
    limit = time_aligned_appnp(x, t, h, w, None, alpha, intra=intra, temporal=temporal)
    assert rel_err(limit, time_aligned_appnp(x, t, h, w, 600, alpha, intra=intra, temporal=temporal)) <= 1e-10
    assert rel_err(limit, pyg_reference(x, t, h, w, 400, alpha, intra, temporal)) <= 1e-10
    a_hat = time_aligned_adjacency(t, h, w, intra=intra, temporal=temporal, dtype=torch.float64)
    closed_form = alpha * torch.linalg.solve(torch.eye(t * h * w, dtype=torch.float64) - (1 - alpha) * a_hat, x)
    assert rel_err(limit, closed_form) <= 1e-10


@pytest.mark.parametrize("k", [0, 1, 2, 7])
@pytest.mark.parametrize("intra,temporal", [(True, True), (True, False), (False, True), (False, False)])
def test_dense_adjacency_iterated_by_hand(k, intra, temporal, generator):
    t, h, w, alpha = 3, 3, 2, 0.2
    x = torch.randn(2, t * h * w, 4, generator=generator, dtype=torch.float64)
    a_hat = time_aligned_adjacency(t, h, w, intra=intra, temporal=temporal, dtype=torch.float64)
    out = x
    for _ in range(k):
        out = (1 - alpha) * a_hat @ out + alpha * x
    assert rel_err(time_aligned_appnp(x, t, h, w, k, alpha, intra=intra, temporal=temporal), out) <= 1e-10


@pytest.mark.parametrize("intra,temporal", [(True, True), (True, False), (False, True)])
def test_normalized_adjacency_equals_pyg_gcn_norm(intra, temporal):
    t, h, w = 3, 2, 3
    n = t * h * w
    edge_index, weight = gcn_norm(time_aligned_edge_index(t, h, w, intra=intra, temporal=temporal), None, n,
                                  add_self_loops=True, dtype=torch.float64)
    expected = to_dense_adj(edge_index, edge_attr=weight, max_num_nodes=n)[0]
    actual = time_aligned_adjacency(t, h, w, intra=intra, temporal=temporal, dtype=torch.float64)
    assert torch.allclose(actual, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("t,h,w", [(8, 7, 7), (4, 7, 7), (16, 14, 14), (1, 3, 3), (5, 1, 1)])
def test_edge_counts(t, h, w):
    """REFERENCE.md: T*P*(P-1) intra-frame edges plus 2*(T-1)*P temporal edges per clip."""
    p = h * w
    edge_index = time_aligned_edge_index(t, h, w)
    assert edge_index.shape == (2, t * p * (p - 1) + 2 * (t - 1) * p) and edge_index.dtype == torch.long
    assert time_aligned_edge_index(t, h, w, temporal=False).shape[1] == t * p * (p - 1)
    assert time_aligned_edge_index(t, h, w, intra=False).shape[1] == 2 * (t - 1) * p
    assert time_aligned_edge_index(t, h, w, intra=False, temporal=False).shape == (2, 0)
    assert not bool((edge_index[0] == edge_index[1]).any()), "self-loops"
    if t * p <= 400:  # (sorting the 617,400 edges of the large grid is slow, and proves nothing more)
        assert torch.unique(edge_index, dim=1).shape[1] == edge_index.shape[1], "duplicate edges"
    assert int(edge_index.min()) >= 0 and int(edge_index.max()) < t * p


def test_reference_edge_count():
    assert time_aligned_edge_index(8, 7, 7).shape[1] == 19_502  # 18,816 + 686, REFERENCE.md


@pytest.mark.parametrize("intra,temporal", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("t,h,w", [(3, 2, 2), (1, 2, 3), (4, 1, 1), (2, 3, 1)])
def test_edge_index_matches_definition(t, h, w, intra, temporal):
    edge_index = time_aligned_edge_index(t, h, w, intra=intra, temporal=temporal)
    assert set(map(tuple, edge_index.t().tolist())) == edges_by_definition(t, h, w, intra, temporal)


@pytest.mark.parametrize("intra,temporal", [(True, True), (True, False), (False, True)])
def test_unnormalized_adjacency(intra, temporal):
    t, h, w = 3, 2, 2
    a = time_aligned_adjacency(t, h, w, intra=intra, temporal=temporal, normalized=False)
    assert torch.equal(a, a.T), "not symmetric"
    assert torch.equal(a.diagonal(), torch.zeros(t * h * w)), "self-loops"
    expected = torch.zeros_like(a)
    for src, dst in edges_by_definition(t, h, w, intra, temporal):
        expected[dst, src] = 1.0
    assert torch.equal(a, expected)


# ------------------------------------------------------------------ autograd, precision, compile, CUDA


@pytest.mark.parametrize("k", [2, None])
@pytest.mark.parametrize("layout", ["contiguous", "channels_first"])
def test_gradcheck_and_gradgradcheck(k, layout, generator):
    t, h, w, c = 3, 2, 2, 3
    if layout == "contiguous":
        x = torch.randn(2, t * h * w, c, generator=generator, dtype=torch.float64, requires_grad=True)

        def fn(v):
            return time_aligned_appnp(v, t, h, w, k, 0.3)
    else:
        x = torch.randn(2, c, t, h, w, generator=generator, dtype=torch.float64, requires_grad=True)

        def fn(v):
            return time_aligned_appnp(v.flatten(2).transpose(1, 2), t, h, w, k, 0.3)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_gradient_matches_pyg(generator):
    t, h, w = 3, 3, 2
    x = torch.randn(2, t * h * w, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, t * h * w, 4, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(time_aligned_appnp(x, t, h, w, 3, 0.2), x, g)
    (theirs,) = torch.autograd.grad(pyg_reference(x, t, h, w, 3, 0.2), x, g)
    assert rel_err(ours, theirs) <= 1e-10


def test_inference_mode_then_autograd(generator):
    """The cached mixing matrices made under inference_mode must still be usable by autograd."""
    x = torch.randn(2, 5 * 3 * 2, 3, generator=generator)
    with torch.inference_mode():
        first = time_aligned_appnp(x, 5, 3, 2, 3, 0.37)
    xg = x.clone().requires_grad_()
    out = time_aligned_appnp(xg, 5, 3, 2, 3, 0.37)
    out.sum().backward()
    assert torch.equal(out.detach(), first) and xg.grad is not None


def test_forward_mode_jvp_is_the_operator(generator):
    """The operator is linear: its Jacobian-vector product is the operator applied to the tangent."""
    x, tangent = torch.randn(2, 2, 36, 3, generator=generator, dtype=torch.float64)
    out, jvp = torch.func.jvp(lambda v: time_aligned_appnp(v, 4, 3, 3), (x,), (tangent,))
    assert torch.allclose(out, time_aligned_appnp(x, 4, 3, 3), rtol=0, atol=1e-12)
    assert torch.allclose(jvp, time_aligned_appnp(tangent, 4, 3, 3), rtol=0, atol=1e-12)


def test_vmap_matches_batched_call(generator):
    x = torch.randn(3, 2, 12, 4, generator=generator)
    batched = torch.vmap(lambda v: time_aligned_appnp(v, 3, 2, 2))(x)
    assert torch.allclose(batched, time_aligned_appnp(x, 3, 2, 2), rtol=0, atol=1e-6)
    xg = x.clone().requires_grad_()  # through the autograd function too
    batched = torch.vmap(lambda v: time_aligned_appnp(v, 3, 2, 2))(xg)
    assert torch.allclose(batched, time_aligned_appnp(x, 3, 2, 2), rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(batched.square().sum(), xg)
    assert torch.allclose(grad, 2 * time_aligned_appnp(time_aligned_appnp(x, 3, 2, 2), 3, 2, 2), rtol=0, atol=1e-5)


@pytest.mark.parametrize("channels_first", [False, True])
def test_autocast_does_not_lower_the_precision(channels_first, generator):
    """Under autocast (bf16 mixed-precision training) the operator still computes in float32, both ways."""
    t, h, w = 4, 3, 3
    feat = torch.randn(2, 8, t, h, w, generator=generator)
    x = feat.flatten(2).transpose(1, 2) if channels_first else feat.flatten(2).transpose(1, 2).contiguous()
    expected = time_aligned_appnp(x, t, h, w)
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = time_aligned_appnp(x, t, h, w)
        out_grad = time_aligned_appnp(xg, t, h, w)
    assert out.dtype == torch.float32 and out_grad.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)  # bf16 products would be off by ~1e-2
    torch.testing.assert_close(out_grad, expected, rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(out_grad.sum(), xg)
    torch.testing.assert_close(grad, time_aligned_appnp(torch.ones_like(x), t, h, w), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_precision_close_to_float32(dtype, tol, generator):
    """Half inputs are propagated in float32: exactly the float32 result on the rounded input, cast back.

    Against the float32 result on the unrounded input the error is the input and output rounding:
    about two units in the last place (float16: 2^-11, bfloat16: 2^-8) relative to max|out|.
    """
    t, h, w = 8, 7, 7
    x = torch.randn(2, t * h * w, 16, generator=generator)
    out = time_aligned_appnp(x.to(dtype), t, h, w)
    assert out.dtype == dtype
    on_rounded_input = time_aligned_appnp(x.to(dtype).float(), t, h, w)
    eps = torch.finfo(dtype).eps  # at most one unit in the last place apart (float32 rounding order)
    assert torch.allclose(out.float(), on_rounded_input, rtol=eps, atol=torch.finfo(dtype).tiny)
    assert rel_err(out, time_aligned_appnp(x, t, h, w)) <= tol
    xh = x.to(dtype).requires_grad_()
    g = torch.randn(x.shape, generator=generator)
    (grad,) = torch.autograd.grad(time_aligned_appnp(xh, t, h, w), xh, g.to(dtype))
    assert grad.dtype == dtype
    assert rel_err(grad, time_aligned_appnp(g, t, h, w)) <= tol  # symmetric: the gradient is A g


def test_torch_compile_fullgraph_matches_eager(generator):
    t, h, w = 3, 2, 2
    x = torch.randn(2, t * h * w, 4, generator=generator, requires_grad=True)
    g = torch.randn(2, t * h * w, 4, generator=generator)

    def fn(v):
        return time_aligned_appnp(v, t, h, w, 2, 0.1)

    compiled = torch.compile(fn, fullgraph=True)
    out = compiled(x)
    (grad,) = torch.autograd.grad(out, x, g)
    eager = fn(x)
    (eager_grad,) = torch.autograd.grad(eager, x, g)
    assert torch.allclose(out, eager, rtol=1e-6, atol=1e-6)
    assert torch.allclose(grad, eager_grad, rtol=1e-6, atol=1e-6)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_pyg(dtype, generator):
    t, h, w = 8, 7, 7
    x = torch.randn(3, t * h * w, 32, generator=generator, dtype=dtype).cuda()
    for layout in (x, x.transpose(1, 2).contiguous().transpose(1, 2)):
        out = time_aligned_appnp(layout, t, h, w)
        assert out.device == x.device
        assert rel_err(out.cpu(), pyg_reference(x.cpu(), t, h, w, 2, 0.1)) <= TOL[dtype]
        assert rel_err(out, pyg_reference(x, t, h, w, 2, 0.1)) <= TOL[dtype]


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_and_gradient(dtype, generator):
    t, h, w = 4, 7, 7
    x = torch.randn(2, t * h * w, 16, generator=generator)
    xc = x.cuda().to(dtype).requires_grad_()
    out = time_aligned_appnp(xc, t, h, w)
    assert out.dtype == dtype
    assert rel_err(out.float().cpu(), time_aligned_appnp(x, t, h, w)) <= 1.6e-2
    out.float().square().sum().backward()
    assert xc.grad.dtype == dtype and torch.isfinite(xc.grad).all()


# ------------------------------------------------------------------ cost: what the operator allocates and saves


class AllocationRecorder(TorchDispatchMode):
    """Records every tensor an aten op creates: outputs whose memory is none of the op's inputs' memory."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, tuple[int, ...], torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs, _ = tree_flatten((args, kwargs))
        input_memory = {v.untyped_storage().data_ptr() for v in inputs if isinstance(v, torch.Tensor)}
        out = func(*args, **kwargs)
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in input_memory:
                self.created.append((str(func), tuple(value.shape), value.dtype))
        return out


COST_CASES = [
    dict(k=2), dict(k=10), dict(k=None), dict(k=2, intra=False), dict(k=2, temporal=False),
    dict(k=2, layout="channels_first"), dict(k=2, dtype=torch.bfloat16),
]


@pytest.mark.parametrize("cfg", COST_CASES, ids=lambda cfg: ",".join(f"{k}={v}" for k, v in cfg.items()))
def test_creates_no_graph_and_no_large_intermediates(cfg, generator):
    cfg = dict(cfg)
    layout, dtype = cfg.pop("layout", "contiguous"), cfg.pop("dtype", torch.float32)
    b, t, h, w, c = 2, 4, 4, 4, 8
    n = t * h * w
    assert c < n
    if layout == "contiguous":
        x = torch.randn(b, n, c, generator=generator).to(dtype)
    else:
        x = torch.randn(b, c, t, h, w, generator=generator).to(dtype).flatten(2).transpose(1, 2)
    x.requires_grad_()
    g = torch.randn(b, n, c, generator=generator).to(dtype)
    with AllocationRecorder() as rec:
        out = time_aligned_appnp(x, t, h, w, alpha=0.1, **cfg)
        (grad,) = torch.autograd.grad(out, x, g)
    assert grad.shape == x.shape
    assert rec.created, "the recorder saw nothing"
    for op, shape, tensor_dtype in rec.created:
        numel = torch.Size(shape).numel()
        assert numel < n * n, f"{op} created a tensor of shape {shape}: as large as an N x N adjacency"
        assert tensor_dtype.is_floating_point, f"{op} created a {tensor_dtype} tensor of shape {shape} (an index?)"
        assert numel <= x.numel(), f"{op} created {shape}, larger than x {tuple(x.shape)}"
    big = [entry for entry in rec.created if torch.Size(entry[1]).numel() > 4 * t * t + b * t * c]
    # forward: the output (+ a float32 copy for half input, + the cast back); backward: the same again
    assert len(big) <= (6 if dtype != torch.float32 else 2), big


@pytest.mark.parametrize("k", [2, 10, None])
def test_saves_nothing_of_x_size_for_backward(k, generator):
    t, h, w, c = 8, 7, 7, 16
    x = torch.randn(2, t * h * w, c, generator=generator, requires_grad=True)
    saved: list[torch.Size] = []

    def pack(tensor):
        saved.append(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = time_aligned_appnp(x, t, h, w, k, 0.1)
    assert saved, "expected the two t x t mixing matrices to be saved"
    assert all(shape.numel() <= t * t for shape in saved), saved
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_saved_tensors_do_not_grow_with_k(generator):
    x = torch.randn(2, 36, 4, generator=generator, requires_grad=True)
    sizes = {}
    for k in (1, 2, 10, 50):
        sizes[k] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda tensor, k=k: sizes[k].append(tensor.shape) or tensor,
                                                      lambda tensor: tensor):
            time_aligned_appnp(x, 4, 3, 3, k, 0.1)
    assert sizes[1] == sizes[2] == sizes[10] == sizes[50]


# ------------------------------------------------------------------ error paths


def test_wrong_node_count_names_expected_and_actual():
    with pytest.raises(ValueError, match=r"t\*h\*w = 2\*3\*3 = 18.*\[\.\.\., 18, C\].*\(2, 17, 4\)"):
        time_aligned_appnp(torch.zeros(2, 17, 4), 2, 3, 3)


def test_too_few_dims():
    with pytest.raises(ValueError, match="1-D"):
        time_aligned_appnp(torch.zeros(18), 2, 3, 3)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_non_floating_dtype(dtype):
    with pytest.raises(ValueError, match=f"floating-point.*{dtype}"):
        time_aligned_appnp(torch.zeros(2, 18, 4, dtype=dtype), 2, 3, 3)


@pytest.mark.parametrize("k", [-1, 1.5, True, "2"])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be a non-negative int or None"):
        time_aligned_appnp(torch.zeros(2, 18, 4), 2, 3, 3, k=k)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        time_aligned_appnp(torch.zeros(2, 18, 4), 2, 3, 3, alpha=alpha)


@pytest.mark.parametrize("grid", [(0, 3, 3), (2, -1, 3), (2, 3, 2.0), (True, 3, 3)])
def test_bad_grid(grid):
    for fn in (lambda: time_aligned_appnp(torch.zeros(2, 18, 4), *grid), lambda: time_aligned_edge_index(*grid),
               lambda: time_aligned_adjacency(*grid)):
        with pytest.raises(ValueError, match="must be a positive int"):
            fn()


def test_k_none_needs_positive_alpha():
    with pytest.raises(ValueError, match="k=None.*alpha > 0"):
        time_aligned_appnp(torch.zeros(2, 18, 4), 2, 3, 3, k=None, alpha=0.0)
