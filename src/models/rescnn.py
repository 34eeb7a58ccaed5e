"""Convolutional nets of He et al. 2016's CIFAR-10 family (Sec. 4.2), with or without identity
shortcuts, sized for MNIST on a CPU: a 3x3 conv stem, then three stages of n blocks of two 3x3
convs with `width`, 2 x `width` and 4 x `width` channels (the first block of stages 2 and 3 halves
the resolution), global average pooling and a linear output layer: depth = 6n + 2 weight layers
(8, 20, 44, ...). Batch norm follows every conv in both kinds of net.

Where a block halves the resolution and doubles the channels, its shortcut subsamples and pads the
new channels with zeros (He et al.'s option A), so plain and residual nets of one depth have exactly
the same parameters. Blocks listed in `skipped` are replaced by their shortcut at forward time:
deleting a residual block's branch (Veit et al. 2016) or two layers of a plain net."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.mlp import initialise


def conv_bn(channels_in: int, channels_out: int, stride: int = 1) -> list[nn.Module]:
    # no bias before batch norm: BN's shift replaces it (a bias there has zero gradient)
    return [nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels_out)]


class ConvBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.stride = channels_out // channels_in  # 2 where the block doubles the channels
        self.pad = channels_out - channels_in
        self.branch = nn.Sequential(*conv_bn(channels_in, channels_out, self.stride), nn.ReLU(),
                                    *conv_bn(channels_out, channels_out))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return torch.relu(self.shortcut(x) + out if self.residual else out)


class ResidualCNN(nn.Module):
    def __init__(self, in_features: int, out_features: int, depth: int, width: int, residual: bool,
                 init: str = "he"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.depth of a rescnn must be 6n + 2 >= 8 (8, 14, 20, ...: stem + 3 stages of n blocks of 2 + output), got {depth}")
        self.side = math.isqrt(in_features)
        if self.side ** 2 != in_features:
            raise ValueError(f"rescnn needs square one-channel images, got {in_features} input features")
        blocks_per_stage = (depth - 2) // 6
        channels = [width] + [width * 2 ** (i // blocks_per_stage) for i in range(3 * blocks_per_stage)]
        self.stem = nn.Sequential(*conv_bn(1, width), nn.ReLU())
        self.blocks = nn.ModuleList(ConvBlock(c_in, c_out, residual) for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.head = nn.Linear(channels[-1], out_features)
        self.weight_layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.skipped: set[int] = set()
        initialise(self.weight_layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.view(-1, 1, self.side, self.side))
        for i, block in enumerate(self.blocks):
            x = block.shortcut(x) if i in self.skipped else block(x)
        return self.head(x.mean((2, 3)))
