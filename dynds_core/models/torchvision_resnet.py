"""torchvision's ResNets (resnet18/34/50), untrained, adapted to the data set.

``small_input=True`` swaps the 7x7 stride-2 stem and its max-pool for a 3x3 stride-1 conv, the
usual change for 32x32 images (otherwise the last stage sees 1x1 maps). ``in_channels`` other
than 3 rebuilds the stem conv; ``num_classes`` sizes the final linear layer.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision import models as tv

from . import register_model


def _adapt(model: tv.ResNet, in_channels: int, small_input: bool) -> nn.Module:
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if small_input or in_channels != 3:
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model
def resnet18(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    return _adapt(tv.resnet18(weights=None, num_classes=num_classes), in_channels, small_input)


@register_model
def resnet34(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    return _adapt(tv.resnet34(weights=None, num_classes=num_classes), in_channels, small_input)


@register_model
def resnet50(num_classes: int = 10, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    return _adapt(tv.resnet50(weights=None, num_classes=num_classes), in_channels, small_input)
