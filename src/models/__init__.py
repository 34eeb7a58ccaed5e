"""Model zoo: `build_model` turns a plain `model:` config dict into a module whose `.weight_layers`
lists its weight layers in input-to-output order (used for per-layer gradient norms)."""

from __future__ import annotations

from torch import nn

from models.cnn import CNN, conv_parameter_count, receptive_field
from models.maxout import MaxoutMLP, maxout_parameter_count
from models.mlp import MLP, mlp_parameter_count
from models.rescnn import ResidualCNN
from models.resmlp import ResidualMLP
from models.rnn import RNN

__all__ = ["CNN", "MLP", "MaxoutMLP", "RNN", "ResidualCNN", "ResidualMLP", "build_model", "conv_parameter_count",
           "maxout_parameter_count", "mlp_parameter_count", "receptive_field"]

ARCHITECTURES = ("mlp", "maxout", "resmlp", "rescnn", "cnn", "rnn")  # the values model.arch can take


def build_model(model: dict, in_features: int, out_features: int) -> nn.Module:
    if model["arch"] == "mlp":
        return MLP(in_features, out_features, depth=model["depth"], width=model["width"],
                   activation=model["activation"], init=model["init"], dropout=model["dropout"],
                   batch_norm=model["batch_norm"])
    if model["arch"] == "maxout":
        return MaxoutMLP(in_features, out_features, depth=model["depth"], width=model["width"], pieces=model["pieces"],
                         init=model["init"], dropout=model["dropout"])
    if model["arch"] == "resmlp":
        return ResidualMLP(in_features, out_features, depth=model["depth"], width=model["width"],
                           residual=model["residual"], init=model["init"])
    if model["arch"] == "rescnn":
        return ResidualCNN(in_features, out_features, depth=model["depth"], width=model["width"],
                           residual=model["residual"], init=model["init"])
    if model["arch"] == "cnn":
        return CNN(in_features, out_features, kernels=model["kernels"], channels=model["channels"], width=model["width"],
                   pool=model["pool"], activation=model["activation"], init=model["init"],
                   conv_dropout=model["conv_dropout"], dropout=model["dropout"])
    if model["arch"] == "rnn":
        return RNN(in_features, out_features, cell=model["cell"], width=model["width"], activation=model["activation"],
                   init=model["init"], recurrent_gain=model["recurrent_gain"])
    raise ValueError(f"unknown model.arch {model['arch']!r} (known: {', '.join(ARCHITECTURES)})")
