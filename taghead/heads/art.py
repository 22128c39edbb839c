r"""ART: Action-Region Tracking as a plug-in head (region queries tracked through time, text-constrained).

On a backbone feature map ``[B, C, T, H, W]`` (frames folded into the batch, no loop over frames):

1. tokens: ``x`` -> ``[B*T, H*W, D]`` by a linear projection; a frame's *global representation*
   :math:`g_t` is the mean of its projected tokens (a 3D CNN map has no class token, so the mean over
   tokens stands in for it), the video's is :math:`G = \operatorname{mean}_t g_t`; a learnable 3D
   positional embedding is added to the tokens.
2. Class selection (with a text bank). The bank's classes are ranked in the *text space*, where the
   video-consistency term trains the map ``video_to_text``, by the winner-take-all cosine
   :math:`\max_j \cos(W G + b, s_{c,j})` over the templates :math:`s_{c,j}` of the bank :math:`S`
   (:func:`top_k_classes`) -- exactly the scores that loss trains against the agent :math:`S'`,
   which the bank follows. The video's top-``k`` classes feed every frame and anchor the saliency
   (``selection="video"``, default); ``selection="frame"`` ranks per frame from :math:`W g_t + b`
   instead (a map trained only through the frames' mean). The indices are kept as
   ``head.selected_classes`` ``[B, T, top_k]`` and ``head.selected_video_classes`` ``[B, top_k]``
   after every forward. (The earlier design, a cosine between :math:`g_t` and the projected bank in a
   space no loss aligns, selected the true class at chance level: ``benchmarks/art_selection.py``.)
3. Region-Specific Semantics Activation (RSSA), per frame:

   - the selected classes' semantics :math:`e_c` (bank class means, projected by ``text_proj`` to
     ``D``, gradient cut at the bank) are appended to the frame's tokens;
   - spatial semantic enhancement: a Transformer encoder (``se_depth`` layers) over
     ``[tokens; semantics]``; the spatial part is kept as the enhanced tokens, the semantic part
     becomes the frame's instance-adapted semantics;
   - region queries: ``num_queries`` learnable prompts, each integrated with the adapted semantics by
     multi-head cross-attention (:math:`q_n = p_n + \mathrm{MHA}(\mathrm{LN}(p_n), \tilde e, \tilde e)`);
   - a Transformer decoder (``rssa_depth`` layers; DETR-style self-attention among the queries and
     cross-attention over the enhanced tokens) gives one response :math:`r_{t,n}` per query and frame.
4. Tracklets: tracklet ``n`` is :math:`(r_{1,n}, \dots, r_{T,n})` (a fixed query index = one region identity).
5. Aggregation: with the semantics :math:`u_j` of the video's top-``k`` classes,
   :math:`a_{n,t,j} = \operatorname{softmax}_t(\cos(r_{t,n}, u_j) / \tau_s)` and the saliency
   :math:`w_{n,t} = \operatorname{mean}_j a_{n,t,j}` (sums to one over time);
   :math:`z_n = \sum_t w_{n,t}\, r_{t,n}`. ``aggregation="mean"`` uses :math:`w_{n,t} = 1/T` (ablation).
6. Prediction: ``fc(dropout(LN([G; z_1; ...; z_N])))`` is the final prediction (what ``forward``
   returns, in training and in eval; dropout ``drop_rate`` 0.5 as in the paper); a separate global
   prediction ``global_fc(LN(G))`` is trained with its own cross-entropy (``ce_global``) and not used
   at inference.
7. Text-constrained semantic bank ``[num_classes, num_templates, D_text]`` (:func:`taghead.text.build_text_bank`):
   the buffer ``text_bank`` (:math:`S`) feeds steps 2, 3 and 5 with gradients cut; the parameter
   ``text_agent`` (:math:`S'`, a copy of the initial bank) is trained by the video-consistency and
   prototype-consistency losses; once per optimiser step, :meth:`ARTHead.update_ema` moves the bank
   towards it, :math:`S \leftarrow m S + (1 - m) S'` (``bank_momentum`` :math:`m`, under ``no_grad``).
   The :class:`~taghead.engine.Trainer` calls it after every optimiser step (not per micro-batch,
   so gradient accumulation keeps the momentum :math:`m`); an own loop adds
   ``model.update_ema()`` after ``optimizer.step()`` (a no-op for heads without such state).

With a text bank but ``text_video_loss_weight=0`` nothing trains ``video_to_text``, and the
selection stays where its initialisation puts it (the "w/o video consistency" ablation).

Without a text bank (``text_bank=None``) the head runs with learnable queries only (the "w/o text"
ablation): no semantics are appended, the queries are the prompts, the aggregation saliency uses
the prompts in place of the text semantics, and the text losses do not exist.

Training: ``forward`` returns the final logits; the main cross-entropy on them is the caller's. In
training mode the head keeps the intermediates of its last forward, and ``head.losses(logits,
target)`` returns the auxiliary losses by name, each already multiplied by its weight (a weight of 0
removes the term)::

    logits = head(features)                                   # or model(video)
    loss = F.cross_entropy(logits, y) + sum(head.losses(logits, y).values())
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    head.update_ema()                                         # once per optimiser step

Names: ``ce_global``, ``mtc_spatial``, ``mtc_temporal``, ``mtc_tracklet`` (see
:mod:`taghead.heads.art_losses`) and, with a text bank, ``text_video`` and ``text_prototype``. The
class prototypes of the prototype-consistency loss are an exponential moving average (momentum
``prototype_momentum``) of the normalised video embeddings of each class, updated by the first
``losses`` call after each forward (labels are needed).

Weight decay (:meth:`ARTHead.no_weight_decay`, timm's convention): the positional embedding, the
query prompts and the text agent are exempt, as are all 1-D parameters (norms, biases) through
:meth:`taghead.VideoClassifier.param_groups`.

A grid with one time step (``t=1``, e.g. ``r3d_18`` on 8 frames) leaves the temporal MTC term
nothing to compare: with its default weight the term is switched off (one warning; the config
records ``temporal_loss_weight=0.0``, so a saved head reloads silently and the same), an explicit
non-zero ``temporal_loss_weight`` is an error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import PositionalEmbedding3d
from ..utils.checkpointing import run_checkpointed
from ..utils.tracing import is_tracing
from .art_losses import (
    check_target,
    class_semantics,
    prototype_consistency,
    spatial_contrast,
    temporal_contrast,
    tracklet_contrast,
    video_consistency,
    winner_take_all_scores,
)
from .base import VideoHead
from .base import check_number as _number
from .registry import register_head

__all__ = ["ARTHead", "tracklet_saliency", "top_k_classes"]

# One node each in a torch.fx graph (create_feature_extractor): both read their inputs' shapes.
torch.fx.wrap("tracklet_saliency")
torch.fx.wrap("top_k_classes")

_AGGREGATIONS = ("saliency", "mean")
_SELECTIONS = ("video", "frame")
_DEFAULT_TEMPORAL_WEIGHT = 0.1


@torch.no_grad()
def top_k_classes(text: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    r"""The ``k`` classes of ``bank [K, M, D]`` closest to each text-space embedding of ``text [N, D]``: ``[N, k]`` int64.

    Classes are ranked by the winner-take-all cosine over their templates,
    :math:`\max_j \cos(v, s_{c,j})` (:func:`~taghead.heads.art_losses.winner_take_all_scores`, the
    scores of the video-consistency loss), best first; ``k`` is capped at ``K``. No gradient flows
    through a selection.
    """
    scores = winner_take_all_scores(text.detach(), bank.detach(), 1.0)
    return scores.topk(min(k, bank.shape[0]), dim=-1).indices


def tracklet_saliency(tracklets: torch.Tensor, semantics: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Temporal saliency of each tracklet: ``[B, N, T, D]`` and semantics ``[B, S, D]`` (or ``[S, D]``) -> ``[B, N, T]``.

    :math:`w_{n,t} = \frac1S \sum_j \operatorname{softmax}_t(\cos(r_{t,n}, u_j) / \tau)`; every
    ``w[b, n]`` sums to one over time.
    """
    if semantics.dim() == 2:
        semantics = semantics.unsqueeze(0).expand(tracklets.shape[0], -1, -1)
    sim = torch.einsum("bntd,bsd->bnts", F.normalize(tracklets.float(), dim=-1), F.normalize(semantics.float(), dim=-1))
    return (sim / temperature).softmax(dim=2).mean(-1)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_bank(bank: Any) -> torch.Tensor:
    if not isinstance(bank, torch.Tensor):
        raise TypeError(f"text_bank must be a torch.Tensor [num_classes, num_templates, D] (see "
                        f"taghead.build_text_bank) or None, got {type(bank).__name__}")
    if bank.dim() != 3 or min(bank.shape) < 1:
        raise ValueError(f"text_bank must be [num_classes, num_templates, D] with every size >= 1, got shape "
                         f"{tuple(bank.shape)}" + (" (a [num_classes, D] matrix needs .unsqueeze(1))"
                                                    if bank.dim() == 2 else ""))
    if not bank.is_floating_point():
        raise ValueError(f"text_bank must be a floating-point tensor, got dtype {bank.dtype}")
    bad = int((~torch.isfinite(bank)).sum())
    if bad:
        raise ValueError(f"text_bank must hold finite values, got {bad} non-finite (nan or inf) of {bank.numel()}")
    return bank.detach().float().cpu().clone()


