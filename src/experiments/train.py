"""The training loop: one model, one seed, data already on the device, batches drawn by index."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from experiments.data import N_CLASSES, N_FEATURES, Split
from models import build_model


def mse_on_softmax(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Keras' `mse` with a softmax output: mean over classes and samples of (p - one_hot)^2
    return F.mse_loss(logits.softmax(dim=1), F.one_hot(y, N_CLASSES).to(logits.dtype))


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "mse": mse_on_softmax,
}

OPTIMIZERS = {
    "sgd": (torch.optim.SGD, ("momentum", "nesterov", "weight_decay")),
    "adam": (torch.optim.Adam, ("weight_decay",)),
    "adamw": (torch.optim.AdamW, ("weight_decay",)),
    "rmsprop": (torch.optim.RMSprop, ("momentum", "weight_decay")),
    "adagrad": (torch.optim.Adagrad, ("weight_decay",)),
    "adadelta": (torch.optim.Adadelta, ("weight_decay",)),
}


def build_optimizer(opt: dict, params) -> torch.optim.Optimizer:
    cls, keys = OPTIMIZERS[opt["name"]]
    return cls(params, lr=opt["lr"], **{k: opt[k] for k in keys})


# Per-layer gradient norms are averaged over every 10th step of an epoch: every step would cost
# ~8% of the training time of the lecture's 9x500 net on a CPU, for the same picture.
GRAD_NORM_EVERY = 10


# Where each adaptive optimizer keeps its running average of squared gradients.
SQUARED_GRAD_STATE = {"adagrad": "sum", "rmsprop": "square_avg", "adam": "exp_avg_sq", "adamw": "exp_avg_sq"}


@torch.no_grad()
def effective_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    """Median over all weights of the step size the optimizer applies per unit gradient:
    lr for SGD, lr / (sqrt(v) + eps) for Adagrad, RMSprop and Adam (v bias-corrected for Adam),
    lr * sqrt(delta + eps) / sqrt(v + eps) for Adadelta. Shows Adagrad's rate shrinking."""
    group = optimizer.param_groups[0]
    states = [optimizer.state[p] for p in group["params"] if optimizer.state.get(p)]
    if name.startswith("sgd") or not states:
        return float(group["lr"])
    if name == "adadelta":
        steps = [group["lr"] * (st["acc_delta"] + group["eps"]).sqrt() / (st["square_avg"] + group["eps"]).sqrt()
                 for st in states]
    else:
        steps = []
        for st in states:
            v = st[SQUARED_GRAD_STATE[name]]
            if name.startswith("adam"):
                v = v / (1 - group["betas"][1] ** float(st["step"]))
            steps.append(group["lr"] / (v.sqrt() + group["eps"]))
    return torch.cat([step.flatten() for step in steps]).median().item()


@dataclass
class RunResult:
    model: torch.nn.Module
    parameters: int
    rows: list[dict] = field(default_factory=list)  # one per epoch; epoch 0 is the initialisation
    status: str = "complete"  # or "diverged"
    diverged_epoch: int | None = None


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, loss_fn, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over a split, with a single host sync."""
    model.eval()
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    for start in range(0, len(split), batch_size):
        x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
        logits = model(x)
        loss_sum += loss_fn(logits, y) * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
    loss, n_correct = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
    return loss / len(split), n_correct / len(split)


def layer_grad_norms(model: torch.nn.Module) -> torch.Tensor:
    """L2 norm of each weight layer's gradient, input layer first."""
    return torch.stack([layer.weight.grad.norm() for layer in model.linears])


def train_run(cfg: dict, splits: dict[str, Split], seed: int,
              on_epoch: Callable[[dict], None] = lambda row: None) -> RunResult:
    """Train one model under `cfg` (a plain, resolved run config) and return its per-epoch rows."""
    train, device = splits["train"], splits["train"].x.device
    torch.manual_seed(seed)  # the initial weights (and dropout masks) follow the seed
    model = build_model(cfg["model"], N_FEATURES, N_CLASSES).to(device)
    optimizer = build_optimizer(cfg["optimizer"], model.parameters())
    loss_fn = LOSSES[cfg["train"]["loss"]]
    batch_size, epochs = cfg["train"]["batch_size"], cfg["train"]["epochs"]
    eval_batch_size = cfg["train"]["eval_batch_size"]
    shuffler = torch.Generator().manual_seed(seed)  # CPU generator: same order on every device
    eval_every = cfg["train"]["eval_every"]
    n_steps = math.ceil(len(train) / batch_size)  # optimizer updates per epoch
    n_layers = len(model.linears)
    result = RunResult(model=model, parameters=sum(p.numel() for p in model.parameters()))
    started = time.perf_counter()

    def record(epoch: int, train_loss: float, train_acc: float, grad_norms: list[float],
               epoch_seconds: float) -> dict:
        row = {"epoch": epoch, "updates": epoch * n_steps, "train_loss": train_loss, "train_acc": train_acc}
        evaluated = epoch % eval_every == 0 or epoch == epochs or not math.isfinite(train_loss)
        for name, split in splits.items():
            if name != "train":
                row[f"{name}_loss"], row[f"{name}_acc"] = (
                    evaluate(model, split, loss_fn, eval_batch_size) if evaluated else (math.nan, math.nan))
        row["epoch_seconds"] = epoch_seconds
        row["effective_lr"] = effective_lr(optimizer, cfg["optimizer"]["name"])
        row["seconds"] = time.perf_counter() - started
        row.update({f"grad_norm_{i + 1}": g for i, g in enumerate(grad_norms)})
        result.rows.append(row)
        on_epoch(row)
        return row

    # Epoch 0: the untrained net, with the gradient of one batch (vanishing gradients show here).
    model.train()
    x0, y0 = train.x[:batch_size], train.y[:batch_size]
    loss0 = loss_fn(model(x0), y0)
    loss0.backward()
    init_norms = layer_grad_norms(model).tolist()
    optimizer.zero_grad(set_to_none=True)
    train_loss0, train_acc0 = evaluate(model, train, loss_fn, eval_batch_size)
    record(0, train_loss0, train_acc0, init_norms, 0.0)

    n = len(train)
    n_sampled = len(range(0, n_steps, GRAD_NORM_EVERY))
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=shuffler).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        grad_norm_sum = torch.zeros(n_layers, device=device)
        for step, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            x, y = train.x[idx], train.y[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step % GRAD_NORM_EVERY == 0:
                grad_norm_sum += layer_grad_norms(model)
            optimizer.step()
            # running sums stay on the device: no host sync inside the epoch
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(dim=1) == y).sum()
        stats = torch.cat([torch.stack([loss_sum / n, correct / n]), grad_norm_sum / n_sampled]).tolist()
        epoch_seconds = time.perf_counter() - epoch_start
        train_loss, train_acc, grad_norms = stats[0], stats[1], stats[2:]
        record(epoch, train_loss, train_acc, grad_norms, epoch_seconds)
        if not math.isfinite(train_loss):
            result.status, result.diverged_epoch = "diverged", epoch
            break
    return result
