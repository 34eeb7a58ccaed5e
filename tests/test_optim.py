"""The suite's optimizers (experiments.optim) against torch.optim's, step by step; a grid of rates
in one optimizer against each rate alone; the cosine schedule against torch's."""

import pytest
import torch

from experiments.config import OPTIMIZER_SETTINGS as SETTINGS
from experiments.optim import Optimizer, cosine_factor

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
         "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta}
CASES = [("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
         ("adam", {}), ("adam", {"weight_decay": 1e-2}), ("adamw", {}), ("adamw", {"weight_decay": 1e-2}),
         ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "weight_decay": 1e-3}),
         ("adagrad", {}), ("adagrad", {"weight_decay": 1e-3}), ("adadelta", {}), ("adadelta", {"weight_decay": 1e-3})]
SHAPES = ((3, 4, 5), (3, 5))  # a weight and a bias of three stacked models


def start() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def train(optimizer, params: list[torch.Tensor], model: int | None = None, steps: int = 25) -> list[torch.Tensor]:
    """`steps` updates, each from gradients that change from step to step and are the same for
    every optimizer: of the three stacked models, or of one of them (`model`)."""
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        for param, shape in zip(params, SHAPES):
            grad = torch.randn(shape, generator=generator)
            param.grad = grad if model is None else grad[model]
        optimizer.step()
    return [param.detach() for param in params]


def test_the_cases_cover_every_optimizer_and_setting():
    assert {name for name, _ in CASES} == set(SETTINGS) == set(TORCH)
    for name, keys in SETTINGS.items():
        assert {key for case, settings in CASES if case == name for key in settings} == set(keys)


@pytest.mark.parametrize("name,settings", CASES)
def test_each_rule_is_bit_for_bit_torch_optims(name, settings):
    lr = 1.0 if name == "adadelta" else 0.01
    params = [param.requires_grad_() for param in start()]
    # foreach=False: torch.optim's single-tensor code, the one written out (its CPU default too)
    theirs = train(TORCH[name](params, lr=lr, foreach=False, **{"weight_decay": 0.0, **settings}), params)
    mine = start()
    ours = train(Optimizer(name, mine, lr, **settings), mine)
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine, reference), f"{name} {settings} differs from torch.optim"


@pytest.mark.parametrize("name,settings", CASES)
def test_a_grid_of_rates_in_one_optimizer_is_each_rate_alone(name, settings):
    rates = [0.3, 0.01, 0.001] if name != "adadelta" else [1.0, 0.3, 0.1]
    params = start()
    stacked = train(Optimizer(name, params, torch.tensor(rates, dtype=torch.float64), **settings), params)
    for model, rate in enumerate(rates):
        single_params = [param[model].clone() for param in start()]
        alone = train(Optimizer(name, single_params, rate, **settings), single_params, model)
        for together, single in zip(stacked, alone):
            torch.testing.assert_close(together[model], single, rtol=1e-5, atol=1e-7)


def test_a_grid_of_rates_records_each_models_step_size():
    rates = torch.tensor([0.1, 0.01], dtype=torch.float64)
    optimizer = Optimizer("adagrad", [torch.zeros(2, 3)], rates)
    optimizer.params[0].grad = torch.full((2, 3), 2.0)
    optimizer.step()
    # Adagrad after one gradient of 2: rate / (sqrt(4) + eps)
    torch.testing.assert_close(optimizer.step_sizes()[0], (rates / 2).float()[:, None].expand(2, 3))


def test_cosine_factor_is_torchs_cosine_annealing():
    epochs, lr = 7, 0.1
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(1, epochs + 1):
        optimizer.step()
        schedule.step()
        assert lr * cosine_factor(epoch, epochs) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-15)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        Optimizer("lbfgs", start(), 0.1)


@pytest.mark.parametrize("name,settings", CASES)
def test_a_capturable_optimizer_takes_the_same_steps(name, settings):
    """Rate, schedule and step count as device tensors (what a CUDA graph replays) change no step
    beyond rounding, for one rate and for a grid, and the schedule reaches a captured step."""
    for lr in (0.01, torch.tensor([0.3, 0.01, 0.001], dtype=torch.float64)):
        lr = lr * 100 if name == "adadelta" else lr
        results = []
        for capturable in (False, True):
            params = start()
            optimizer = Optimizer(name, params, lr, capturable=capturable, **settings)
            train(optimizer, params, steps=10)
            optimizer.set_scale(0.5)
            results.append(train(optimizer, params, steps=10))
        for host, device in zip(*results):
            torch.testing.assert_close(device, host, rtol=1e-5, atol=1e-6)
