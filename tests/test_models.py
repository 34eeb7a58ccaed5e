import math

import pytest
import torch

from models import build_model, mlp_parameter_count


def model_cfg(**overrides):
    cfg = {"arch": "mlp", "depth": 3, "width": 500, "activation": "sigmoid", "init": "glorot_uniform", "dropout": 0.0, "residual": False}
    return {**cfg, **overrides}


@pytest.mark.parametrize("depth,width", [(1, 10), (3, 500), (9, 500), (2, 7)])
def test_parameter_count_matches_formula(depth, width):
    model = build_model(model_cfg(depth=depth, width=width), 784, 10)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == mlp_parameter_count(784, depth, width, 10)
    # the lecture's 784-500-500-500-10 net, written out by hand
    if (depth, width) == (3, 500):
        assert counted == 785 * 500 + 2 * 501 * 500 + 501 * 10 == 898510


def test_glorot_init_is_keras_like():
    model = build_model(model_cfg(depth=2, width=300), 784, 10)
    for layer in model.linears:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uses the whole range, not PyTorch's narrower one
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_default_init_keeps_nonzero_biases():
    model = build_model(model_cfg(init="torch_default"), 784, 10)
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in model.linears)


def test_activation_and_depth_shape_the_network():
    relu = build_model(model_cfg(depth=9, activation="relu"), 784, 10)
    assert len(relu.linears) == 10
    assert sum(isinstance(m, torch.nn.ReLU) for m in relu.modules()) == 9
    assert relu(torch.rand(4, 784)).shape == (4, 10)


def test_dropout_layers_only_when_asked():
    assert not any(isinstance(m, torch.nn.Dropout) for m in build_model(model_cfg(), 784, 10).modules())
    dropped = build_model(model_cfg(dropout=0.5), 784, 10)
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.modules()) == 3
