"""Fully connected classifier: input -> `depth` hidden layers of `width` units -> logits."""

from __future__ import annotations

import torch
from torch import nn

SMALL_NORMAL_STD = 0.01
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


def mlp_parameter_count(in_features: int, depth: int, width: int, out_features: int) -> int:
    """Weights and biases of an MLP with `depth` hidden layers of `width` units."""
    if depth == 0:
        return (in_features + 1) * out_features
    return (in_features + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * out_features


class MLP(nn.Module):
    def __init__(self, in_features: int, out_features: int, depth: int, width: int,
                 activation: str = "sigmoid", init: str = "glorot_uniform", dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__()
        sizes = [in_features] + [width] * depth
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # batch norm between each layer's weights and its activation (Ioffe & Szegedy 2015); its
            # shift replaces the layer's bias
            layers += [nn.Linear(fan_in, fan_out, bias=not batch_norm), *([nn.BatchNorm1d(fan_out)] if batch_norm else []),
                       ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)
        self.weight_layers = [m for m in self.net if isinstance(m, nn.Linear)]
        initialise(self.weight_layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def initialise(weight_layers: list[nn.Module], init: str) -> None:
    if init == "torch_default":
        return
    for layer in weight_layers:
        if init == "glorot_uniform":
            nn.init.xavier_uniform_(layer.weight)
        elif init == "he":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        elif init == "small_normal":  # the naive "small random numbers": N(0, 0.01^2) whatever the fan-in
            nn.init.normal_(layer.weight, std=SMALL_NORMAL_STD)
        else:  # identity: the IRNN's, models/rnn.py
            raise ValueError(f"model.init {init} is not for this net (identity: model.arch rnn, model.cell rnn)")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
