r"""Parameters and FLOPs of a wrapped model: backbone, head, and the head's overhead.

FLOPs follow :class:`torch.utils.flop_counter.FlopCounterMode`: matrix products, convolutions and
attention, a multiply-add counted as **2** FLOPs (a ``[m, k] @ [k, n]`` product is ``2mkn``);
elementwise operations, normalisation and pooling are not counted. Papers usually quote multiply-adds
(GMACs, often written "GFLOPs"): divide by 2 to compare (``ModelStats.backbone_gmacs`` etc.).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .meta import meta_call

__all__ = ["ModelStats", "model_stats", "count_parameters", "count_flops"]


@dataclass(frozen=True)
class ModelStats:
    """Parameter and FLOP counts of a model split into backbone and head (FLOPs: multiply-add = 2).

    A model without ``.backbone`` and ``.head`` counts entirely as backbone.

    Attributes:
        input_shape: the input the counts are for, ``(B, 3, T, H, W)``.
        feature_shape: the backbone's feature map ``(B, C, T', H', W')`` (``None`` without a backbone/head
            split).
        backbone_params: parameters of the backbone.
        head_params: parameters of the head.
        backbone_flops: FLOPs of the backbone's forward pass.
        head_flops: FLOPs of the head's forward pass.
    """

    input_shape: tuple[int, ...]
    feature_shape: tuple[int, ...] | None
    backbone_params: int
    head_params: int
    backbone_flops: int
    head_flops: int

    @property
    def params(self) -> int:
        """Total parameters, backbone and head."""
        return self.backbone_params + self.head_params

    @property
    def flops(self) -> int:
        """Total FLOPs, backbone and head."""
        return self.backbone_flops + self.head_flops

    @property
    def gmacs(self) -> float:
        """Total multiply-adds in billions (``flops / 2e9``), the unit most papers call GFLOPs."""
        return self.flops / 2e9

    @property
    def head_params_overhead(self) -> float:
        """Head parameters in percent of the backbone's: ``100 * head / backbone``."""
        return 100.0 * self.head_params / self.backbone_params if self.backbone_params else float("nan")

    @property
    def head_flops_overhead(self) -> float:
        """Head FLOPs in percent of the backbone's: ``100 * head / backbone``."""
        return 100.0 * self.head_flops / self.backbone_flops if self.backbone_flops else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The counts and the derived totals and overheads as a JSON-ready dict."""
        d = asdict(self)
        d.update(params=self.params, flops=self.flops, head_params_overhead=self.head_params_overhead,
                 head_flops_overhead=self.head_flops_overhead)
        return d


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once).

    Args:
        module: the module to count.
    """
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict[Any, Any]:
    # FlopCounterMode counts the CUDA attention kernels but not the CPU one; count it the same way.
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _sdpa_cpu_flop} if op is not None else {}


@contextlib.contextmanager
def _no_fused_attention() -> Iterator[None]:
    """Route ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` through countable ops."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)


def count_flops(module: nn.Module, *inputs: Any, call: Any = None) -> tuple[int, Any]:
    """FLOPs of ``module(*inputs)`` (multiply-add = 2) and its output, under ``torch.no_grad()``.

    Args:
        module: the module to count.
        *inputs: its positional inputs.
        call: runs the module as ``call(module, *inputs)`` (``None``: a plain call;
            :func:`taghead.utils.meta.meta_call` counts without arithmetic).
    """
    call = call or (lambda m, *args: m(*args))
    mapping = _custom_mapping()
    with _no_fused_attention(), torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        out = call(module, *inputs)
    return int(counter.get_total_flops()), out


def _zeros(shape: Sequence[int], module: nn.Module) -> torch.Tensor:
    ref = next(iter(module.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.zeros(tuple(int(s) for s in shape), device=device, dtype=dtype)


def model_stats(model: nn.Module, input_shape: Sequence[int], *, fake: bool = True) -> ModelStats:
    """Parameters and FLOPs of ``model`` on an input of ``input_shape`` (e.g. ``(1, 3, 64, 112, 112)``).

    Args:
        model: a :class:`~taghead.VideoClassifier` (split into ``.backbone`` and ``.head``) or any module.
        input_shape: shape of one input tensor, batch included (FLOPs grow linearly with the batch).
        fake: count on shape-only tensors (the ``meta`` device, else fake tensors): no arithmetic and
            no memory, so any input size is instant. ``False`` runs a real forward pass on zeros.

    The model runs in eval mode and without gradients (both restored afterwards), so no BatchNorm statistic
    changes.
    """
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise ValueError(f"input_shape must be a sequence of positive ints (batch included), got {input_shape!r}")
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    parts = [backbone, head] if isinstance(backbone, nn.Module) and isinstance(head, nn.Module) else [model]
    x = _zeros(input_shape, model)
    was_training = model.training
    model.eval()
    # No parameter needs a gradient to be counted; one that does would make a view of it (ART's expanded query
    # prompts) an input that requires grad without a grad_fn, which FlopCounterMode's module tracker rejects.
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in requires_grad:
        p.requires_grad_(False)
    try:
        if not fake:
            counts = _count_chain(parts, x, call=lambda m, v: m(v))
        else:
            try:
                counts = _count_chain(parts, x, call=meta_call)
            except Exception:  # an op without a meta kernel: fake tensors handle more models
                from torch._subclasses.fake_tensor import FakeTensorMode

                with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                    counts = _count_chain(parts, mode.from_tensor(x), call=lambda m, v: m(v))
    finally:
        model.train(was_training)
        for p, flag in requires_grad:
            p.requires_grad_(flag)
    (backbone_flops, features), *rest = counts
    split = len(parts) == 2
    return ModelStats(
        input_shape=tuple(int(s) for s in input_shape),
        feature_shape=tuple(int(s) for s in features.shape) if split else None,
        backbone_params=count_parameters(parts[0]),
        head_params=count_parameters(parts[1]) if split else 0,
        backbone_flops=backbone_flops,
        head_flops=rest[0][0] if split else 0,
    )


def _count_chain(parts: list[nn.Module], x: Any, call: Any) -> list[tuple[int, Any]]:
    """FLOPs of each part, feeding each part's output to the next."""
    counts = []
    for part in parts:
        flops, x = count_flops(part, x, call=call)
        counts.append((flops, x))
    return counts
