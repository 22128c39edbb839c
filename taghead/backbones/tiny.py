"""A tiny 3D CNN for the demo, the synthetic benchmark and fast tests on a CPU."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyVideoCNN", "tiny_video_cnn"]


def _conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class TinyVideoCNN(nn.Module):
    """Four conv-BN-ReLU stages; ``[B, 3, T, H, W] -> [B, width*4, T/4, H/8, W/8]``.

    Its receptive field is small on purpose (about 11 frames and 35 pixels), so it sees local events,
    not their arrangement: what it looks like to a head when a big backbone meets a fine-grained task.
    Has ``pool`` and ``fc`` like a classifier; adapters drop them.

    Args:
        width: channels of the first stage (the last has ``4 * width``).
        num_classes: width of the ``fc`` classifier.
    """

    temporal_stride = 4
    spatial_stride = 8

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(3, width, (3, 5, 5), (1, 2, 2))
        self.layer1 = _conv_bn_relu(width, width * 2, (3, 3, 3), (2, 2, 2))
        self.layer2 = _conv_bn_relu(width * 2, width * 4, (3, 3, 3), (2, 2, 2))
        self.layer3 = _conv_bn_relu(width * 4, width * 4, (1, 3, 3), (1, 1, 1))
        self.out_channels = width * 4
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map.

        Args:
            x: clips ``[B, 3, T, H, W]``.

        Returns:
            ``[B, 4 * width, T/4, H/8, W/8]``.
        """
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: the feature map, average-pooled and classified.

        Args:
            x: clips ``[B, 3, T, H, W]``.

        Returns:
            Logits ``[B, num_classes]``.
        """
        return self.fc(self.pool(self.forward_features(x)).flatten(1))


def tiny_video_cnn(width: int = 16, num_classes: int = 10) -> TinyVideoCNN:
    """Build :class:`TinyVideoCNN` (random weights).

    Args:
        width: channels of the first stage.
        num_classes: width of the ``fc`` classifier.
    """
    return TinyVideoCNN(width=width, num_classes=num_classes)
