"""A small convolutional classifier for 8x8 (or larger) single-channel images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...remedies.init import init_layer_
from .common import Activation, Init, Residual, make_activation


@dataclass(frozen=True)
class CNNConfig:
    """Shape of a :class:`CNN`."""

    # Convolutional layers (3x3, padding 1, so the 8x8 digits keep their size).
    depth: int = 3
    # Channels of every convolution: 16 is plenty for 8x8 digits.
    channels: int = 16
    activation: Activation = "relu"
    init: Init = "default"
    # BatchNorm2d after each convolution.
    batchnorm: bool = False
    # Skip connections around each channels->channels convolution block.
    residual: bool = False


class CNN(nn.Module):
    """``Conv -> [BN] -> act`` blocks, global average pooling, a Linear head.

    Example:
        >>> import torch
        >>> CNN(CNNConfig(depth=2, channels=4), in_channels=1, out_features=10)(
        ...     torch.zeros(3, 1, 8, 8)
        ... ).shape
        torch.Size([3, 10])
    """

    def __init__(self, config: CNNConfig, in_channels: int, out_features: int) -> None:
        super().__init__()
        if config.depth < 1 or config.channels < 1:
            raise ValueError(
                f"CNNConfig depth={config.depth}, channels={config.channels} must be >= 1"
            )
        self.config = config
        blocks: list[nn.Module] = []
        c_in = in_channels
        for i in range(config.depth):
            block: list[nn.Module] = [nn.Conv2d(c_in, config.channels, 3, padding=1)]
            if config.batchnorm:
                block.append(nn.BatchNorm2d(config.channels))
            block.append(make_activation(config.activation))
            if config.residual and i > 0:
                blocks.append(Residual(nn.Sequential(*block)))
            else:
                blocks.extend(block)
            c_in = config.channels
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(config.channels, out_features)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                init_layer_(module, config.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.features(x)  # (B, channels, H, W)
        return self.head(h.mean(dim=(2, 3)))  # (B, out)
