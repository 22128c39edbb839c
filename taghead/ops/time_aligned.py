r"""APPNP propagation on the time-aligned space-time graph, without building the graph.

The graph of one clip has ``N = t * h * w`` nodes, node ``(τ, p)`` being the spatial position
``p = i * w + j`` of frame ``τ`` (t-major order, what ``feat.flatten(2).transpose(1, 2)`` gives for a
``[B, C, T, H, W]`` map). Its edges are

* **intra-frame**: every ordered pair of distinct nodes of the same frame (a complete graph per frame);
* **temporal**: ``(τ, p) <-> (τ + 1, p)``, both directions (a chain through time per position).

APPNP (Gasteiger et al., 2019), as in ``torch_geometric.nn.APPNP`` with its defaults, propagates

.. math::
    \mathbf{H}^{(0)} = \mathbf{X}, \qquad
    \mathbf{H}^{(k+1)} = (1 - \alpha)\, \hat{\mathbf{A}} \mathbf{H}^{(k)} + \alpha \mathbf{X},
    \qquad \hat{\mathbf{A}} = \mathbf{D}^{-1/2} (\mathbf{A} + \mathbf{I}) \mathbf{D}^{-1/2},

and returns :math:`\mathbf{H}^{(K)}`.

**Why no graph is needed.** With self-loops the degree of a node depends only on its frame:
:math:`d_\tau = 1 + (P - 1)[\text{intra}] + |\{\tau \pm 1\} \cap [0, t)|\,[\text{temporal}]`,
``P = h * w``. Split every frame into its mean over positions, :math:`m_\tau`, and the rest,
:math:`r_{\tau p} = x_{\tau p} - m_\tau` (zero-mean over ``p``). Both parts are invariant under
:math:`\hat{\mathbf{A}}`, which acts on each as a ``t x t`` tridiagonal matrix over time:

.. math::
    M^{mean}_{\tau\tau} = \frac{1 + (P - 1)[\text{intra}]}{d_\tau}, \quad
    M^{res}_{\tau\tau} = \frac{1 - [\text{intra}]}{d_\tau}, \quad
    M_{\tau,\tau\pm1} = \frac{[\text{temporal}]}{\sqrt{d_\tau d_{\tau\pm1}}} .

The K steps are therefore a polynomial :math:`Q = \mathrm{P}_K(M)` of a tiny matrix
(:math:`Q_0 = I,\ Q_{k+1} = (1-\alpha) M Q_k + \alpha I`; for ``K -> ∞`` the personalised-PageRank
limit :math:`Q = \alpha (I - (1 - \alpha) M)^{-1}`), and

.. math::
    \mathbf{H}^{(K)}_{\tau p} = \sum_{\sigma} Q^{res}_{\tau\sigma} x_{\sigma p}
        + \sum_{\sigma} (Q^{mean} - Q^{res})_{\tau\sigma} m_\sigma .

One frame mean, its correction broadcast over positions and one ``t x t`` mix over time accumulated
onto it (a single batched GEMM): the cost is a small multiple of
reading and writing ``x`` once, whatever ``K`` is, and no ``N x N`` matrix, edge list or per-edge
tensor exists. The operator is linear and symmetric (``Q^{res}``, ``Q^{mean}`` and the frame-mean
projector are), so its backward pass is the same propagation applied to the incoming gradient: nothing
is saved for it but the two ``t x t`` matrices, and no per-step activation ever exists.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["time_aligned_appnp", "time_aligned_edge_index", "time_aligned_adjacency", "check_propagation"]

Matrix = tuple[tuple[float, ...], ...]


def _check_grid(t: int, h: int, w: int) -> None:
    for name, value in (("t", t), ("h", h), ("w", w)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_propagation(t: int, h: int, w: int, k: int | None, alpha: float) -> None:
    """Validate the arguments of :func:`time_aligned_appnp` other than ``x`` (cheap: nothing is computed)."""
    _check_grid(t, h, w)
    _check_propagation(k, alpha)


def _check_propagation(k: int | None, alpha: float) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise ValueError(f"k must be a non-negative int or None (the K -> infinity limit), got {k!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if k is None and float(alpha) == 0.0:
        raise ValueError("k=None (the K -> infinity limit) needs alpha > 0; with alpha = 0 it does not exist")


def _degrees(t: int, p: int, intra: bool, temporal: bool) -> list[float]:
    """Degree of every frame's nodes, self-loop included."""
    degrees = []
    for tau in range(t):
        temporal_neighbours = (tau > 0) + (tau < t - 1)
        degrees.append(1.0 + (p - 1) * intra + temporal_neighbours * temporal)
    return degrees