@register_head("art")
class ARTHead(VideoHead):
    r"""Action-Region Tracking head (see the module docstring for the full pipeline and the loss API).

    Args:
        in_channels: channels ``C`` of the backbone's feature map.
        t: time steps of the feature map the head is built for.
        h: its height.
        w: its width.
        num_classes: classifier outputs; ``0`` returns the pre-logits features (and only the
            label-free MTC losses remain).
        num_queries: region queries per frame (= tracklets).
        text_bank: ``[num_classes, num_templates, D_text]`` from :func:`taghead.build_text_bank`, or
            ``None`` for learnable queries only. Stored in the state dict (not in the config).
        text_bank_shape: the bank's shape without its values (what :meth:`get_config` records, so
            that ``ARTHead(**config)`` followed by ``load_state_dict`` restores a saved head).
        embed_dim: latent width ``D`` (256 in the paper).
        num_heads: attention heads.
        se_depth: layers of the spatial semantic enhancement (``0`` = the "w/o SE" ablation).
        rssa_depth: decoder layers of the region-specific semantics activation (at least 1).
        mlp_dim: feed-forward width of those layers.
        dropout: dropout inside the attention layers.
        top_k: classes selected (their semantics are appended to the frames' tokens and anchor the
            aggregation saliency); 3 by default (the paper leaves ``k`` open).
        selection: ``"video"``: one top-``k`` per clip, from the video representation, for every frame
            and the saliency; ``"frame"``: each frame ranks the classes from its own representation
            (the saliency keeps the video's).
        aggregation: ``"saliency"`` (text-similarity weights over time) or ``"mean"``.
        pos_embed: add a learnable 3D positional embedding to the tokens (ties the head to its
            grid unless ``dynamic_size``).
        dynamic_size: accept other grids (positional embedding resampled trilinearly).
        drop_rate: dropout before the classifier (0.5, the paper's dropout rate).
        gamma: target correlation of a query's responses in adjacent frames (temporal MTC term).
        global_loss_weight: weight of the global cross-entropy (``0`` removes a term from :meth:`losses`).
        spatial_loss_weight: weight of the spatial MTC term.
        tracklet_loss_weight: weight of the tracklet MTC term.
        text_video_loss_weight: weight of the video-consistency text term.
        text_prototype_loss_weight: weight of the prototype-consistency text term.
        temporal_loss_weight: weight of the temporal MTC term; ``None`` (default) is 0.1, or 0 with a
            warning when the grid has a single time step (``t=1``), where an explicit non-zero weight
            is an error. The config records the value used.
        bank_momentum: EMA momentum ``m`` of the bank following its agent, per optimiser step
            (:meth:`update_ema`; ``1`` freezes the bank).
        prototype_momentum: EMA momentum of the class prototypes.
        text_temperature: temperature of the two text-consistency losses.
        saliency_temperature: temperature of the aggregation softmax over time.
    """

    head_name = "art"
    class_dependent = ("fc", "global_fc", "prototypes", "prototype_seen")
    forward_records = ("_cache", "selected_classes", "selected_video_classes")

    def __init__(
        self,
        in_channels: int,
        t: int,
        h: int,
        w: int,
        *,
        num_classes: int = 99,
        num_queries: int = 2,
        text_bank: torch.Tensor | None = None,
        text_bank_shape: Sequence[int] | None = None,
        embed_dim: int = 256,
        num_heads: int = 8,
        se_depth: int = 4,
        rssa_depth: int = 4,
        mlp_dim: int = 1024,
        dropout: float = 0.1,
        top_k: int = 3,
        aggregation: str = "saliency",
        selection: str = "video",
        pos_embed: bool = True,
        dynamic_size: bool = False,
        drop_rate: float = 0.5,
        gamma: float = 0.6,
        global_loss_weight: float = 1.0,
        spatial_loss_weight: float = 0.1,
        temporal_loss_weight: float | None = None,
        tracklet_loss_weight: float = 0.1,
        text_video_loss_weight: float = 0.1,
        text_prototype_loss_weight: float = 0.1,
        bank_momentum: float = 0.99,
        prototype_momentum: float = 0.9,
        text_temperature: float = 0.07,
        saliency_temperature: float = 0.1,
    ) -> None:
        super().__init__(in_channels, t, h, w)
        num_queries = _positive_int("num_queries", num_queries)
        embed_dim = _positive_int("embed_dim", embed_dim)
        num_heads = _positive_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        se_depth = _positive_int("se_depth", se_depth, 0)
        rssa_depth = _positive_int("rssa_depth", rssa_depth, 1)
        mlp_dim = _positive_int("mlp_dim", mlp_dim)
        top_k = _positive_int("top_k", top_k)
        dropout = _number("dropout", dropout, 0.0, 1.0)
        drop_rate = _number("drop_rate", drop_rate, 0.0, 1.0)
        gamma = _number("gamma", gamma, -1.0, 1.0)
        if aggregation not in _AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
        if selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {_SELECTIONS}, got {selection!r}")
        if temporal_loss_weight is None:
            temporal_loss_weight = _DEFAULT_TEMPORAL_WEIGHT
            if t < 2:
                temporal_loss_weight = 0.0
                warnings.warn(
                    f"ARTHead: the feature map has a single time step (t={t}), so the temporal MTC term has no "
                    "adjacent frames to compare; it is switched off (temporal_loss_weight=0.0, recorded in the head's "
                    "config). Feed more frames, or pass temporal_loss_weight=0.0 to silence this warning.",
                    UserWarning, stacklevel=2)
        weights = {name: _number(name, value, 0.0, math.inf) for name, value in (
            ("global_loss_weight", global_loss_weight), ("spatial_loss_weight", spatial_loss_weight),
            ("temporal_loss_weight", temporal_loss_weight), ("tracklet_loss_weight", tracklet_loss_weight),
            ("text_video_loss_weight", text_video_loss_weight),
            ("text_prototype_loss_weight", text_prototype_loss_weight))}
        if num_queries < 2 and (weights["spatial_loss_weight"] or weights["tracklet_loss_weight"]):
            raise ValueError("the spatial and tracklet MTC terms compare different queries: use num_queries >= 2 or "
                             "set spatial_loss_weight=0 and tracklet_loss_weight=0")
        if t < 2 and weights["temporal_loss_weight"] and not dynamic_size:
            raise ValueError(f"the temporal MTC term compares adjacent frames, but the grid has t={t}; set "
                             f"temporal_loss_weight=0 (or leave it unset), not {weights['temporal_loss_weight']}")
        bank_momentum = _number("bank_momentum", bank_momentum, 0.0, 1.0)
        prototype_momentum = _number("prototype_momentum", prototype_momentum, 0.0, 1.0)
        text_temperature = _number("text_temperature", text_temperature, 0.0, math.inf, lo_open=True)
        saliency_temperature = _number("saliency_temperature", saliency_temperature, 0.0, math.inf, lo_open=True)

        bank = None if text_bank is None else _check_bank(text_bank)
        if text_bank_shape is not None:
            shape = tuple(text_bank_shape) if isinstance(text_bank_shape, (list, tuple)) else None
            if shape is None or len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                                       for s in shape):
                raise ValueError(f"text_bank_shape must be three positive ints [num_classes, num_templates, D], "
                                 f"got {text_bank_shape!r}")
            if bank is not None and tuple(bank.shape) != shape:
                raise ValueError(f"text_bank has shape {tuple(bank.shape)} but text_bank_shape says {list(shape)}")
            if bank is None:
                bank = torch.zeros(shape)  # filled by load_state_dict
        elif bank is not None and num_classes not in (0, bank.shape[0]):
            raise ValueError(f"text_bank has {bank.shape[0]} classes but the head has num_classes={num_classes}; "
                             "build the bank from the same class names, in class-index order")

        self.num_queries, self.embed_dim, self.top_k = num_queries, embed_dim, top_k
        self.aggregation, self.selection, self.gamma, self.dynamic_size = aggregation, selection, gamma, dynamic_size
        self.loss_weights = weights
        self.bank_momentum, self.prototype_momentum = bank_momentum, prototype_momentum
        self.text_temperature, self.saliency_temperature = text_temperature, saliency_temperature
        self.num_features = self.head_hidden_size = embed_dim * (num_queries + 1)
        self._record_config(
            num_queries=num_queries, text_bank_shape=None if bank is None else list(bank.shape),
            embed_dim=embed_dim, num_heads=num_heads, se_depth=se_depth, rssa_depth=rssa_depth, mlp_dim=mlp_dim,
            dropout=dropout, top_k=top_k, aggregation=aggregation, selection=selection, pos_embed=pos_embed,
            dynamic_size=dynamic_size,
            drop_rate=drop_rate, gamma=gamma, **weights, bank_momentum=bank_momentum,
            prototype_momentum=prototype_momentum, text_temperature=text_temperature,
            saliency_temperature=saliency_temperature,
        )

        self.proj = nn.Linear(in_channels, embed_dim)
        if pos_embed:
            self.pos_embed: PositionalEmbedding3d | None = PositionalEmbedding3d(t, h, w, embed_dim)
            nn.init.trunc_normal_(self.pos_embed.weight, std=0.02)
        else:
            self.pos_embed = None
        if se_depth > 0:
            layer = nn.TransformerEncoderLayer(embed_dim, num_heads, mlp_dim, dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.enhancer: nn.TransformerEncoder | None = nn.TransformerEncoder(
                layer, se_depth, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False)
        else:
            self.enhancer = None
        self.query_prompts = nn.Parameter(torch.randn(num_queries, embed_dim))
        decoder_layer = nn.TransformerDecoderLayer(embed_dim, num_heads, mlp_dim, dropout, activation="gelu",
                                                   batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(decoder_layer, rssa_depth, norm=nn.LayerNorm(embed_dim))
        self.global_norm = nn.LayerNorm(embed_dim)
        self.norm = nn.LayerNorm(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self._set_text_modules(bank)
        self.fc = self._make_classifier(num_classes)
        self._make_class_modules(num_classes)
        self._cache: dict[str, Any] | None = None
        #: Classes whose semantics the last forward appended to each frame, ``[B, T, top_k]`` int64, best
        #: first (``None`` without a text bank or before the first forward).
        self.selected_classes: torch.Tensor | None = None
        #: The video's classes, the aggregation saliency's anchors, ``[B, top_k]`` (same conditions).
        self.selected_video_classes: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------- text bank
    @property
    def has_text(self) -> bool:
        """Whether the head has a text-constrained semantic bank."""
        return self.text_bank is not None

    @property
    def _text_losses_on(self) -> bool:
        w = self.loss_weights
        return self.has_text and bool(w["text_video_loss_weight"] or w["text_prototype_loss_weight"])

    def _set_text_modules(self, bank: torch.Tensor | None) -> None:
        """The bank, its agent and the text projections, on the head's device and in its dtype."""
        if bank is None:
            self.register_buffer("text_bank", None)
            self.text_agent = None
            self.text_proj = self.query_text_norm = self.query_text_attn = self.video_to_text = None
            return
        place = self._placement()
        text_dim = bank.shape[-1]
        heads = self._config["num_heads"]
        bank = bank.to(**place)
        self.register_buffer("text_bank", bank.clone())
        self.text_agent = nn.Parameter(bank.clone(), requires_grad=self._text_losses_on)
        self.text_proj = nn.Linear(text_dim, self.embed_dim, **place)
        self.query_text_norm = nn.LayerNorm(self.embed_dim, **place)
        self.query_text_attn = nn.MultiheadAttention(self.embed_dim, heads, dropout=self._config["dropout"],
                                                     batch_first=True, **place)
        self.video_to_text = nn.Linear(self.embed_dim, text_dim, **place)

    def _make_class_modules(self, num_classes: int) -> None:
        """The global classifier and the class prototypes (both follow ``num_classes``), on the head's device
        and in its dtype (``prototype_seen`` is bool)."""
        place = self._placement()
        if num_classes > 0 and self.loss_weights["global_loss_weight"] > 0:
            self.global_fc: nn.Module = nn.Linear(self.embed_dim, num_classes, **place)
        else:
            self.global_fc = nn.Identity()
        if self.has_text and num_classes > 0:
            self.register_buffer("prototypes", torch.zeros(num_classes, self.text_bank.shape[-1], **place))
            self.register_buffer("prototype_seen", torch.zeros(num_classes, dtype=torch.bool, device=place["device"]))
        else:
            self.register_buffer("prototypes", None)
            self.register_buffer("prototype_seen", None)

    def set_text_bank(self, text_bank: torch.Tensor | None) -> None:
        """Replace the text bank (and its agent, projections and prototypes) by a new one, or remove it.

        Args:
            text_bank: the new bank ``[num_classes, num_templates, D]``, or ``None`` to remove it.
        """
        bank = None if text_bank is None else _check_bank(text_bank)
        if bank is not None and self.num_classes not in (0, bank.shape[0]):
            raise ValueError(f"text_bank has {bank.shape[0]} classes but the head has num_classes={self.num_classes}")
        self._set_text_modules(bank)
        self._make_class_modules(self.num_classes)
        self._config["text_bank_shape"] = None if bank is None else list(bank.shape)
        self._cache = None

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New final classifier, global classifier and class prototypes for ``num_classes`` (``0`` removes them).

        The text bank is kept; when its class count no longer matches, replace it with
        :meth:`set_text_bank` before training (the text losses need one bank row per class). The new modules
        take the head's device and dtype.

        Args:
            num_classes: the new class count.
            global_pool: timm's switch; only ``None`` is accepted (see :meth:`VideoHead.reset_classifier`).
        """
        super().reset_classifier(num_classes, global_pool)
        self._make_class_modules(num_classes)
        self._cache = None
        if self.has_text and num_classes not in (0, self.text_bank.shape[0]):
            warnings.warn(f"ARTHead now has {num_classes} classes but its text bank has {self.text_bank.shape[0]}; "
                          "call head.set_text_bank(build_text_bank(new_class_names, ...)) before training with the "
                          "text losses", UserWarning, stacklevel=2)

    @torch.no_grad()
    def update_ema(self) -> None:
        r"""Move the bank towards its agent, :math:`S \leftarrow m S + (1 - m) S'`; call once after every optimiser step.

        The :class:`~taghead.engine.Trainer` does; in an own loop call ``model.update_ema()`` (or
        ``head.update_ema()``) right after ``optimizer.step()``. Per optimiser step, not per forward,
        so that gradient accumulation over ``a`` micro-batches keeps the momentum ``m`` (not ``m^a``).
        A no-op without a text bank or with ``bank_momentum=1``.
        """
        if self.has_text and self.bank_momentum < 1:
            self.text_bank.lerp_(self.text_agent.detach().to(self.text_bank.dtype), 1.0 - self.bank_momentum)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters exempt from weight decay (timm's convention): the positional embedding,
        the query prompts and the text agent (1-D parameters are exempt anyway, see
        :meth:`taghead.VideoClassifier.param_groups`)."""
        names = {"query_prompts"}
        if self.pos_embed is not None:
            names.add("pos_embed.weight")
        if self.text_agent is not None:
            names.add("text_agent")
        return names

    def _semantics(self) -> torch.Tensor | None:
        """The class semantics in the latent space, ``[K, D]`` (gradient cut at the bank), or ``None``."""
        if not self.has_text:
            return None
        return self.text_proj(class_semantics(self.text_bank.detach()).to(self.text_proj.weight.dtype))

    @torch.no_grad()
    def _select_classes(self, frame_global: torch.Tensor, video_global: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` classes per frame ``[B*T, k]`` and per video ``[B, k]``, ranked in the text space that the
        video-consistency term trains (module docstring, step 2)."""
        video_idx = top_k_classes(self.video_to_text(video_global.detach()), self.text_bank, self.top_k)
        if self.selection == "video":
            return video_idx.repeat_interleave(frame_global.shape[0] // video_global.shape[0], dim=0), video_idx
        frame_idx = top_k_classes(self.video_to_text(frame_global.detach()), self.text_bank, self.top_k)
        return frame_idx, video_idx

    # ------------------------------------------------------------------------------------------ forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-norm features ``[B, (num_queries + 1) * embed_dim]``: the global representation, then the aggregated tracklets.

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.
        """
        grid = self._grid_for(x, fixed=self.pos_embed is not None and not self.dynamic_size,
                              remedy="pass dynamic_size=True to resample the positional embedding, or pos_embed=False")
        b, (t, h, w), d, n = x.shape[0], grid, self.embed_dim, self.num_queries

        tokens = self.proj(x.flatten(2).transpose(1, 2))  # [B, T*H*W, D], t-major
        frame_global = tokens.reshape(b * t, h * w, d).mean(1)  # [B*T, D]: mean over tokens, no class token
        video_global = frame_global.reshape(b, t, d).mean(1)  # [B, D]
        if self.pos_embed is not None:
            tokens = self.pos_embed(tokens, grid)
        frames = tokens.reshape(b * t, h * w, d)

        semantics = self._semantics()
        frame_sem = anchors = None
        if semantics is None:
            self.selected_classes = self.selected_video_classes = None
        else:
            frame_idx, video_idx = self._select_classes(frame_global, video_global)
            self.selected_classes, self.selected_video_classes = frame_idx.reshape(b, t, -1), video_idx
            frame_sem, anchors = semantics[frame_idx], semantics[video_idx]  # [B*T, k, D], [B, k, D]
        if self.enhancer is not None:
            seq = frames if frame_sem is None else torch.cat([frames, frame_sem.to(frames.dtype)], dim=1)
            seq = self._run(self.enhancer, seq)
            frames = seq[:, : h * w]
            frame_sem = None if frame_sem is None else seq[:, h * w:]
        queries = self.query_prompts.unsqueeze(0).expand(b * t, -1, -1)
        if frame_sem is not None:
            attended = self.query_text_attn(self.query_text_norm(queries), frame_sem, frame_sem, need_weights=False)[0]
            queries = queries + attended
        responses = self._run(self.decoder, queries, frames).reshape(b, t, n, d)
        tracklets = responses.transpose(1, 2)  # [B, N, T, D]

        if self.aggregation == "mean":
            weights = tracklets.new_full((b, n, t), 1.0 / t)
        else:
            weights = tracklet_saliency(tracklets, self.query_prompts if anchors is None else anchors,
                                        self.saliency_temperature)
        pooled = (weights.to(tracklets.dtype).unsqueeze(-1) * tracklets).sum(2)  # [B, N, D]
        features = torch.cat([video_global, pooled.flatten(1)], dim=1)

        if is_tracing():  # torch.fx: keep no Proxy on the head (a traced graph records no losses or selections)
            self._cache = self.selected_classes = self.selected_video_classes = None
            return features
        if self.training:
            cache: dict[str, Any] = dict(batch=b, responses=responses, weights=weights, prototypes_updated=False)
            if not isinstance(self.global_fc, nn.Identity):
                cache["global_logits"] = self.global_fc(self.global_norm(video_global))
            if self._text_losses_on and self.num_classes > 0:
                cache["video_text"] = self.video_to_text(video_global)
            self._cache = cache
        else:
            self._cache = None
        return features

    def _run(self, stack: nn.TransformerEncoder | nn.TransformerDecoder, x: torch.Tensor,
             *memory: torch.Tensor) -> torch.Tensor:
        """``stack(x, *memory)``, its layers checkpointed one by one when gradient checkpointing is on (the same
        computation: no masks, then the stack's final norm)."""
        if not self.grad_checkpointing:
            return stack(x, *memory)
        x = run_checkpointed(stack.layers, x, *memory)
        return x if stack.norm is None else stack.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """LayerNorm, dropout, then the final classifier (skipped when ``pre_logits``).

        Args:
            x: the features :meth:`forward_features` returned.
            pre_logits: return the normalised features instead of logits.
        """
        x = self.head_drop(self.norm(x))
        return x if pre_logits else self.fc(x)

    # ------------------------------------------------------------------------------------------- losses
    @torch.no_grad()
    def _update_prototypes(self, video_text: torch.Tensor, target: torch.Tensor) -> None:
        emb = F.normalize(video_text.detach().float(), dim=-1)
        classes = target.unique()
        means = torch.stack([emb[target == c].mean(0) for c in classes])
        seen = self.prototype_seen[classes]
        old = self.prototypes[classes]
        new = torch.where(seen.unsqueeze(-1), self.prototype_momentum * old + (1 - self.prototype_momentum) * means, means)
        self.prototypes[classes] = F.normalize(new, dim=-1).to(self.prototypes.dtype)
        self.prototype_seen[classes] = True

    def losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted auxiliary losses of the last training-mode forward, by name (see the module docstring).

        Terms with weight 0 are absent; the text terms exist only with a text bank. The first call after a
        forward updates the class prototypes.

        Args:
            logits: the final prediction of that forward, ``[B, num_classes]`` (the pre-logits features
                ``[B, head_hidden_size]`` when ``num_classes=0``; their main cross-entropy is the caller's).
            target: the int64 class indices ``[B]``.
        """
        cache = self._cache
        if cache is None:
            raise RuntimeError("ARTHead.losses needs the intermediates of a training-mode forward: call "
                               "head.train() and run the forward pass first (eval-mode forwards keep nothing)")
        b = cache["batch"]
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, the output of the last forward, got {type(logits).__name__}")
        width, what = ((self.num_classes, "num_classes") if self.num_classes > 0
                       else (self.head_hidden_size,
                             "head_hidden_size, the pre-logits features of a head without classifier"))
        if tuple(logits.shape) != (b, width):
            raise ValueError(f"logits must be the [B={b}, {width}] ({what}) output of the last forward, got shape "
                             f"{tuple(logits.shape)}")
        w = self.loss_weights
        out: dict[str, torch.Tensor] = {}
        if self.num_classes > 0:
            check_target(target, b, self.num_classes, "ARTHead.losses")
            if "global_logits" in cache:
                out["ce_global"] = w["global_loss_weight"] * F.cross_entropy(cache["global_logits"].float(), target)
        responses = cache["responses"]
        if w["spatial_loss_weight"]:
            out["mtc_spatial"] = w["spatial_loss_weight"] * spatial_contrast(responses)
        if w["temporal_loss_weight"]:
            out["mtc_temporal"] = w["temporal_loss_weight"] * temporal_contrast(responses, self.gamma)
        if w["tracklet_loss_weight"]:
            out["mtc_tracklet"] = w["tracklet_loss_weight"] * tracklet_contrast(responses)
        if "video_text" in cache:
            if self.text_bank.shape[0] != self.num_classes:
                raise ValueError(f"the text bank has {self.text_bank.shape[0]} classes but the head has "
                                 f"{self.num_classes}: call head.set_text_bank(build_text_bank(class_names, ...))")
            if w["text_video_loss_weight"]:
                out["text_video"] = w["text_video_loss_weight"] * video_consistency(
                    cache["video_text"], self.text_agent, target, self.text_temperature)
            if w["text_prototype_loss_weight"]:
                if not cache["prototypes_updated"]:  # the buffers change in place: the loss uses copies
                    self._update_prototypes(cache["video_text"], target)
                    cache["prototypes_updated"] = True
                out["text_prototype"] = w["text_prototype_loss_weight"] * prototype_consistency(
                    self.prototypes.clone(), self.text_agent, self.prototype_seen.clone(), self.text_temperature)
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # graph tensors of the last forward cannot be copied or pickled
        return state
