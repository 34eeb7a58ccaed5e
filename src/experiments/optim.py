"""The optimizers, written out: the update rules of torch.optim's SGD, Adam, AdamW, RMSprop, Adagrad
and Adadelta (their single-tensor code, with torch.optim's defaults for every setting the suite does
not expose; weight decay is always given: 0 unless set), over parameters whose first
dimension may be the model of a vectorised stack, each model at its own learning rate.

Written here rather than taken from torch.optim for two reasons: building a torch.optim optimizer
imports torch's compiler (torch._dynamo), about 1.3 s of every command on a 2-core CPU; and a grid of
rates trained as one stack needs each model's rate inside the update, where torch.optim takes one
number. tests/test_optim.py checks every rule against torch.optim, step by step."""

from __future__ import annotations

import math

import torch

from experiments.config import OPTIMIZER_SETTINGS

# torch.optim's defaults for the settings the suite does not expose
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
ADAGRAD_EPS = 1e-10
ADADELTA_RHO, ADADELTA_EPS = 0.9, 1e-6


class Optimizer:
    """One optimizer over `params`. `lr` is one rate, or a tensor of one rate per model (the first
    dimension of every parameter); `scale` multiplies it (a schedule sets it each epoch).
    `capturable`: every number a step reads (rate, schedule, step count) lives on the device, so
    that a step captured once in a CUDA graph replays right; otherwise they are Python numbers, as
    in torch.optim's default code."""

    def __init__(self, name: str, params: list[torch.Tensor], lr: float | torch.Tensor, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, capturable: bool = False):
        if name not in OPTIMIZER_SETTINGS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_SETTINGS)}")
        self.name, self.params, self.lr = name, list(params), lr
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.scale = 1.0
        self.steps = 0  # on the host: a captured step's replays leave it at the count when it was captured
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self.capturable = capturable
        self._rates = None  # rates(), kept until the schedule changes the factor
        if capturable:
            device = self.params[0].device
            self.lr = torch.as_tensor(lr, dtype=torch.float64).to(device)
            self.device_scale = torch.ones((), dtype=torch.float64, device=device)
            self.device_steps = torch.zeros((), dtype=torch.float64, device=device)

    def set_scale(self, factor: float) -> None:
        """The factor on the rate from the next step on (a schedule's)."""
        self.scale, self._rates = factor, None
        if self.capturable:
            self.device_scale.fill_(factor)

    def step_count(self) -> int | torch.Tensor:
        """Steps taken, this one included: Adam's bias correction reads it."""
        return self.device_steps if self.capturable else self.steps

    def rates(self) -> list[float | torch.Tensor]:
        """Per parameter, the rate of this step: one number, or one per model shaped to broadcast
        over the parameter. Capturable, made in the step from the device's numbers; otherwise made
        once per schedule factor, not at every step."""
        if self.capturable:
            return self._shaped(self.lr * self.device_scale)
        if self._rates is None:
            self._rates = self._shaped(self.lr * self.scale)
        return self._rates

    def _shaped(self, lr: float | torch.Tensor) -> list[float | torch.Tensor]:
        if not isinstance(lr, torch.Tensor):
            return [lr] * len(self.params)
        lr = lr.to(self.params[0].dtype)
        return [lr.view(-1, *[1] * (param.dim() - 1)) if param.dim() else lr.view(()) for param in self.params]

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        if self.capturable:
            self.device_steps += 1
        live = [(param, state, lr) for param, state, lr in zip(self.params, self.state, self.rates())
                if param.grad is not None]
        if self.name == "sgd":
            self._sgd(*map(list, zip(*live)))
            return
        update = getattr(self, f"_{self.name}")
        for param, state, lr in live:
            grad = param.grad
            if self.weight_decay != 0 and self.name != "adamw":  # L2: added to the gradient
                grad = grad.add(param, alpha=self.weight_decay)
            update(param, grad, state, lr)

    @staticmethod
    def _descend(param: torch.Tensor, direction: torch.Tensor, lr: float | torch.Tensor) -> None:
        if isinstance(lr, torch.Tensor):
            param.addcmul_(direction, lr, value=-1)
        else:
            param.add_(direction, alpha=-lr)

    @staticmethod
    def _descend_by_ratio(param: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                          lr: float | torch.Tensor) -> None:
        """param -= lr * numerator / denominator."""
        if isinstance(lr, torch.Tensor):
            param.addcdiv_(numerator * lr, denominator, value=-1)
        else:
            param.addcdiv_(numerator, denominator, value=-lr)

    def _sgd(self, params: list[torch.Tensor], states: list[dict], rates: list) -> None:
        """SGD on every parameter at once with torch's multi-tensor (foreach) ops, as torch.optim
        does on a GPU: there one launch per operation for all parameters, not one per parameter
        (SGD trains most studies); on a CPU the same per-tensor arithmetic as the single-tensor code."""
        grads = [param.grad for param in params]
        if self.weight_decay != 0:  # L2: added to the gradient
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum != 0:
            first = "momentum_buffer" not in states[0]
            if first:  # the buffers start as the gradients
                for state, grad in zip(states, grads):
                    state["momentum_buffer"] = grad.detach().clone()
            bufs = [state["momentum_buffer"] for state in states]
            if not first:
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, grads)
            grads = torch._foreach_add(grads, bufs, alpha=self.momentum) if self.nesterov else bufs
        if isinstance(rates[0], torch.Tensor):
            torch._foreach_addcmul_(params, grads, rates, value=-1)
        else:
            torch._foreach_add_(params, grads, alpha=-rates[0])

    def _adam(self, param, grad, state, lr) -> None:
        beta1, beta2 = ADAM_BETAS
        if not state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(param), torch.zeros_like(param)
        if self.name == "adamw" and self.weight_decay:  # decoupled weight decay: shrinks the weights, not the gradient
            param.mul_(1 - lr * self.weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        steps = self.step_count()
        bias_correction1, bias_correction2 = 1 - beta1 ** steps, 1 - beta2 ** steps
        denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(ADAM_EPS)
        self._descend_by_ratio(param, exp_avg, denom, lr / bias_correction1)

    _adamw = _adam

    def _rmsprop(self, param, grad, state, lr) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(param)
            if self.momentum > 0:
                state["momentum_buffer"] = torch.zeros_like(param)
        square_avg = state["square_avg"]
        square_avg.mul_(RMSPROP_ALPHA).addcmul_(grad, grad, value=1 - RMSPROP_ALPHA)
        avg = square_avg.sqrt().add_(RMSPROP_EPS)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(self.momentum).addcdiv_(grad, avg)
            self._descend(param, buf, lr)
        else:
            self._descend_by_ratio(param, grad, avg, lr)

    def _adagrad(self, param, grad, state, lr) -> None:
        if not state:
            state["sum"] = torch.zeros_like(param)
        state["sum"].addcmul_(grad, grad, value=1)
        self._descend_by_ratio(param, grad, state["sum"].sqrt().add_(ADAGRAD_EPS), lr)

    def _adadelta(self, param, grad, state, lr) -> None:
        if not state:
            state["square_avg"], state["acc_delta"] = torch.zeros_like(param), torch.zeros_like(param)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg.mul_(ADADELTA_RHO).addcmul_(grad, grad, value=1 - ADADELTA_RHO)
        std = square_avg.add(ADADELTA_EPS).sqrt_()
        delta = acc_delta.add(ADADELTA_EPS).sqrt_().div_(std).mul_(grad)
        acc_delta.mul_(ADADELTA_RHO).addcmul_(delta, delta, value=1 - ADADELTA_RHO)
        self._descend(param, delta, lr)

    @torch.no_grad()
    def step_sizes(self) -> list[torch.Tensor]:
        """Per parameter of an adaptive optimizer that has taken a step, the step it applies per
        unit gradient: rate / (sqrt(v) + eps) for Adagrad, RMSprop and Adam (v bias-corrected for
        Adam), rate * sqrt(delta + eps) / sqrt(v + eps) for Adadelta."""
        assert self.name != "sgd" and self.steps, "SGD's step per unit gradient is its rate"
        sizes = []
        for state, lr in zip(self.state, self.rates()):
            if self.name == "adadelta":
                sizes.append(lr * (state["acc_delta"] + ADADELTA_EPS).sqrt() / (state["square_avg"] + ADADELTA_EPS).sqrt())
            elif self.name in ("adam", "adamw"):
                v = state["exp_avg_sq"] / (1 - ADAM_BETAS[1] ** self.step_count())
                sizes.append(lr / (v.sqrt() + ADAM_EPS))
            else:
                v, eps = (state["sum"], ADAGRAD_EPS) if self.name == "adagrad" else (state["square_avg"], RMSPROP_EPS)
                sizes.append(lr / (v.sqrt() + eps))
        return sizes


def cosine_factor(epoch: int, epochs: int) -> float:
    """The rate's factor after `epoch` of `epochs` under a half-cosine decay to 0 (torch.optim's
    CosineAnnealingLR with eta_min 0, in closed form)."""
    return (1 + math.cos(math.pi * epoch / epochs)) / 2
