import math

import pytest
import torch

from helpers import runs_of
from models import MaxoutMLP, build_model, conv_parameter_count, maxout_parameter_count, mlp_parameter_count, receptive_field
from models.maxout import Maxout


def model_cfg(**overrides):
    cfg = {"arch": "mlp", "depth": 3, "width": 500, "activation": "sigmoid", "init": "glorot_uniform", "dropout": 0.0, "residual": False, "pieces": 2, "batch_norm": False}
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
    for layer in model.weight_layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uses the whole range, not PyTorch's narrower one
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_default_init_keeps_nonzero_biases():
    model = build_model(model_cfg(init="torch_default"), 784, 10)
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in model.weight_layers)


def test_activation_and_depth_shape_the_network():
    relu = build_model(model_cfg(depth=9, activation="relu"), 784, 10)
    assert len(relu.weight_layers) == 10
    assert sum(isinstance(m, torch.nn.ReLU) for m in relu.modules()) == 9
    assert relu(torch.rand(4, 784)).shape == (4, 10)


def test_dropout_layers_only_when_asked():
    assert not any(isinstance(m, torch.nn.Dropout) for m in build_model(model_cfg(), 784, 10).modules())
    dropped = build_model(model_cfg(dropout=0.5), 784, 10)
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.modules()) == 3


@pytest.mark.parametrize("depth", [8, 20])
def test_conv_nets_count_their_layers_and_plain_and_residual_share_parameters(depth):
    plain = build_model(model_cfg(arch="rescnn", depth=depth, width=4, init="he"), 784, 10)
    residual = build_model(model_cfg(arch="rescnn", depth=depth, width=4, init="he", residual=True), 784, 10)
    assert len(plain.weight_layers) == depth  # stem + 2 convs per block + output layer
    assert [p.shape for p in plain.parameters()] == [p.shape for p in residual.parameters()]
    # three stages: width, 2 x width, 4 x width channels; the last stage at 7 x 7
    assert [b.branch[0].out_channels for b in plain.blocks] == sorted([4, 8, 16] * ((depth - 2) // 6))
    residual.load_state_dict(plain.state_dict())
    x = torch.rand(3, 784)
    assert plain(x).shape == residual(x).shape == (3, 10)
    assert not torch.allclose(plain.eval()(x), residual.eval()(x))  # the shortcuts change the function


def test_deleting_any_conv_block_keeps_the_shapes_and_its_shortcut():
    net = build_model(model_cfg(arch="rescnn", depth=14, width=4, init="he", residual=True), 784, 10).eval()
    x = torch.rand(2, 784)
    full = net(x)
    for block in range(len(net.blocks)):  # including the two that halve the resolution
        net.skipped = {block}
        assert net(x).shape == (2, 10) and not torch.allclose(net(x), full)
    # a downsampling shortcut subsamples and pads the new channels with zeros (option A)
    down = net.blocks[2]
    y = torch.rand(2, 4, 28, 28)
    assert torch.equal(down.shortcut(y)[:, :4], y[:, :, ::2, ::2]) and not down.shortcut(y)[:, 4:].any()


def test_conv_net_rejects_a_depth_outside_6n_plus_2():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        build_model(model_cfg(arch="rescnn", depth=10, width=4), 784, 10)


def test_a_maxout_unit_with_one_piece_fixed_at_zero_is_a_relu():
    torch.manual_seed(0)
    unit = Maxout(fan_in=20, width=7, pieces=2)
    with torch.no_grad():
        w = unit.linear.weight.view(7, 2, 20)  # rows are (unit, piece) pairs: piece 1 of each unit at zero
        w[:, 1].zero_()
        unit.linear.bias.view(7, 2)[:, 1].zero_()
        x = torch.randn(50, 20)
        relu = torch.relu(x @ w[:, 0].T + unit.linear.bias.view(7, 2)[:, 0])
        assert torch.allclose(unit(x), relu, atol=1e-6)  # two matmul paths round differently


def test_maxout_nets_count_their_parameters_and_match_the_relu_net():
    net = MaxoutMLP(784, 10, depth=3, width=30, pieces=3)
    assert sum(p.numel() for p in net.parameters()) == maxout_parameter_count(784, 3, 30, 3, 10)
    runs = runs_of("name=maxout")
    relu = mlp_parameter_count(784, 3, 500, 10)
    for variant in ("maxout_2", "maxout_3"):
        model = runs[f"{variant}_lr0.1"]["model"]
        built = build_model(model, 784, 10)
        assert isinstance(built, MaxoutMLP) and built.net[0].pieces == model["pieces"]
        assert abs(maxout_parameter_count(784, 3, model["width"], model["pieces"], 10) - relu) / relu < 0.005
    with pytest.raises(ValueError, match="pieces"):
        MaxoutMLP(784, 10, depth=1, width=4, pieces=0)


def test_batch_norm_sits_before_each_hidden_activation_and_replaces_the_bias():
    net = build_model(model_cfg(depth=3, width=100, batch_norm=True), 784, 10)
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Linear", "BatchNorm1d", "Sigmoid"] * 3 + ["Linear"]
    assert all(layer.bias is None for layer in net.weight_layers[:-1]) and net.weight_layers[-1].bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in build_model(model_cfg(), 784, 10).modules())


def cnn(**changes):
    return build_model({"arch": "cnn", "kernels": [3, 3], "channels": [32, 64], "pool": 2, "width": 128,
                        "activation": "relu", "init": "he", "conv_dropout": 0.25, "dropout": 0.5, **changes}, 784, 10)


def test_the_default_cnn_is_the_keras_mnist_cnn():
    model = cnn()
    assert sum(p.numel() for p in model.parameters()) == 1_199_882  # Keras' model.summary() of mnist_cnn.py
    assert [type(m).__name__ for m in model.convs] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]
    assert [type(m).__name__ for m in model.head] == ["MaxPool2d", "Dropout", "Flatten", "Linear", "ReLU", "Dropout",
                                                      "Linear"]
    assert model.head[1].p == 0.25 and model.head[5].p == 0.5
    assert model(torch.rand(3, 784)).shape == (3, 10)
    assert len(model.weight_layers) == 4