def _time_operator(t: int, p: int, intra: bool, temporal: bool, mean_part: bool) -> list[list[float]]:
    """``t x t`` matrix by which ``A_hat`` acts on the frame means (``mean_part``) or on the residuals."""
    d = _degrees(t, p, intra, temporal)
    diagonal_weight = (1.0 + (p - 1) * intra) if mean_part else (1.0 - intra)
    m = [[0.0] * t for _ in range(t)]
    for tau in range(t):
        m[tau][tau] = diagonal_weight / d[tau]
        if temporal and tau + 1 < t:
            off = 1.0 / math.sqrt(d[tau] * d[tau + 1])
            m[tau][tau + 1] = off
            m[tau + 1][tau] = off
    return m


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    n = len(a)
    return [[math.fsum(a[i][s] * b[s][j] for s in range(n)) for j in range(n)] for i in range(n)]


def _inverse(a: list[list[float]]) -> list[list[float]]:
    """Gauss-Jordan inverse with partial pivoting (the matrices here are small and well conditioned)."""
    n = len(a)
    aug = [list(row) + [float(i == j) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(aug[r][col]))
        aug[col], aug[pivot] = aug[pivot], aug[col]
        inv_pivot = 1.0 / aug[col][col]
        aug[col] = [v * inv_pivot for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0.0:
                factor = aug[r][col]
                aug[r] = [vr - factor * vc for vr, vc in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


def _appnp_polynomial(m: list[list[float]], k: int | None, alpha: float) -> list[list[float]]:
    """``Q`` with ``H(K) = Q X`` for the APPNP recurrence on the operator ``m``."""
    n = len(m)
    eye = [[float(i == j) for j in range(n)] for i in range(n)]
    if k is None:
        return [[alpha * v for v in row] for row in _inverse(
            [[eye[i][j] - (1.0 - alpha) * m[i][j] for j in range(n)] for i in range(n)])]
    if k > _ITERATED_STEPS:
        return _appnp_polynomial_by_squaring(m, k, alpha)
    q = eye
    for _ in range(k):
        mq = _matmul(m, q)
        q = [[(1.0 - alpha) * mq[i][j] + alpha * eye[i][j] for j in range(n)] for i in range(n)]
    return q


#: Up to this many steps the recurrence is iterated; beyond it, ``Q_K`` comes from repeated squaring.
_ITERATED_STEPS = 64


def _appnp_polynomial_by_squaring(m: list[list[float]], k: int, alpha: float) -> list[list[float]]:
    r"""``Q_K`` of :func:`_appnp_polynomial` in ``O(log K)`` products: the affine step
    :math:`Q \mapsto A Q + \alpha I` (``A = (1 - alpha) M``) composed ``K`` times is
    :math:`(A^a, S_a)` with :math:`S_a = \alpha \sum_{j<a} A^j`, and two compositions combine as
    :math:`(A^{a+b}, S_a + A^a S_b)`; ``Q_K = A^K + S_K``."""
    n = len(m)
    eye = [[float(i == j) for j in range(n)] for i in range(n)]
    step_power, step_sum = [[(1.0 - alpha) * v for v in row] for row in m], [[alpha * v for v in row] for row in eye]
    power, total = eye, [[0.0] * n for _ in range(n)]
    while k:
        if k & 1:  # (power, total) followed by one more block of steps
            total = _add(total, _matmul(power, step_sum))
            power = _matmul(power, step_power)
        step_sum = _add(step_sum, _matmul(step_power, step_sum))
        step_power = _matmul(step_power, step_power)
        k >>= 1
    return _add(power, total)


def _add(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[x + y for x, y in zip(row_a, row_b)] for row_a, row_b in zip(a, b)]


@functools.lru_cache(maxsize=256)
def time_mixing_matrices(
    t: int, p: int, k: int | None, alpha: float, intra: bool, temporal: bool
) -> tuple[Matrix, Matrix]:
    """``(Q_res, Q_mean - Q_res)`` as nested tuples of Python floats (double precision).

    ``Q_res`` mixes every position over time; ``Q_mean - Q_res`` corrects the frame means.
    Cached: a head calls this with the same grid on every forward pass.
    """
    q_res = _appnp_polynomial(_time_operator(t, p, intra, temporal, mean_part=False), k, alpha)
    q_mean = _appnp_polynomial(_time_operator(t, p, intra, temporal, mean_part=True), k, alpha)
    correction = [[qm - qr for qm, qr in zip(row_m, row_r)] for row_m, row_r in zip(q_mean, q_res)]
    return tuple(map(tuple, q_res)), tuple(map(tuple, correction))


@torch.compiler.assume_constant_result
def _mixing_constants(t: int, p: int, k: int | None, alpha: float, intra: bool, temporal: bool):
    """``Q_res`` and ``(Q_mean - Q_res) / p`` (the second one acts on frame sums rather than means)."""
    q_res, q_corr = time_mixing_matrices(t, p, k, alpha, intra, temporal)
    return q_res, tuple(tuple(v / p for v in row) for row in q_corr)


_MIXING_TENSORS: dict[tuple, tuple[torch.Tensor, ...]] = {}


def _mixing_tensors(
    t: int, p: int, k: int | None, alpha: float, intra: bool, temporal: bool, dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """The two ``t x t`` matrices as tensors; cached in eager mode (a head reuses them every step)."""
    if torch.compiler.is_compiling():
        return tuple(torch.tensor(q, dtype=dtype, device=device)
                     for q in _mixing_constants(t, p, k, alpha, intra, temporal))
    key = (t, p, k, alpha, intra, temporal, dtype, device)
    tensors = _MIXING_TENSORS.get(key)
    if tensors is None:
        if len(_MIXING_TENSORS) >= 256:
            _MIXING_TENSORS.clear()
        with torch.inference_mode(False):  # usable later by autograd even if first made under inference_mode
            tensors = tuple(torch.tensor(q, dtype=dtype, device=device)
                            for q in _mixing_constants(t, p, k, alpha, intra, temporal))
        _MIXING_TENSORS[key] = tensors
    return tensors


def time_aligned_appnp(
    x: torch.Tensor,
    t: int,
    h: int,
    w: int,
    k: int | None = 2,
    alpha: float = 0.1,
    *,
    intra: bool = True,
    temporal: bool = True,
) -> torch.Tensor:
    r"""APPNP on each clip's time-aligned graph, equal to ``torch_geometric.nn.APPNP(K=k, alpha=alpha)``.

    Args:
        x: node features ``[..., N, C]``, ``N = t * h * w`` in t-major, then h, then w order; any
            number of leading batch dimensions (one graph per leading index).
        t: time steps of the feature map the nodes come from.
        h: its height.
        w: its width.
        k: number of propagation steps ``K``; ``None`` gives the exact ``K -> ∞`` limit
            (personalised PageRank, :math:`\alpha (I - (1 - \alpha) \hat{A})^{-1} X`).
        alpha: teleport (restart) probability.
        intra: include the complete graph inside every frame.
        temporal: include the edges between the same position in consecutive frames.

    Returns:
        ``[..., N, C]`` propagated features, same dtype as ``x``. Half-precision inputs are
        propagated in float32 and cast back. A channels-first view (``feat.flatten(2).transpose(1, 2)``)
        is propagated without a copy and the result has the same layout.

    Cost: one frame sum, one broadcast write and one ``t x t`` mix over time, whatever ``k`` is; the
    backward pass is the same propagation of the gradient (the operator is symmetric) and saves only
    two ``t x t`` matrices.
    """
    _check_grid(t, h, w)
    _check_propagation(k, alpha)
    if x.dim() < 2:
        raise ValueError(f"x must be [..., N, C] with N = t*h*w; got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
    p = h * w
    n = x.shape[-2]
    if n != t * p:
        raise ValueError(
            f"x has {n} nodes along dim -2 but the grid t*h*w = {t}*{h}*{w} = {t * p}; "
            f"expected x of shape [..., {t * p}, C], got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if k == 0:
        return x.clone()
    intra = bool(intra) and p > 1  # a single-position frame has no intra-frame edges
    temporal = bool(temporal) and t > 1

    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    q_res, q_corr = _mixing_tensors(t, p, k, float(alpha), intra, temporal, compute_dtype, x.device)
    q_corr = q_corr if intra else None
    if torch.is_grad_enabled() and x.requires_grad:
        return _TimeAlignedPropagation.apply(x, q_res, q_corr, t, p)
    return _propagate(x, q_res, q_corr, t, p)  # no autograd graph needed: skip the Function's overhead


def _propagate(
    x: torch.Tensor, q_res: torch.Tensor, q_corr: torch.Tensor | None, t: int, p: int
) -> torch.Tensor:
    """:func:`_propagate_exact` outside autocast: its products run in ``q_res.dtype``, not autocast's."""
    if x.device.type != "meta" and torch.is_autocast_enabled(x.device.type):  # meta: shapes only, no autocast
        with torch.autocast(x.device.type, enabled=False):
            return _propagate_exact(x, q_res, q_corr, t, p)
    return _propagate_exact(x, q_res, q_corr, t, p)


def _propagate_exact(
    x: torch.Tensor, q_res: torch.Tensor, q_corr: torch.Tensor | None, t: int, p: int
) -> torch.Tensor:
    """``H = (Q_res ⊗ I) X + (Q_corr ⊗ 11ᵀ) X`` on ``[..., t*p, c]``, computed in ``q_res.dtype``.

    ``q_corr`` is ``(Q_mean - Q_res) / p``, so that it acts on frame sums (``None``: no intra edges).
    One output allocation: it is filled with the frame-mean correction (broadcast over positions),
    then one batched GEMM accumulates the time mix on top (``baddbmm_``, beta = 1), which is cheaper
    than a separate broadcast add. Channels-first input (``feat.flatten(2).transpose(1, 2)``) is mixed
    in its own layout, without a copy, and the output keeps that layout.
    """
    lead, c = x.shape[:-2], x.shape[-1]
    channels_first = not x.is_contiguous() and x.transpose(-1, -2).is_contiguous()
    if channels_first:
        frames = x.transpose(-1, -2).reshape(-1, t, p)  # [B*c, t, p]: a view, time on dim 1
    else:
        frames = x.reshape(-1, t, p * c)  # [B, t, p*c]: a view for contiguous x, one copy otherwise
    if frames.dtype != q_res.dtype:
        frames = frames.to(q_res.dtype)  # half precision is accumulated in float32
    nb = frames.shape[0]
    mix = q_res.expand(nb, t, t)
    if q_corr is None:
        out = torch.bmm(mix, frames)
    elif channels_first:
        correction = torch.matmul(frames.sum(dim=-1), q_corr.mT)  # [B*c, t]
        out = correction.unsqueeze(-1).expand(nb, t, p).contiguous().baddbmm_(mix, frames)
    else:
        correction = torch.bmm(q_corr.expand(nb, t, t), frames.view(nb, t, p, c).sum(dim=2))  # [B, t, c]
        out = correction.unsqueeze(2).expand(nb, t, p, c).contiguous().view(nb, t, p * c).baddbmm_(mix, frames)
    if channels_first:
        return out.view(*lead, c, t * p).transpose(-1, -2).to(x.dtype)
    return out.view(x.shape).to(x.dtype)


class _TimeAlignedPropagation(torch.autograd.Function):
    """The propagation as a self-adjoint linear map: its backward applies it again to the gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, q_res, q_corr, t, p):  # type: ignore[override]
        return _propagate(x, q_res, q_corr, t, p)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, q_res, q_corr, ctx.t, ctx.p = inputs
        ctx.save_for_backward(q_res, q_corr)  # the two t x t matrices, nothing of x's size

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q_res, q_corr = ctx.saved_tensors
        return _TimeAlignedPropagation.apply(grad_out, q_res, q_corr, ctx.t, ctx.p), None, None, None, None


def time_aligned_edge_index(
    t: int, h: int, w: int, *, intra: bool = True, temporal: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """Explicit ``[2, E]`` edge list of one clip's graph (source row 0, target row 1).

    For interoperability with torch_geometric and for tests: ``t*P*(P-1)`` intra-frame edges then
    ``2*(t-1)*P`` temporal edges, ``P = h*w``. :func:`time_aligned_appnp` never builds it.

    Args:
        t: time steps of the feature map.
        h: its height.
        w: its width.
        intra: include the complete graph inside every frame.
        temporal: include the edges between the same position in consecutive frames.
        device: where to create the tensor.
    """
    _check_grid(t, h, w)
    p = h * w
    parts = []
    if intra and p > 1:
        src, dst = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        keep = src != dst
        src, dst = src[keep], dst[keep]
        offsets = (torch.arange(t) * p).repeat_interleave(src.numel())
        parts.append(torch.stack([src.repeat(t) + offsets, dst.repeat(t) + offsets]))
    if temporal and t > 1:
        earlier = torch.arange((t - 1) * p)
        later = earlier + p
        parts.append(torch.stack([torch.cat([earlier, later]), torch.cat([later, earlier])]))
    if not parts:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return torch.cat(parts, dim=1).to(device)


def time_aligned_adjacency(
    t: int,
    h: int,
    w: int,
    *,
    intra: bool = True,
    temporal: bool = True,
    normalized: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Dense ``[N, N]`` adjacency, for tests and teaching only (quadratic in ``N``).

    With ``normalized=True`` returns :math:`\hat{A} = D^{-1/2}(A + I)D^{-1/2}` as APPNP uses it;
    otherwise the 0/1 adjacency ``A`` without self-loops.

    Args:
        t: time steps of the feature map.
        h: its height.
        w: its width.
        intra: include the complete graph inside every frame.
        temporal: include the edges between the same position in consecutive frames.
        normalized: return the normalised adjacency with self-loops.
        dtype: the matrix's dtype.
    """
    edge_index = time_aligned_edge_index(t, h, w, intra=intra, temporal=temporal)
    n = t * h * w
    a = torch.zeros(n, n, dtype=dtype)
    a[edge_index[1], edge_index[0]] = 1.0
    if not normalized:
        return a
    a = a + torch.eye(n, dtype=dtype)
    d_inv_sqrt = a.sum(dim=1).rsqrt()
    return d_inv_sqrt[:, None] * a * d_inv_sqrt[None, :]
