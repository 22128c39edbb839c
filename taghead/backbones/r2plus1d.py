"""R(2+1)D-34 in the IG-65M layout: the reference TAG-Head backbone, built from torchvision parts."""

from __future__ import annotations

from torch import nn

__all__ = ["r2plus1d_34"]


def r2plus1d_34(num_classes: int = 400) -> nn.Module:
    """R(2+1)D-34 in the layout of the IG-65M R(2+1)D-34 (torchvision ``VideoResNet`` parts).

    ``VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)`` with the first block's
    ``conv2[0]`` of layer2/3/4 widened to ``Conv2Plus1D(c, c, 288 | 576 | 1152)`` and every
    ``BatchNorm3d`` at ``eps=1e-3, momentum=0.9``, as in the reference checkpoints. Randomly
    initialised: weights come from a converted reference checkpoint (:mod:`taghead.convert`).
    For a 112x112 clip of ``T`` frames its last map is ``[B, 512, T/8, 7, 7]``.

    Args:
        num_classes: width of the final ``fc`` layer.
    """
    from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

    model = VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4, layers=[3, 4, 6, 3],
                        stem=R2Plus1dStem, num_classes=num_classes)
    model.layer2[0].conv2[0] = Conv2Plus1D(128, 128, 288)
    model.layer3[0].conv2[0] = Conv2Plus1D(256, 256, 576)
    model.layer4[0].conv2[0] = Conv2Plus1D(512, 512, 1152)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            module.eps, module.momentum = 1e-3, 0.9
    return model
