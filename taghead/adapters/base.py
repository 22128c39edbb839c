"""``FeatureExtractor``: what every adapter builds. A video model cut before its pooling and classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import DataConfig
from ..layers.batchnorm import set_batchnorm_eval
from ..limits import MAX_REAL_PROBE_BYTES
from ..utils.meta import shape_call
from ..utils.tracing import is_tracing

__all__ = ["FeatureExtractor", "FeatureMapError", "check_video", "check_feature_output", "GroupMatcher",
           "children_group_matcher"]

#: timm's parameter-group matcher (``group_matcher()``): a dict of regular expressions (group name -> a pattern, or
#: a list of ``(pattern, suffix)``), or a callable ``name -> ordinal``; see ``timm.models.group_with_matcher``.
GroupMatcher = dict[str, Any] | Callable[[str], Any]


class FeatureMapError(ValueError):
    """A backbone (or its feature layer) produced something other than a ``[B, C, T, H, W]`` map."""


def check_video(video: Any, in_chans: int = 3, owner: str = "backbone") -> torch.Tensor:
    """Validate a clip batch ``[B, C, T, H, W]`` (``C = in_chans``) and return it unchanged.

    Raises a ``TypeError``/``ValueError`` that names the expected layout and, for the usual mix-ups
    (``[B, T, C, H, W]``, channels-last, a clip without batch axis, integer pixels), the fix. Nothing is
    checked while ``torch.fx`` traces (a ``Proxy`` has no values).

    Args:
        video: the clip batch.
        in_chans: the expected number of colour channels.
        owner: who checks, named in the error message.
    """
    if is_tracing():
        return video
    layout = f"[B, {in_chans}, T, H, W]"
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"{owner} expects a video tensor {layout}, got {type(video).__name__}")
    shape = tuple(video.shape)
    if video.dim() != 5:
        hint = ""
        if video.dim() == 4 and shape[0] == in_chans:
            hint = f" It looks like one clip [{in_chans}, T, H, W]; add the batch axis: video.unsqueeze(0)."
        elif video.dim() == 4 and shape[1] == in_chans:
            hint = f" It looks like images [B, {in_chans}, H, W]; add the time axis: video.unsqueeze(2)."
        raise ValueError(f"{owner} expects a 5-D video {layout}; got a {video.dim()}-D tensor of shape {shape}.{hint}")
    if shape[1] != in_chans:
        hint = ""
        if shape[2] == in_chans:
            hint = f" It looks like [B, T, {in_chans}, H, W]; use video.permute(0, 2, 1, 3, 4)."
        elif shape[4] == in_chans:
            hint = f" It looks channels-last [B, T, H, W, {in_chans}]; use video.permute(0, 4, 1, 2, 3)."
        raise ValueError(f"{owner} expects the video layout {layout} with {in_chans} channels at dim 1; "
                         f"got shape {shape}.{hint}")
    if not video.is_floating_point():
        raise ValueError(f"{owner} expects a floating-point video {layout} normalised with the data config's "
                         f"mean and std; got dtype {video.dtype}. Convert with video.float() / 255 and normalise.")
    return video


def check_feature_output(features: Any, owner: str = "backbone") -> torch.Tensor:
    """Validate that a backbone produced a 5-D feature map ``[B, C, T, H, W]`` (not while ``torch.fx`` traces).

    Args:
        features: what the backbone returned.
        owner: who produced it, named in the error message.
    """
    if is_tracing():
        return features
    if not isinstance(features, torch.Tensor):
        raise FeatureMapError(f"{owner} must produce a feature map tensor [B, C, T, H, W], got {type(features).__name__}")
    if features.dim() != 5:
        hints = {
            2: " A 2-D output is already pooled [B, C]: take a layer before the global pooling.",
            3: " A 3-D output looks like tokens [B, N, C]: reshape them to [B, C, T, H, W].",
            4: " A 4-D output looks like an image map [B, C, H, W]: the layer has no time axis.",
        }
        raise FeatureMapError(f"{owner} must produce a 5-D feature map [B, C, T, H, W]; got a {features.dim()}-D "
                              f"tensor of shape {tuple(features.shape)}.{hints.get(features.dim(), '')}")
    return features


class FeatureExtractor(nn.Module):
    """Runs a video model up to its last spatio-temporal feature map ``[B, C, T, H, W]``.

    One subclass per model family, registered with :func:`taghead.register_adapter`. A subclass
    implements :meth:`extract` and, in ``__init__``, replaces the model's own pooling and classifier by
    ``nn.Identity`` so their weights are neither stored nor trained. The model is kept, modified in
    place, as ``self.model`` with its original submodule names: a wrapped model's state-dict keys read
    ``backbone.model.<original names>``.

    Shapes are found by running the extractor once on a dummy clip (:meth:`feature_shape`): on the
    ``meta`` device (shapes only, no arithmetic, no memory) when the model allows it, else on fake
    tensors, else on a real zero clip under ``torch.no_grad()`` (only a clip of at most
    :data:`~taghead.limits.MAX_REAL_PROBE_BYTES`). This is exact for every model, including those whose
    padding makes the output size differ from ``input / stride``.

    timm's training conventions: :meth:`group_matcher` (the parameter groups of layer-wise learning-rate
    decay, over the names of ``self.model``) and, where the family allows, :meth:`set_grad_checkpointing`
    (:attr:`supports_grad_checkpointing`).

    Class attributes:
        adapter_name: the registry name (set by :func:`taghead.register_adapter`).
        family: human-readable family and models, listed in "unsupported model" errors.
        input_format: the input the extractor accepts, in words.
        in_chans: colour channels of the video.
        supports_grad_checkpointing: whether :meth:`set_grad_checkpointing` can checkpoint this family's
            blocks (the subclass's ``extract`` honours :attr:`grad_checkpointing`).

    Args:
        model: the video model, modified in place and kept as ``self.model``.
    """

    adapter_name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    input_format: ClassVar[str] = "video tensor [B, 3, T, H, W]"
    in_chans: ClassVar[int] = 3
    supports_grad_checkpointing: ClassVar[bool] = False

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} wraps an nn.Module, got {type(model).__name__}")
        self.model = model
        self.frozen = False
        self.bn_stats_frozen = False
        #: ``(num_frames, crop_size)`` of the clip the model is used with (set by ``wrap_backbone``);
        #: ``out_channels`` and the strides are measured on it, else on the default data config.
        self.clip: tuple[int, int] | None = None
        self._shapes: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        #: Whether ``extract`` runs the model's blocks checkpointed (:meth:`set_grad_checkpointing`).
        self.grad_checkpointing = False

    # -- what subclasses provide -------------------------------------------------------------------
    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        """Whether this adapter can handle ``model`` (checked after the class lookup).

        Args:
            model: a model whose class this adapter is registered for.
        """
        return True

    def extract(self, video: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """Run the model on a validated ``video`` up to its last spatio-temporal map.

        Args:
            video: the input, as :meth:`check_input` returned it.
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this extractor around a fresh model."""
        return {}

    def default_data_config(self) -> DataConfig:
        """The clip length, crop and normalisation the model expects by default."""
        return DataConfig()

    def check_input(self, video: Any) -> Any:
        """Validate the input; the default accepts one tensor ``[B, 3, T, H, W]``.

        Args:
            video: what the caller passed to the extractor.
        """
        return check_video(video, self.in_chans, type(self).__name__)

    def dummy_input(self, num_frames: int, crop_size: int, batch_size: int = 1,
                    device: str | torch.device | None = None) -> Any:
        """A zero clip in the input format, in the model's dtype, on ``device`` (default: the model's; ``"meta"``
        gives a clip without memory, for shapes).

        Args:
            num_frames: frames of the clip.
            crop_size: height and width in pixels.
            batch_size: clips in the batch.
            device: where to create it; ``None`` for the model's device.
        """
        ref = next(iter(self.parameters()), None)
        if device is None:
            device = ref.device if ref is not None else torch.device("cpu")
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        return torch.zeros(batch_size, self.in_chans, num_frames, crop_size, crop_size, device=device, dtype=dtype)

    def group_matcher(self, coarse: bool = False) -> GroupMatcher:
        """timm's ``group_matcher`` over the parameter names of ``self.model``: which parameters form one layer
        group (stages when ``coarse``, blocks otherwise), earliest first. The default is
        :func:`children_group_matcher`; families with a known layout override it.

        Args:
            coarse: group by stage instead of by block.
        """
        return children_group_matcher(self.model, coarse)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint the model's blocks (timm's ``set_grad_checkpointing``): their activations are recomputed in
        the backward pass instead of kept; same outputs and gradients.

        Args:
            enable: turn checkpointing on (``True``) or off.

        Raises:
            NotImplementedError: ``enable=True`` on a family that cannot (:attr:`supports_grad_checkpointing`).
        """
        if enable and not self.supports_grad_checkpointing:
            raise NotImplementedError(
                f"{type(self).__name__} ({type(self.model).__qualname__}) cannot checkpoint its backbone: gradient "
                "checkpointing is implemented for timm models, torchvision VideoResNet / S3D / MViT / Swin3D, "
                "pytorchvideo ResNet / X3D / SlowFast / MViT and taghead's TinyVideoCNN"
            )
        self.grad_checkpointing = bool(enable)

    # -- the module ---------------------------------------------------------------------------------
    def forward(self, video: Any) -> torch.Tensor:
        """Validate ``video``, extract its feature map and check the map's layout.

        Args:
            video: a clip batch ``[B, 3, T, H, W]`` (or the family's own input format, see
                :meth:`check_input`).

        Returns:
            The feature map ``[B, C, T', H', W']``; computed without gradients when the extractor is frozen.
        """
        video = self.check_input(video)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.extract(video)
        return check_feature_output(features, self.describe())

    def describe(self) -> str:
        """Who produced the features, for error messages."""
        return f"{type(self).__name__} ({type(self.model).__qualname__})"

    def freeze(self, frozen: bool = True) -> FeatureExtractor:
        """Freeze (or unfreeze) the backbone: no gradients, no optimizer group, BatchNorm statistics fixed.

        A frozen extractor runs under ``torch.no_grad()`` and stays in eval mode when the model is
        switched to training, so a frozen backbone is a fixed function of the input.

        Args:
            frozen: freeze (``True``) or unfreeze.
        """
        self.frozen = bool(frozen)
        for p in self.parameters():
            p.requires_grad_(not self.frozen)
        return self.train(self.training)

    def freeze_bn_stats(self, frozen: bool = True) -> FeatureExtractor:
        """Keep (or stop keeping) the backbone's BatchNorm running statistics fixed while the rest trains.

        Every BatchNorm layer of the backbone stays in eval mode when the model is switched to training:
        it normalises with the statistics it has (the pretrained ones) and does not update them; its
        affine weight and bias, and every other parameter, still train.

        Args:
            frozen: keep the statistics fixed (``True``) or let them update again.
        """
        self.bn_stats_frozen = bool(frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Set training mode (``nn.Module.train``), keeping a frozen backbone, or its BatchNorm layers, in
        eval mode.

        Args:
            mode: training (``True``) or evaluation mode.

        Returns:
            The extractor itself.
        """
        super().train(mode)
        if self.frozen:
            self.model.eval()
        elif self.bn_stats_frozen:
            set_batchnorm_eval(self.model)
        return self

    # -- shapes ------------------------------------------------------------------------------------
    def feature_shape(self, num_frames: int, crop_size: int) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of the feature map for a clip of ``num_frames`` frames at ``crop_size`` pixels.

        Raises ``ValueError`` (with the shapes) when the model cannot run such a clip or when the map
        has an empty axis, i.e. the clip is too small for the backbone.

        Args:
            num_frames: frames of the clip.
            crop_size: height and width of the clip in pixels.
        """
        for name, value in (("num_frames", num_frames), ("crop_size", crop_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        key = (num_frames, crop_size)
        if key not in self._shapes:
            shape = self._probe(num_frames, crop_size)
            self._shapes[key] = shape
        return self._shapes[key]

    def feature_grid(self, num_frames: int, crop_size: int) -> tuple[int, int, int]:
        """``(T, H, W)`` of the feature map: the grid a head is built for.

        Args:
            num_frames: frames of the clip.
            crop_size: height and width of the clip in pixels.
        """
        return self.feature_shape(num_frames, crop_size)[1:]

    def _reference(self) -> tuple[int, int, tuple[int, int, int, int]]:
        if self.clip is not None:
            frames, crop = self.clip
        else:
            cfg = self.default_data_config()
            frames, crop = cfg.num_frames, cfg.crop_size
        return frames, crop, self.feature_shape(frames, crop)

    @property
    def out_channels(self) -> int:
        """Channels ``C`` of the feature map."""
        return self._reference()[2][0]

    @property
    def temporal_stride(self) -> int:
        """Nominal temporal stride: input frames per feature-map step (measured on :attr:`clip`)."""
        frames, _, shape = self._reference()
        return round(frames / shape[1])

    @property
    def spatial_stride(self) -> int:
        """Nominal spatial stride: input pixels per feature-map cell (measured on :attr:`clip`)."""
        _, crop, shape = self._reference()
        return round(crop / shape[2])

    def _real_forward(self, num_frames: int, crop_size: int) -> Any:
        """The output of a real forward pass on a zero clip (the last way to find a shape), when that clip is
        at most :data:`~taghead.limits.MAX_REAL_PROBE_BYTES`."""
        elements = self.in_chans * num_frames * crop_size * crop_size
        ref = next(iter(self.parameters()), None)
        size = elements * (ref.element_size() if ref is not None and ref.is_floating_point() else 4)
        if size > MAX_REAL_PROBE_BYTES:
            raise ValueError(
                f"{type(self).__name__} ({type(self.model).__name__}) cannot find its feature map's shape on the meta "
                f"device or on fake tensors, and a real clip of {num_frames} frames at {crop_size}x{crop_size} pixels "
                f"would take {size / 2**20:.0f} MiB (limit: taghead.limits.MAX_REAL_PROBE_BYTES = "
                f"{MAX_REAL_PROBE_BYTES / 2**20:.0f} MiB); use a smaller clip")
        return self(self.dummy_input(num_frames, crop_size))

    def _probe(self, num_frames: int, crop_size: int) -> tuple[int, int, int, int]:
        video = self.dummy_input(num_frames, crop_size, device="meta")  # shapes only: no memory for the clip
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out_shape = tuple(shape_call(self, video,
                                             fallback=lambda: self._real_forward(num_frames, crop_size)).shape)
        except FeatureMapError:
            raise
        except Exception as err:
            raise ValueError(
                f"{type(self).__name__} ({type(self.model).__name__}) cannot run a clip of {num_frames} frames "
                f"at {crop_size}x{crop_size} pixels (input {_describe(video)}): {type(err).__name__}: {err}. "
                "Check the clip size the backbone was built for; a clip too small for the backbone (too few "
                "frames, too small a crop_size) fails this way too."
            ) from err
        finally:
            self.train(was_training)
        shape = tuple(int(s) for s in out_shape[1:])
        if min(shape) < 1:
            raise ValueError(
                f"{type(self).__name__} ({type(self.model).__name__}) turns a clip of {num_frames} frames at "
                f"{crop_size}x{crop_size} pixels into an empty feature map {out_shape}: too small for a "
                "head grid (T, H, W >= 1). Use more frames or a larger crop_size."
            )
        return shape  # type: ignore[return-value]


def children_group_matcher(model: nn.Module, coarse: bool = False) -> Callable[[str], tuple[int, ...]]:
    """A ``group_matcher`` for any model: one group per top-level submodule, in definition order; when not
    ``coarse`` an ``nn.Sequential`` / ``nn.ModuleList`` submodule is split into one group per element. A parameter
    held by the model itself (no submodule) joins the first group."""
    index = {name: i for i, (name, _) in enumerate(model.named_children())}
    sequences = {name for name, child in model.named_children() if isinstance(child, (nn.Sequential, nn.ModuleList))}

    def ordinal(name: str) -> tuple[int, ...]:
        top, _, rest = name.partition(".")
        if top not in index:
            return (0,)
        sub = rest.partition(".")[0]
        if not coarse and top in sequences and sub.isdigit():
            return (index[top], int(sub))
        return (index[top],)

    return ordinal


def _describe(video: Any) -> str:
    if isinstance(video, torch.Tensor):
        return str(list(video.shape))
    if isinstance(video, Sequence):
        return "[" + ", ".join(_describe(v) for v in video) + "]"
    return type(video).__name__
