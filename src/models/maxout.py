"""Maxout net (Goodfellow et al. 2013): input -> `depth` hidden layers of `width` maxout units -> logits.
A maxout unit outputs the largest of `pieces` linear functions of its input, so its activation is
learned; with two pieces, one of them fixed at zero, it is a ReLU."""

from __future__ import annotations

import torch
from torch import nn

from models.mlp import initialise

MAX_PIECES = 64


def maxout_parameter_count(in_features: int, depth: int, width: int, pieces: int, out_features: int) -> int:
    """Weights and biases: each hidden layer has `pieces` linear maps to `width` units."""
    sizes = [in_features] + [width] * depth
    return sum((fan_in + 1) * width * pieces for fan_in in sizes[:-1]) + (sizes[-1] + 1) * out_features


class Maxout(nn.Module):
    """`pieces` linear maps to `width` units in one matrix; the unit takes their maximum."""

    def __init__(self, fan_in: int, width: int, pieces: int):
        super().__init__()
        self.width, self.pieces = width, pieces
        self.linear = nn.Linear(fan_in, width * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unflatten(-1, (self.width, self.pieces)).amax(dim=-1)


class MaxoutMLP(nn.Module):
    def __init__(self, in_features: int, out_features: int, depth: int, width: int, pieces: int,
                 init: str = "glorot_uniform", dropout: float = 0.0):
        super().__init__()
        if not 1 <= pieces <= MAX_PIECES:
            raise ValueError(f"model.pieces of a maxout net must be in 1..{MAX_PIECES}, got {pieces}")
        sizes = [in_features] + [width] * depth
        layers: list[nn.Module] = []
        for fan_in in sizes[:-1]:
            layers.append(Maxout(fan_in, width, pieces))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)
        self.weight_layers = [m for m in self.modules() if isinstance(m, nn.Linear)]
        initialise(self.weight_layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
