"""Recurrent nets that read a sequence (batch, steps, features) to its end and regress one value from
the last hidden state through a linear head. `cell`: rnn (a plain recurrent layer with `activation`,
tanh or ReLU; ReLU with init `identity` is the IRNN of Le, Jaitly & Hinton 2015), lstm, or gru.

Written as a loop over the steps with nn.Linear layers rather than nn.RNN: the seeds then vmap like
every other model, and the hidden state of each step can be read (the gradient_through_time probe).
The GRU is Cho et al.'s, without a bias on the recurrent candidate (PyTorch's nn.GRU has one)."""

from __future__ import annotations

import torch
from torch import nn

from models.mlp import ACTIVATIONS, initialise

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of `width` rows in the input and recurrent weights
IRNN_INPUT_STD = 0.001  # Le et al. 2015: input weights N(0, 0.001^2), recurrent weights the identity
LSTM_FORGET_BIAS = 1.0  # Keras' unit_forget_bias and Jozefowicz et al. 2015: the cell starts out remembering


class RNN(nn.Module):
    def __init__(self, in_features: int, out_features: int, cell: str, width: int, activation: str = "tanh",
                 init: str = "torch_default", recurrent_gain: float = 1.0):
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown model.cell {cell!r} (known: {', '.join(GATES)})")
        if init == "identity" and cell != "rnn":
            raise ValueError(f"model.init identity (the IRNN) is for model.cell rnn, not {cell}")
        self.cell, self.width = cell, width
        self.act = ACTIVATIONS[activation]()
        self.input = nn.Linear(in_features, GATES[cell] * width)
        self.recurrent = nn.Linear(width, GATES[cell] * width, bias=False)
        self.head = nn.Linear(width, out_features)
        self.weight_layers = [self.input, self.recurrent, self.head]
        if init == "identity":
            with torch.no_grad():
                nn.init.normal_(self.input.weight, std=IRNN_INPUT_STD)
                nn.init.zeros_(self.input.bias)
                self.recurrent.weight.copy_(torch.eye(width))
                nn.init.normal_(self.head.weight, std=IRNN_INPUT_STD)
                nn.init.zeros_(self.head.bias)
        else:
            initialise(self.weight_layers, init)
        with torch.no_grad():
            self.recurrent.weight.mul_(recurrent_gain)
            if cell == "lstm":
                self.input.bias[width:2 * width] = LSTM_FORGET_BIAS  # gate order: input, forget, cell, output

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The hidden state after each step of x (batch, steps, features)."""
        inputs = self.input(x)  # every step's input term at once: (batch, steps, gates * width)
        h = inputs.new_zeros(inputs.shape[0], self.width)
        c = h
        states = []
        # unbind, not inputs[:, step]: each slice's backward would write a zero tensor of the whole
        # sequence, which makes a step's cost grow with the square of its length
        for given in inputs.unbind(1):
            carried = self.recurrent(h)
            if self.cell == "rnn":
                h = self.act(given + carried)
            elif self.cell == "lstm":
                i, f, g, o = (given + carried).chunk(4, dim=-1)
                c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                h = o.sigmoid() * c.tanh()
            else:  # gru: reset r and update z gates, then the candidate state n
                r, z = (given[:, :2 * self.width] + carried[:, :2 * self.width]).sigmoid().chunk(2, dim=-1)
                n = (given[:, 2 * self.width:] + r * carried[:, 2 * self.width:]).tanh()
                h = (1 - z) * n + z * h
            states.append(h)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.states(x)[-1])
