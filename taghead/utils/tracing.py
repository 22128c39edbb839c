"""Whether a forward pass is being traced symbolically (``torch.fx``), when value checks must step aside."""

from __future__ import annotations

import torch.fx._symbolic_trace as _symbolic_trace

__all__ = ["is_tracing"]

# torch >= 2.6 tells symbolic tracing apart from torch.export / torch.compile (where the checks run on fake tensors,
# as they should); older versions only have is_fx_tracing.
_CHECK = getattr(_symbolic_trace, "is_fx_symbolic_tracing", None) or getattr(_symbolic_trace, "is_fx_tracing", None)


def is_tracing() -> bool:
    """``True`` inside ``torch.fx`` symbolic tracing (``torch.fx.symbolic_trace``, torchvision's
    ``create_feature_extractor``).

    There the inputs are ``Proxy`` objects that record operations and hold no values: a check of a type, a
    shape or a value cannot run, so the input checks of taghead's modules are skipped while tracing (the
    traced graph keeps the operations, not the checks).
    """
    return bool(_CHECK()) if _CHECK is not None else False