@pytest.mark.parametrize("kernels", [[3], [3, 3], [3, 5], [3, 3, 3], [3, 7], [3, 3, 3, 3], [5, 1, 3]])
def test_the_receptive_field_measured_through_the_layers_matches_the_formula(kernels):
    model = cnn(kernels=kernels, channels=[4] * len(kernels))
    assert model.measured_receptive_field() == receptive_field(kernels) == 1 + sum(k - 1 for k in kernels)
    assert sum(p.numel() for m in model.convs for p in m.parameters()) == conv_parameter_count(kernels, [4] * len(kernels))


def test_stacked_3x3_convolutions_have_the_lectures_parameter_ratios():
    c = 64  # weights of the block alone (C -> C), from the real modules: 18C² vs 25C², 27C² vs 49C²
    def weights(kernels):
        return sum(torch.nn.Conv2d(c, c, k, bias=False).weight.numel() for k in kernels)
    assert (weights([3, 3]), weights([5])) == (18 * c * c, 25 * c * c)
    assert (weights([3, 3, 3]), weights([7])) == (27 * c * c, 49 * c * c)


def test_a_cnn_rejects_shapes_it_cannot_build():
    for changes in ({"kernels": [3, 3], "channels": [8]}, {"kernels": [], "channels": []}, {"kernels": [29], "channels": [8]}):
        with pytest.raises(ValueError):
            cnn(**changes)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_recurrent_cells_compute_what_pytorchs_modules_compute(cell):
    from models import RNN

    torch.manual_seed(0)
    ours = RNN(2, 1, cell=cell, width=8, activation="tanh", init="torch_default")
    theirs = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](2, 8, batch_first=True)
    with torch.no_grad():  # same weights; our recurrent layer has no bias, so theirs gets zeros
        theirs.weight_ih_l0.copy_(ours.input.weight)
        theirs.bias_ih_l0.copy_(ours.input.bias)
        theirs.weight_hh_l0.copy_(ours.recurrent.weight)
        theirs.bias_hh_l0.zero_()
    x = torch.rand(4, 12, 2)
    expected, _ = theirs(x)
    assert torch.allclose(torch.stack(ours.states(x), dim=1), expected, atol=1e-6)
    assert ours(x).shape == (4, 1)


def test_the_irnn_starts_from_the_identity_and_the_lstm_from_remembering():
    from models import RNN

    irnn = RNN(2, 1, cell="rnn", width=6, activation="relu", init="identity")
    assert torch.equal(irnn.recurrent.weight, torch.eye(6)) and irnn.input.weight.std() < 0.01
    lstm = RNN(2, 1, cell="lstm", width=6)
    assert torch.all(lstm.input.bias[6:12] == 1.0)  # the forget gate's block
    # a GRU has three blocks of weights to the LSTM's four: fewer parameters at the same width
    gru = RNN(2, 1, cell="gru", width=6)
    assert sum(p.numel() for p in gru.parameters()) < sum(p.numel() for p in lstm.parameters())
    with pytest.raises(ValueError, match="identity"):
        RNN(2, 1, cell="lstm", width=6, init="identity")
