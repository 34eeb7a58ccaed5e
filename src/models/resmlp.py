"""Deep fully connected nets with batch norm, with or without identity shortcuts (He et al. 2016,
in MLP form): stem Linear-BN-ReLU, then blocks of Linear-BN-ReLU-Linear-BN, each added to its input
(residual) or not (plain), then ReLU; a linear output layer. `depth` counts hidden weight layers:
1 + 2 x blocks. Blocks listed in `skipped` are left out at forward time, which for a residual net is
deleting the block's branch (Veit et al. 2016) and for a plain net is deleting two layers."""

from __future__ import annotations

import torch
from torch import nn

from models.mlp import initialise


class Block(nn.Module):
    def __init__(self, width: int, residual: bool):
        super().__init__()
        self.residual = residual
        # no bias before batch norm: BN's shift replaces it (a bias there has zero gradient)
        self.branch = nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                                    nn.Linear(width, width, bias=False), nn.BatchNorm1d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return torch.relu(x + out if self.residual else out)


class ResidualMLP(nn.Module):
    def __init__(self, in_features: int, out_features: int, depth: int, width: int, residual: bool,
                 init: str = "he"):
        super().__init__()
        if depth < 3 or depth % 2 == 0:
            raise ValueError(f"model.depth of a resmlp must be odd and >= 3 (1 stem layer + 2 per block), got {depth}")
        self.stem = nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        self.blocks = nn.ModuleList(Block(width, residual) for _ in range((depth - 1) // 2))
        self.head = nn.Linear(width, out_features)
        self.weight_layers = [m for m in self.modules() if isinstance(m, nn.Linear)]
        self.skipped: set[int] = set()
        initialise(self.weight_layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i not in self.skipped:
                x = block(x)
        return self.head(x)
