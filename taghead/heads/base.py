"""What every taghead head shares: input checks, timm classifier conventions and a rebuildable config."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..utils.tracing import is_tracing
from .io import HeadHubMixin

__all__ = ["VideoHead", "check_feature_map", "check_number", "check_global_pool"]


def check_number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a float when it is a finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``);
    else a ``ValueError`` naming ``name`` (``NaN``, infinities and booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < lo or value > hi or (lo_open and value == lo):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def check_feature_map(x: Any, in_channels: int, owner: str = "head") -> tuple[int, int, int]:
    """Validate a backbone feature map ``[B, C, T, H, W]`` and return its grid ``(T, H, W)``.

    Not called while ``torch.fx`` traces (:func:`taghead.utils.tracing.is_tracing`): a ``Proxy`` has no
    values to check.

    Args:
        x: the feature map.
        in_channels: the channels ``C`` the head was built for.
        owner: who checks, named in the error message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner} expects a torch.Tensor feature map [B, C, T, H, W], got {type(x).__name__}")
    if x.dim() != 5:
        hint = ""
        if x.dim() == 3:
            hint = (" A 3-D input looks like tokens [B, N, C]; pass the feature map before flattening, or "
                    "reshape tokens to [B, C, T, H, W].")
        elif x.dim() == 4:
            hint = " A 4-D input looks like an image feature map [B, C, H, W]; add the time axis: x.unsqueeze(2)."
        raise ValueError(
            f"{owner} expects a 5-D feature map [B, C, T, H, W] with C={in_channels}; "
            f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{owner} expects a floating-point feature map, got dtype {x.dtype}")
    if x.shape[1] != in_channels:
        hint = ""
        if x.shape[2] == in_channels:
            hint = " It looks like [B, T, C, H, W]; use x.permute(0, 2, 1, 3, 4)."
        elif x.shape[-1] == in_channels:
            hint = " It looks channels-last [B, T, H, W, C]; use x.permute(0, 4, 1, 2, 3)."
        raise ValueError(
            f"{owner} expects {in_channels} channels at dim 1 of [B, C, T, H, W]; "
            f"got shape {tuple(x.shape)} with {x.shape[1]} channels.{hint}"
        )
    return int(x.shape[2]), int(x.shape[3]), int(x.shape[4])


def check_global_pool(global_pool: Any, owner: str) -> None:
    """Refuse timm's ``global_pool`` switch (``reset_classifier(n, global_pool)``, ``create_model(global_pool=)``)
    unless it is ``None`` (keep the pooling): a taghead head's pooling is part of its design (TAG-Head: mean over
    the graph-refined tokens; ART: saliency-weighted tracklets; mean pooling: the mean), so there is no
    ``"avg"`` / ``"max"`` / ``""`` (unpooled) choice to make. Unpooled features are ``model.forward_features(x)``
    (the backbone's map) and ``model.head.forward_features(map)`` (the head's tokens)."""
    if global_pool is not None:
        raise ValueError(
            f"{owner}: global_pool={global_pool!r} is not supported. A taghead head pools as part of its design "
            "(TAG-Head: mean over graph-refined tokens; ART: saliency-weighted tracklets), so it has no pooling "
            "switch; pass global_pool=None (or leave it out). For unpooled features use model.forward_features(x) "
            "(the backbone's [B, C, T, H, W] map) or model.head.forward_features(map) (the head's tokens)."
        )


class VideoHead(nn.Module, HeadHubMixin):
    """Base class of the heads: feature map ``[B, C, T, H, W]`` in, logits ``[B, num_classes]`` out.

    Subclasses build ``self.fc`` (the final classifier, ``nn.Identity`` when ``num_classes == 0``),
    set ``num_features`` (timm's meaning: the width of what ``forward_features`` returns, the last axis)
    and ``head_hidden_size`` (the width of the pooled representation the classifier sees, what
    ``forward_head(x, pre_logits=True)`` returns) and implement ``forward_features`` and ``forward_head``. They call ``_record_config`` with their constructor arguments so that
    ``get_config()`` can rebuild them (``type(head)(**head.get_config())``). A head with more
    state than ``fc`` that follows ``num_classes`` names it in ``class_dependent``.

    Head-only checkpoints (:mod:`taghead.heads.io`): ``head.save_pretrained(dir)``, ``head.push_to_hub(repo_id)``
    and ``TAGHead.from_pretrained(dir_or_repo_id)`` (which also takes the head out of a full-model
    checkpoint), to attach a pretrained head to any backbone with the same feature-map shape.

    Args:
        in_channels: channels ``C`` of the feature map.
        t: temporal size of the map the head is built for.
        h: height of the map.
        w: width of the map.
    """

    head_name: str = ""
    #: Submodules and buffers whose shape follows ``num_classes`` (``reset_classifier`` re-initialises them).
    class_dependent: tuple[str, ...] = ("fc",)
    #: Attributes every forward overwrites with records of that pass (not state), e.g. ART's selected classes;
    #: :func:`taghead.explain` puts them back afterwards, as if it had not run.
    forward_records: tuple[str, ...] = ()
    num_classes: int
    num_features: int
    head_hidden_size: int
    fc: nn.Module
    #: Whether the head's Transformer layers run checkpointed (:meth:`set_grad_checkpointing`).
    grad_checkpointing: bool = False

    def __init__(self, in_channels: int, t: int, h: int, w: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("t", t), ("h", h), ("w", w)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.grid = (t, h, w)
        self._config: dict[str, Any] = {}
        # An empty tensor that follows .to() / .half() / .cuda(): where the head lives when it holds no other
        # tensor (a mean-pool head after reset_classifier(0)). Not saved (persistent=False).
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def _record_config(self, **kwargs: Any) -> None:
        self._config = dict(in_channels=self.in_channels, t=self.grid[0], h=self.grid[1], w=self.grid[2], **kwargs)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this head (``num_classes`` follows ``reset_classifier``)."""
        return dict(self._config, num_classes=self.num_classes)

    def check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Check the feature map and return its grid ``(T, H, W)`` (the built grid while ``torch.fx`` traces).

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        if is_tracing():
            return self.grid
        return check_feature_map(x, self.in_channels, type(self).__name__)

    def _grid_for(self, x: torch.Tensor, *, fixed: bool, remedy: str) -> tuple[int, int, int]:
        """Check ``x`` and return its grid; when ``fixed`` it must be the grid the head was built for.

        ``remedy`` completes the error's advice after "Build the head for this grid, ". While ``torch.fx``
        traces, the grid is the built one (a traced graph is specialised to it).
        """
        grid = self.check_input(x)
        if fixed and grid != self.grid:
            t, h, w = self.grid
            raise ValueError(
                f"{type(self).__name__} was built for a feature map grid (T, H, W) = {self.grid}, i.e. input "
                f"[B, {self.in_channels}, {t}, {h}, {w}], but got {tuple(x.shape)}. Build the head for this grid, "
                f"{remedy}."
            )
        return grid

    def _positioned_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Tokens ``[B, N, D]`` (t-major) of a map ``x``, through ``self.proj`` and, when the head has one,
        ``self.pos_embed``; and the grid. For heads with those and ``dynamic_size`` (TAG-Head, the attentive
        probe): another grid than the head's is an error unless ``dynamic_size``."""
        grid = self._grid_for(x, fixed=not self.dynamic_size,
                              remedy="or pass dynamic_size=True to resample the positional embedding")
        # Row-major tokens: the linear layers and LayerNorms after this would copy them anyway, per layer.
        tokens = self.proj(x.flatten(2).transpose(1, 2).contiguous())
        if self.pos_embed is not None:
            tokens = self.pos_embed(tokens, grid)
        return tokens, grid

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int (0 = no classifier), got {num_classes!r}")
        self.num_classes = num_classes
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        """The final classifier (timm's ``get_classifier``): ``self.fc``."""
        return self.fc

    def class_dependent_keys(self) -> list[str]:
        """State-dict keys of the parameters and buffers in ``class_dependent``, in that order (none when
        ``num_classes == 0``)."""
        keys = list(self.state_dict())
        return [key for name in self.class_dependent for key in keys if key.split(".", 1)[0] == name]

    def _placement(self) -> dict[str, Any]:
        """``device`` and floating ``dtype`` of the head (of its first floating-point parameter or buffer): where
        a module built after construction must go (new modules start in float32 on the CPU)."""
        for tensor in (*self.parameters(), *self.buffers()):
            if tensor.is_floating_point():
                return {"device": tensor.device, "dtype": tensor.dtype}
        return {"device": torch.device("cpu"), "dtype": torch.get_default_dtype()}

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final linear layer by a freshly initialised one (``0`` removes it), on the head's device
        and in its dtype (timm's signature).

        Args:
            num_classes: outputs of the new classifier; ``0``: none (``forward`` returns the pre-logits).
            global_pool: timm's pooling switch; only ``None`` (keep) is accepted, see :func:`check_global_pool`.
        """
        check_global_pool(global_pool, type(self).__name__)
        self.fc = self._make_classifier(num_classes).to(**self._placement())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Run the head's Transformer layers checkpointed (timm's ``--grad-checkpointing``): their activations are
        recomputed in the backward pass instead of kept; same outputs and gradients. A no-op for heads without
        such layers.

        Args:
            enable: turn checkpointing on (``True``) or off.
        """
        self.grad_checkpointing = bool(enable)

    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Auxiliary training losses by name, from the last forward pass (none for this head).

        Args:
            logits: the final prediction ``[B, num_classes]`` of the last forward.
            target: the int64 class indices ``[B]``.
        """
        return {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The head's features before pooling (subclasses implement it).

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        """Pool :meth:`forward_features`'s output and classify it (subclasses implement it).

        Args:
            x: what :meth:`forward_features` returned.
            pre_logits: return the pooled representation ``[B, head_hidden_size]`` instead of logits.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``: ``forward_head(forward_features(x))``.

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        return self.forward_head(self.forward_features(x))
