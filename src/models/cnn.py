"""Plain convolutional classifier for square one-channel images: a stack of convolutions, the i-th
`kernels[i]` x `kernels[i]` with `channels[i]` output channels ('valid' padding, stride 1: Keras'
default), each followed by the activation; one max-pool of `pool` x `pool`; dropout `conv_dropout`;
a dense hidden layer of `width` units; dropout `dropout`; logits.

With kernels [3, 3], channels [32, 64], pool 2, width 128, ReLU, conv_dropout 0.25 and dropout 0.5 it
is the classic Keras MNIST CNN (keras-team/keras examples/mnist_cnn.py): 1,199,882 parameters."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.mlp import ACTIVATIONS, initialise


def receptive_field(kernels: list[int]) -> int:
    """The side of the input patch one output unit of a stack of stride-1 convolutions sees."""
    return 1 + sum(k - 1 for k in kernels)


def conv_parameter_count(kernels: list[int], channels: list[int], channels_in: int = 1) -> int:
    """Weights and biases of the stack of convolutions alone."""
    sizes = [channels_in, *channels]
    return sum(k * k * c_in * c_out + c_out for k, c_in, c_out in zip(kernels, sizes[:-1], sizes[1:]))


class CNN(nn.Module):
    def __init__(self, in_features: int, out_features: int, kernels: list[int], channels: list[int], width: int,
                 pool: int = 2, activation: str = "relu", init: str = "he", conv_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        self.side = math.isqrt(in_features)
        if self.side ** 2 != in_features:
            raise ValueError(f"a cnn needs square one-channel images, got {in_features} input features")
        if not kernels or len(kernels) != len(channels) or min(*kernels, *channels, pool) < 1:
            raise ValueError(f"a cnn needs model.kernels and model.channels of one equal length >= 1, every value >= 1 "
                             f"(got kernels {list(kernels)}, channels {list(channels)}, pool {pool})")
        side = (self.side - receptive_field(kernels) + 1) // pool
        if side < 1:
            raise ValueError(f"a cnn's convolutions (receptive field {receptive_field(kernels)}) and pool {pool} leave "
                             f"nothing of a {self.side} x {self.side} image")
        layers: list[nn.Module] = []
        for k, c_in, c_out in zip(kernels, [1, *channels[:-1]], channels):
            layers += [nn.Conv2d(c_in, c_out, k), ACTIVATIONS[activation]()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.MaxPool2d(pool), nn.Dropout(conv_dropout), nn.Flatten(),
                                  nn.Linear(channels[-1] * side * side, width), ACTIVATIONS[activation](),
                                  nn.Dropout(dropout), nn.Linear(width, out_features))
        self.weight_layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        initialise(self.weight_layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x.view(-1, 1, self.side, self.side)))

    @torch.no_grad()
    def measured_receptive_field(self) -> int:
        """The receptive field read off the real layers: the rows of the input that reach the centre
        output unit of the last convolution, through the convolutions alone (the activations left
        out, so that no unit that happens to be off hides a path)."""
        with torch.enable_grad():
            x = torch.zeros(1, 1, self.side, self.side, requires_grad=True)
            out = x
            for layer in self.convs:
                if isinstance(layer, nn.Conv2d):
                    out = torch.nn.functional.conv2d(out, torch.ones_like(layer.weight))
            centre = out.shape[-1] // 2
            out[0, 0, centre, centre].backward()
        rows = x.grad[0, 0].abs().sum(1).nonzero()
        return int(rows.max() - rows.min() + 1)
