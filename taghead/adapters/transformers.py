r"""Adapters for Hugging Face Transformers video models: VideoMAE, TimeSformer, ViViT, V-JEPA 2 and X-CLIP's vision tower.

Each adapter takes the bare encoder (``VideoMAEModel``, ...) or its ``...ForVideoClassification`` model, feeds it
taghead's clip ``[B, 3, T, H, W]`` in the layout the model expects (``pixel_values [B, T, C, H, W]``, or
frames folded into the batch for X-CLIP) and turns its last hidden state into the map ``[B, D, T', H', W']``,
class tokens dropped. What the model applies to every token is kept (the final LayerNorm of TimeSformer,
ViViT, V-JEPA 2 and VideoMAE without mean pooling); what it applies only to the pooled vector goes with the
classifier (VideoMAE's ``fc_norm``, X-CLIP's ``post_layernorm`` of the class token, V-JEPA 2's attentive
pooler), as does V-JEPA 2's predictor, which only pre-training uses. Token order, read from each model's
embedding code:

=============  ==================================  =====================  ===============================
family         tokens (after the class token)      grid ``(T', H', W')``  clip the model accepts
=============  ==================================  =====================  ===============================
VideoMAE       ``t, h, w`` (Conv3d tubelets)       ``T/ts, H/p, W/p``     config's frames and size
TimeSformer    ``h, w, t`` (divided / joint);      ``T, H/p, W/p``        config's frames and size
               per frame ``h, w`` (space only)
ViViT          ``t, h, w`` (Conv3d tubelets)       ``T/ts, H/p, W/p``     config's frames and size
V-JEPA 2       ``t, h, w`` (Conv3d tubelets),      ``T/ts, H/p, W/p``     config's crop; any multiple of
               no class token                                             ``tubelet_size`` frames (RoPE)
X-CLIP vision  per frame ``h, w`` (one ViT per     ``T, H/p, W/p``        config's frames and size
               frame, class token per frame)
=============  ==================================  =====================  ===============================

(``ts``: ``tubelet_size``, ``p``: ``patch_size``.) X-CLIP's time axis is the frame axis: its vision tower is an
image ViT run on every frame, whose frames exchange information only through one message token per frame
(cross-frame attention), so cell ``(t, h, w)`` is patch ``(h, w)`` of frame ``t``. Clips of another size are
refused with an error naming the config fields, rather than run with mis-placed positions (V-JEPA 2's
rotary positions assume the config's crop; X-CLIP's message tokens assume the config's frame count).

Default data configs are the families' processor values in transformers: sizes from
``VideoMAEVideoProcessor``, ``TimesformerVideoProcessor``, ``VivitVideoProcessor``, ``VJEPA2VideoProcessor``
and (X-CLIP, whose processor wraps an image processor chosen by the checkpoint) ``CLIPImageProcessor``;
means and standard deviations likewise, except VideoMAE (ImageNet's, which ``VideoMAEForPreTraining``
un-normalises its input with, rather than the 0.5 of the bare processor class) and ViViT, whose processor
maps pixels to ``[-1, 1]`` first (``x / 127.5 - 1``) and then normalises with mean 0.5 and std 0.5: on pixels
in ``[0, 1]`` that is mean 0.75, std 0.25. The clip length and crop are the model's config's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..config import DataConfig
from .base import FeatureExtractor, check_video
from .registry import register_adapter
from .tokens import tokens_to_map

__all__ = ["TransformersVideoFeatures", "VideoMAEFeatures", "TimesformerFeatures", "VivitFeatures",
           "VJEPA2Features", "XCLIPVisionFeatures", "PROCESSOR_VALUES"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))

PROCESSOR_VALUES: dict[str, tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]] = {
    "videomae": ((224, 224), *_IMAGENET),
    "timesformer": ((224, 224), *_IMAGENET),
    "vivit": ((256, 224), (0.75, 0.75, 0.75), (0.25, 0.25, 0.25)),
    "vjepa2": ((292, 256), *_IMAGENET),  # int(256 * 256 / 224)
    "xclip_vision": ((224, 224), *_CLIP),
}
"""Per family: ``(shortest edge, crop)`` of the processor's resize and centre crop, then mean and std of
pixels in [0, 1] (module docstring). A model built for another crop keeps the resize-to-crop ratio."""


def _models(module: str, *classes: str) -> list[str]:
    return [f"transformers.models.{module}.modeling_{module}:{cls}" for cls in classes]


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


class TransformersVideoFeatures(FeatureExtractor):
    """What the transformers adapters share: the encoder inside a ``...ForVideoClassification`` model, the clip
    check against the config, and the default data config (module docstring).

    Subclasses set ``base_prefix`` (the encoder's attribute in the classification model), ``processor`` (a key of
    :data:`PROCESSOR_VALUES`) and ``pooling_parts`` (attributes of the classification model that pool or
    classify, replaced by ``nn.Identity``), and implement :meth:`extract`.

    Args:
        model: the ``...ForVideoClassification`` model or its bare encoder model, modified in place.
    """

    base_prefix: ClassVar[str] = ""
    processor: ClassVar[str] = ""
    pooling_parts: ClassVar[tuple[str, ...]] = ("classifier",)
    input_format = "video tensor [B, 3, T, H, W] of the clip size of the model's config"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if self.is_classifier:
            for part in self.pooling_parts:
                if getattr(model, part, None) is not None:
                    setattr(model, part, nn.Identity())

    @property
    def is_classifier(self) -> bool:
        """Whether the model is a ``...ForVideoClassification`` model (the encoder sits in ``base_prefix``)."""
        return type(self.model).__name__.endswith("ForVideoClassification")

    @property
    def base(self) -> nn.Module:
        """The bare encoder model (the model itself, or its ``base_prefix`` attribute)."""
        return getattr(self.model, self.base_prefix) if self.is_classifier else self.model

    @property
    def config(self) -> Any:
        """The Hugging Face Transformers config of the model."""
        return self.model.config

    # -- the clip ----------------------------------------------------------------------------------
    def frames_and_size(self) -> tuple[int, tuple[int, int]]:
        """``(frames, (height, width))`` of the clip the config describes."""
        return int(self.config.num_frames), _pair(self.config.image_size)

    def size_fields(self) -> str:
        """The config fields that set the clip, for error messages."""
        return "num_frames, image_size"

    def frames_fit(self, frames: int) -> bool:
        """Whether the model runs a clip of ``frames`` frames correctly (default: exactly the config's).

        Args:
            frames: frames of the clip.
        """
        return frames == self.frames_and_size()[0]

    def check_input(self, video: Any) -> torch.Tensor:
        video = check_video(video, self.in_chans, type(self).__name__)
        frames, size = self.frames_and_size()
        t, h, w = (int(s) for s in video.shape[2:])
        if not self.frames_fit(t) or (h, w) != size:
            wanted = self._wanted_frames(frames)
            raise ValueError(
                f"{type(self).__name__}: this {type(self.model).__name__} is built for clips of {wanted} at "
                f"{size[0]}x{size[1]} pixels (config {self.size_fields()}); got a clip {tuple(video.shape)}. Feed "
                f"clips of that size (the wrapped model's data_config), or build the backbone from a config for "
                f"your clip (backbone_kwargs={{'config': {{...}}}})."
            )
        return video

    def _wanted_frames(self, frames: int) -> str:
        return f"{frames} frames"

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """``(T', H', W')`` of the token map of ``video``.

        Args:
            video: a clip batch ``[B, 3, T, H, W]``.
        """
        t, h, w = video.shape[2:]
        patch = _pair(self.config.patch_size)
        return int(t) // self.tubelet(), int(h) // patch[0], int(w) // patch[1]

    def tubelet(self) -> int:
        """Input frames per token along time."""
        return 1

    def default_data_config(self) -> DataConfig:
        frames, (height, width) = self.frames_and_size()
        if height != width:
            raise ValueError(f"{type(self.model).__name__} is built for {height}x{width} frames; taghead's data config "
                             "crops squares: build it from a config with a square image size")
        (edge, crop), mean, std = PROCESSOR_VALUES[self.processor]
        return DataConfig(num_frames=frames, crop_size=height, resize_size=int(height * edge / crop), mean=mean, std=std)


@register_adapter(
    "transformers_videomae", *_models("videomae", "VideoMAEModel", "VideoMAEForVideoClassification"),
    family="Hugging Face Transformers VideoMAE: VideoMAEModel, VideoMAEForVideoClassification",
)
class VideoMAEFeatures(TransformersVideoFeatures):
    """VideoMAE's last hidden state (tubelets of ``tubelet_size x patch_size x patch_size``, fixed sine-cosine
    positions, no class token; with ``use_mean_pooling=False`` the model's final LayerNorm): ``[B, D, T/ts,
    H/p, W/p]``. The classification model's ``fc_norm`` (a LayerNorm of the mean) and ``classifier`` are
    dropped."""

    base_prefix = "videomae"
    processor = "videomae"
    pooling_parts = ("fc_norm", "classifier")

    def tubelet(self) -> int:
        return int(self.config.tubelet_size)

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.base(pixel_values=video.transpose(1, 2))[0]
        return tokens_to_map(tokens, self.grid(video))


@register_adapter(
    "transformers_timesformer", *_models("timesformer", "TimesformerModel", "TimesformerForVideoClassification"),
    family="Hugging Face Transformers TimeSformer: TimesformerModel, TimesformerForVideoClassification",
)
class TimesformerFeatures(TransformersVideoFeatures):
    """TimeSformer's last hidden state after its final LayerNorm, class token dropped: ``[B, D, T, H/p, W/p]``.

    With divided (or joint) space-time attention the patch tokens are ordered ``h, w, t`` (TimeSformer puts
    time innermost, ``TimesformerEmbeddings``); with ``attention_type="space_only"`` every frame is a sequence
    of its own (frames folded into the batch, one class token each). Either way cell ``(t, h, w)`` is patch
    ``(h, w)`` of frame ``t``. The classification model's ``classifier`` is dropped."""

    base_prefix = "timesformer"
    processor = "timesformer"

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        t, h, w = self.grid(video)
        tokens = self.base(pixel_values=video.transpose(1, 2))[0][:, 1:]
        if self.config.attention_type == "space_only":  # [B*T, 1 + H*W, D]
            cells = tokens.reshape(b, t, h, w, tokens.shape[-1])
        else:  # [B, 1 + H*W*T, D], time innermost
            cells = tokens.reshape(b, h, w, t, tokens.shape[-1]).permute(0, 3, 1, 2, 4)
        return cells.permute(0, 4, 1, 2, 3)


@register_adapter(
    "transformers_vivit", *_models("vivit", "VivitModel", "VivitForVideoClassification"),
    family="Hugging Face Transformers ViViT: VivitModel, VivitForVideoClassification",
)
class VivitFeatures(TransformersVideoFeatures):
    """ViViT's last hidden state after its final LayerNorm (tubelets ``tubelet_size``), class token dropped:
    ``[B, D, T/ts_t, H/ts_h, W/ts_w]``. ``VivitModel``'s pooler (a dense layer on the class token) and the
    classification model's ``classifier`` are dropped.

    Args:
        model: the ``...ForVideoClassification`` model or its bare encoder model, modified in place.
    """

    base_prefix = "vivit"
    processor = "vivit"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if getattr(self.base, "pooler", None) is not None:
            self.base.pooler = None

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        ts = [int(v) for v in self.config.tubelet_size]
        return tuple(int(n) // s for n, s in zip(video.shape[2:], ts))  # type: ignore[return-value]

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.base(pixel_values=video.transpose(1, 2))[0]
        return tokens_to_map(tokens, self.grid(video), num_prefix=1)


@register_adapter(
    "transformers_vjepa2", *_models("vjepa2", "VJEPA2Model", "VJEPA2ForVideoClassification"),
    family="Hugging Face Transformers V-JEPA 2: VJEPA2Model, VJEPA2ForVideoClassification",
)
class VJEPA2Features(TransformersVideoFeatures):
    """V-JEPA 2's encoder output after its final LayerNorm (tubelets, no class token, rotary positions):
    ``[B, D, T/ts, H/p, W/p]``. The predictor (pre-training only), and the classification model's attentive
    ``pooler`` and ``classifier`` are dropped. Any number of frames that ``tubelet_size`` divides runs (the
    rotary positions extend in time); the crop must be the config's ``crop_size``.

    Args:
        model: the ``...ForVideoClassification`` model or its bare encoder model, modified in place.
    """

    base_prefix = "vjepa2"
    processor = "vjepa2"
    pooling_parts = ("pooler", "classifier")

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.base.predictor = nn.Identity()

    def frames_and_size(self) -> tuple[int, tuple[int, int]]:
        return int(self.config.frames_per_clip), _pair(self.config.crop_size)

    def size_fields(self) -> str:
        return "frames_per_clip, crop_size, tubelet_size"

    def frames_fit(self, frames: int) -> bool:
        return frames >= self.tubelet() and frames % self.tubelet() == 0

    def _wanted_frames(self, frames: int) -> str:
        return f"a multiple of {self.tubelet()} frames (default {frames})"

    def tubelet(self) -> int:
        return int(self.config.tubelet_size)

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.base.encoder(pixel_values_videos=video.transpose(1, 2))[0]
        return tokens_to_map(tokens, self.grid(video))


@register_adapter(
    "transformers_xclip_vision", *_models("x_clip", "XCLIPVisionModel"),
    family="Hugging Face Transformers X-CLIP vision tower: XCLIPVisionModel (XCLIPModel.vision_model)",
)
class XCLIPVisionFeatures(TransformersVideoFeatures):
    """X-CLIP's vision tower on every frame (frames folded into the batch, as ``XCLIPModel`` does), the
    frame-level class tokens dropped: ``[B, D, T, H/p, W/p]``, time axis = frames. The ``post_layernorm``,
    which the model applies only to the class token (its pooled output), is dropped.

    Args:
        model: the ``XCLIPVisionModel`` (``XCLIPModel.vision_model``), modified in place.
    """

    processor = "xclip_vision"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        model.post_layernorm = nn.Identity()

    def extract(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = self.base(pixel_values=frames)[0][:, 1:]  # [B*T, H'*W', D]
        _, gh, gw = self.grid(video)
        return tokens.reshape(b, t, gh, gw, tokens.shape[-1]).permute(0, 4, 1, 2, 3)
