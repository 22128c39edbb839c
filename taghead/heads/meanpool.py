"""The mean-pool + linear baseline head (what most video classifiers end with)."""

from __future__ import annotations

import torch
from torch import nn

from .base import VideoHead
from .registry import register_head

__all__ = ["MeanPoolHead"]


@register_head("meanpool")
class MeanPoolHead(VideoHead):
    """Global average over ``T, H, W``, optional dropout, Linear. Any grid is accepted.

    ``forward_features`` returns the tokens ``[B, N, C]`` unchanged so that the interface matches
    :class:`~taghead.TAGHead`.

    Args:
        in_channels: channels ``C`` of the feature map.
        t: temporal size of the map (recorded; any grid is accepted).
        h: height of the map.
        w: width of the map.
        num_classes: classifier outputs (``0``: no classifier).
        drop_rate: dropout before the classifier.
    """

    head_name = "meanpool"

    def __init__(self, in_channels: int, t: int, h: int, w: int, *, num_classes: int = 99,
                 drop_rate: float = 0.0) -> None:
        super().__init__(in_channels, t, h, w)
        self._record_config(drop_rate=drop_rate)
        self.num_features = self.head_hidden_size = in_channels
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_classifier(num_classes)

    def no_weight_decay(self) -> set[str]:
        """No parameter beyond the 1-D ones (the classifier's bias) is exempt from weight decay."""
        return set()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The map's tokens, unchanged.

        Args:
            x: the backbone's feature map ``[B, C, T, H, W]``.

        Returns:
            Tokens ``[B, T*H*W, C]``.
        """
        self.check_input(x)
        return x.flatten(2).transpose(1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over the tokens, dropout, then the classifier (skipped when ``pre_logits``).

        Args:
            x: the tokens :meth:`forward_features` returned.
            pre_logits: return the pooled features instead of logits.
        """
        x = self.head_drop(x.mean(dim=1))
        return x if pre_logits else self.fc(x)
