"""The training loop: data already on the device, batches drawn by index, the seeds of a variant
trained side by side as a stack: one plain module per seed, or all seeds as one vectorised model."""

from __future__ import annotations

import copy
import math
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from experiments.augment import augment
from experiments.data import N_CLASSES, Split
from experiments.errors import UserError
from experiments.config import OPTIMIZER_SETTINGS
from experiments.optim import Optimizer, cosine_factor
from models import build_model

# Losses take logits (seeds, batch, classes) and targets (seeds, batch) and return one mean per seed.


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)


def mse_on_softmax(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Keras' `mse` with a softmax output: mean over classes and samples of (p - one_hot)^2
    return (logits.softmax(-1) - F.one_hot(y, N_CLASSES).to(logits.dtype)).square().mean((1, 2))


def squared_error(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # regression of a 1-D function: one output (seeds, batch, 1) against the value (seeds, batch)
    return (outputs.squeeze(-1) - y).square().mean(1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": cross_entropy,
    "mse": mse_on_softmax,
    "squared_error": squared_error,
}


def hits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions per seed; NaN for a regression target, which has no class to hit."""
    if y.is_floating_point():
        return torch.full(y.shape[:1], math.nan, device=y.device)
    return (logits.argmax(dim=-1) == y).sum(dim=1)


class ModelStack:
    """The models of several seeds, trained side by side. Plain: one module, called as it is.
    Vectorised: the seeds' parameters stacked and the module vmapped over them, so each layer is
    one batched kernel for all seeds — what fills a GPU with the lectures' small nets."""

    def __init__(self, models: list[torch.nn.Module], vectorise: bool):
        self.models, self.size = models, len(models)
        self.vectorised = vectorise
        if not vectorise:
            assert self.size == 1, "the plain path trains one seed at a time"
            self.weights = [layer.weight for layer in models[0].weight_layers]
            return
        self.params, self.buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")  # the code of the module, no weights

        def call(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        self._per_seed_input = vmap(call, randomness="different")  # each seed its own batch
        self._shared_input = vmap(call, in_dims=(0, 0, None), randomness="different")
        names = {id(module): name for name, module in models[0].named_modules()}
        self.weights = [self.params[f"{names[id(layer)]}.weight"] for layer in models[0].weight_layers]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values()) if self.vectorised else list(self.models[0].parameters())

    def train(self, mode: bool = True) -> None:
        (self.base if self.vectorised else self.models[0]).train(mode)

    def __call__(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Logits (seeds, batch, classes) of inputs (seeds, batch, features), or (batch, features) if shared."""
        if self.vectorised:
            return (self._shared_input if shared else self._per_seed_input)(self.params, self.buffers, x)
        return self.models[0](x if shared else x[0]).unsqueeze(0)

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Rescale each seed's whole gradient (every parameter together) to an L2 norm of at most
        max_norm; returns each seed's norm before, (seeds,)."""
        if not self.vectorised:
            return torch.nn.utils.clip_grad_norm_(self.models[0].parameters(), max_norm).reshape(1)
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()  # (seeds,)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))
        return norms

    def grad_norms(self) -> torch.Tensor:
        """L2 norm of each weight layer's gradient, (seeds, layers), input layer first."""
        if self.vectorised:
            return torch.stack([w.grad.flatten(1).norm(dim=1) for w in self.weights], dim=1)
        return torch.stack([w.grad.norm() for w in self.weights]).unsqueeze(0)

    @torch.no_grad()
    def unstack(self) -> list[torch.nn.Module]:
        """The per-seed modules, holding the trained values."""
        if self.vectorised:
            for i, model in enumerate(self.models):
                for name, tensor in (*model.named_parameters(), *model.named_buffers()):
                    tensor.copy_((self.params if name in self.params else self.buffers)[name][i])
        return self.models


def build_optimizer(opt: dict, params: list[torch.Tensor], lr: float | torch.Tensor, capturable: bool) -> Optimizer:
    """The optimizer `opt` names over `params`, at `lr`: one rate, or a tensor of one per model."""
    return Optimizer(opt["name"], params, lr, capturable=capturable, **{key: opt[key] for key in OPTIMIZER_SETTINGS[opt["name"]]})


AUGMENT_SEED_OFFSET = 10_007  # augmentation's generator of seed k starts from k + this


# Per-layer gradient norms are averaged over every 10th step of an epoch: every step would cost
# ~8% of the training time of the lecture's 9x500 net on a CPU, for the same picture.
GRAD_NORM_EVERY = 10


@torch.no_grad()
def effective_lr(optimizer: Optimizer, stack: ModelStack) -> torch.Tensor:
    """Per seed (float64, on the device), the median over all weights of the step size the optimizer
    applies per unit gradient (Optimizer.step_sizes, float32 values); SGD's, and any before the first
    step: its rate as set. Shows Adagrad's rate shrinking."""
    device = stack.parameters()[0].device
    if optimizer.name == "sgd" or not optimizer.steps:
        rate = optimizer.lr * optimizer.scale  # the rate as set, not rounded to float32
        if isinstance(rate, torch.Tensor):  # one per model, or (a capturable optimizer's) one for all
            return rate.to(device, torch.float64).expand(stack.size)
        # made on the device, as a copy from the host would wait for it
        return torch.full((stack.size,), float(rate), dtype=torch.float64, device=device)
    per_seed = [size if stack.vectorised else size.unsqueeze(0) for size in optimizer.step_sizes()]  # (seeds, ...)
    return torch.cat([size.flatten(1) for size in per_seed], dim=1).median(dim=1).values


class StaticStep:
    """A training step captured once in a CUDA graph and replayed: one launch a step instead of one
    a kernel, which is what a small net's step costs on a GPU. Each batch's indices are copied into
    one index tensor that the step reads, and the step adds to running sums that live across epochs.
    On CUDA the first WARMUP calls run eagerly on a side stream, as PyTorch's CUDA-graph notes ask
    (they are real training steps), the next captures the step and replays it, and every later call
    replays it. On a CPU each call runs the step eagerly: the path the tests compare with the loop's."""

    WARMUP = 3

    def __init__(self, step: Callable[[torch.Tensor], None], batch_shape: tuple[int, int], device: torch.device):
        self.step, self.device = step, device
        self.idx = torch.zeros(batch_shape, dtype=torch.long, device=device)
        self.graph, self.calls = None, 0

    def __call__(self, idx: torch.Tensor) -> None:
        self.idx.copy_(idx)
        self.calls += 1
        if self.device.type != "cuda":
            self.step(self.idx)
            return
        with torch.cuda.device(self.device):
            if self.calls <= self.WARMUP:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self.step(self.idx)
                torch.cuda.current_stream().wait_stream(side)
                return
            if self.graph is None:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.step(self.idx)
            self.graph.replay()


class EpochClock:
    """The seconds an epoch's training took, read after the epoch's host sync without adding one:
    CUDA events on a GPU (whose work runs ahead of the host, so the wall clock would need a sync of
    its own), the wall clock on a CPU (whose work is done when the call returns)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:  # on the training device's stream (not the current device's, if that is another GPU)
            self.stream = torch.cuda.current_stream(device)
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record(self.stream)
        else:
            self.started = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self.end.record(self.stream)
        else:
            self.stopped = time.perf_counter()

    def seconds(self) -> float:
        return self.start.elapsed_time(self.end) / 1000 if self.cuda else self.stopped - self.started


@dataclass
class RunResult:
    model: torch.nn.Module
    parameters: int
    rows: list[dict] = field(default_factory=list)  # one per epoch; epoch 0 is the initialisation
    status: str = "complete"  # or "diverged"
    diverged_epoch: int | None = None


@torch.no_grad()
def evaluate(stack: ModelStack, split: Split, loss_fn, batch_size: int) -> torch.Tensor:
    """Per seed, mean loss and accuracy over a split, (2, seeds), left on the device (no host sync)."""
    stack.train(False)
    loss_sum = torch.zeros(stack.size, device=split.x.device)
    correct = torch.zeros(stack.size, device=split.x.device)
    for start in range(0, len(split), batch_size):
        x, y = split.x[start:start + batch_size], split.y[start:start + batch_size].expand(stack.size, -1)
        logits = stack(x, shared=True)
        loss_sum += loss_fn(logits, y) * y.shape[1]
        correct += hits(logits, y)
    return torch.stack([loss_sum, correct]) / len(split)


def train_run(cfg: dict, splits: dict[str, Split], seed: int,
              on_epoch: Callable[[dict], None] = lambda row: None, step_sizes: bool = False) -> RunResult:
    """Train one model under `cfg` (a plain, resolved run config) and return its per-epoch rows."""
    return train_seeds(cfg, splits, [seed], vectorise=False, on_epoch=lambda i, row: on_epoch(row),
                       step_sizes=step_sizes)[0]


def train_seeds(cfg: dict, splits: dict[str, Split], seeds: list[int], vectorise: bool,
                on_epoch: Callable[[int, dict], None] = lambda i, row: None, step_sizes: bool = False,
                lrs: list[float] | None = None) -> list[RunResult]:
    """Train one model per seed under `cfg`, side by side (vectorised) or a single seed (plain);
    `on_epoch(i, row)` sees each seed's rows as they come. `lrs`, one per seed, gives each model its
    own learning rate (a vectorised grid: the same seed may then appear once per rate). A seed whose
    loss turns non-finite is recorded as diverged and leaves the stack's bookkeeping; the others go
    on. With `step_sizes`, each row also records the optimizer's `effective_lr` (a median over every
    weight: opt-in)."""
    train, device = splits["train"], splits["train"].x.device
    if device.type == "cpu":
        # a saturated net's activations and gradients fall below float32's normal range (1.2e-38), where
        # x86 arithmetic takes a slow path: a stalled sigmoid net trained 8x slower. Flushed to zero: of 31
        # optimizers runs compared with the flush on and off on one machine (learning and stalled), every
        # accuracy and loss was bit-identical; only stalled nets' gradient norms moved, by under 1e-17.
        torch.set_flush_denormal(True)
    lrs = [cfg["optimizer"]["lr"]] * len(seeds) if lrs is None else lrs
    assert len(lrs) == len(seeds), "one learning rate per model"
    models = []
    for seed in seeds:
        torch.manual_seed(seed)  # the initial weights (and, plain, the dropout masks) follow the seed
        models.append(build_model(cfg["model"], *train.shape).to(device))
    # one rate for all, or a tensor of each model's own (float64: the rates as set, each step rounds its copy)
    rates = torch.tensor(lrs, dtype=torch.float64, device=device) if len(set(lrs)) > 1 else None
    assert rates is None or vectorise, "models at different rates train side by side (vectorised)"
    stack = ModelStack(models, vectorise)
    optimizer = build_optimizer(cfg["optimizer"], stack.parameters(), lrs[0] if rates is None else rates,
                                capturable=cfg["train"]["cuda_graph"])
    loss_fn = LOSSES[cfg["train"]["loss"]]
    batch_size, max_updates = cfg["train"]["batch_size"], cfg["train"]["max_updates"]
    eval_batch_size = cfg["train"]["eval_batch_size"]
    eval_every = cfg["train"]["eval_every"]
    rotate, shift = cfg["train"]["rotate_degrees"], cfg["train"]["shift_pixels"]
    # augmentation draws on the CPU: a captured step would replay one draw (config.check_run refuses it)
    assert not (cfg["train"]["cuda_graph"] and (rotate or shift)), "a CUDA graph cannot capture augmentation"
    clip = cfg["train"]["clip_grad_norm"]
    n_steps = math.ceil(len(train) / batch_size)  # optimizer updates per full epoch
    # a cap on the updates ends training early, in the epoch that reaches it
    epochs = cfg["train"]["epochs"] if max_updates is None else min(cfg["train"]["epochs"], math.ceil(max_updates / n_steps))
    shufflers = [torch.Generator().manual_seed(seed) for seed in seeds]  # CPU generators: same order on every device
    # augmentation draws from generators of its own, so that augmented and plain variants of a seed
    # keep the same data order
    augmenters = [torch.Generator().manual_seed(seed + AUGMENT_SEED_OFFSET) for seed in seeds]
    results = [RunResult(model=model, parameters=sum(p.numel() for p in model.parameters())) for model in models]
    active = list(range(len(seeds)))  # seeds that have not diverged
    cosine = cfg["optimizer"]["schedule"] == "cosine"
    updates = 0
    started = time.perf_counter()
    eval_splits = {name: split for name, split in splits.items() if name != "train"}  # validation (if any), test

    def record(epoch: int, train_stats: torch.Tensor, clock: EpochClock | None) -> list[float]:
        """The epoch's rows from `train_stats`, (2 + layers [+ 1], seeds) on the device: train loss, train
        accuracy, each weight layer's gradient norm [and, with clipping, the share of steps clipped];
        `clock` timed the epoch's training (None: epoch 0).
        One host read per epoch: every number the rows need is gathered on the device first. Returns
        the train losses."""
        # the evaluations due on schedule; the trained model on its own training data, dropout off
        # and batch norm in eval mode (the running train_acc is measured while training, with
        # dropout on), once, at the end
        scheduled = epoch % eval_every == 0 or epoch == epochs
        scores = {name: evaluate(stack, split, loss_fn, eval_batch_size) for name, split in eval_splits.items()
                  if scheduled}
        if epoch == epochs:
            scores["train_eval"] = evaluate(stack, train, loss_fn, eval_batch_size)
        parts = [train_stats.to(torch.float64), *(score.to(torch.float64) for score in scores.values())]
        if step_sizes:
            parts.append(effective_lr(optimizer, stack).to(train_stats.device)[None])
        table = torch.cat(parts).tolist()  # the epoch's host sync
        epoch_seconds = clock.seconds() if clock else 0.0
        losses = table[0]
        # a model that has just diverged is evaluated once more, off schedule (a second read, only then)
        shown = [scheduled or not math.isfinite(loss) for loss in losses]
        late = {}
        if not scheduled and any(shown[i] for i in active):
            late = {name: evaluate(stack, split, loss_fn, eval_batch_size).tolist() for name, split in eval_splits.items()}
        n_layers = len(stack.weights)
        first = len(train_stats)  # the evaluations' rows follow the training statistics
        rows_of = dict(zip(scores, (table[first + 2 * k:first + 2 + 2 * k] for k in range(len(scores)))))
        rows_of.update(late)
        steps_taken = table[-1] if step_sizes else None
        for i in active:
            row = {"epoch": epoch, "updates": updates, "train_loss": losses[i], "train_acc": table[1][i]}
            for name in (*eval_splits, "train_eval"):
                score = rows_of.get(name)
                row[f"{name}_loss"], row[f"{name}_acc"] = (score[0][i], score[1][i]) if score and shown[i] else (math.nan, math.nan)
            row["epoch_seconds"] = epoch_seconds
            if steps_taken:
                row["effective_lr"] = steps_taken[i]
            row["seconds"] = time.perf_counter() - started
            row.update({f"grad_norm_{layer + 1}": table[2 + layer][i] for layer in range(n_layers)})
            if clip is not None:  # whether clipping acted at all: a clip the norm never reaches changes nothing
                row["clipped_share"] = table[2 + n_layers][i] if epoch else math.nan
            results[i].rows.append(row)
            on_epoch(i, row)
        return losses

    # Epoch 0: the untrained nets, with the gradient of one batch (vanishing gradients show here).
    stack.train()
    x0, y0 = train.x[:batch_size], train.y[:batch_size]
    x0, y0 = x0.expand(len(seeds), *x0.shape), y0.expand(len(seeds), *y0.shape)
    loss_fn(stack(x0), y0).sum().backward()
    init_norms = stack.grad_norms()
    optimizer.zero_grad()
    record(0, torch.cat([evaluate(stack, train, loss_fn, eval_batch_size), init_norms.T,
                         *([torch.zeros(1, len(seeds), device=device)] if clip is not None else [])]), None)

    n = len(train)
    # the epoch's running sums stay on the device (no host sync inside an epoch); made once, since a
    # captured step writes to the same tensors at every replay
    loss_sum = torch.zeros(len(seeds), device=device)
    correct = torch.zeros(len(seeds), device=device)
    grad_norms = torch.zeros(len(seeds), len(stack.weights), device=device)  # of the last step that measured them
    grad_norm_sum = torch.zeros_like(grad_norms)
    clipped = torch.zeros(len(seeds), device=device)  # steps whose gradient norm exceeded the clip

    def train_step(idx: torch.Tensor, measure_norms: bool) -> None:
        """One update on the batch `idx`, (seeds, batch), added to the running sums."""
        x, y = train.x[idx], train.y[idx]
        if rotate or shift:
            x = augment(x, augmenters, rotate, shift)
        logits = stack(x)
        losses = loss_fn(logits, y)
        optimizer.zero_grad()
        losses.sum().backward()  # the seeds share no weights: each gets exactly its own gradient
        if measure_norms:
            grad_norms.copy_(stack.grad_norms())  # before clipping: the size of the wall the step hit
        if clip is not None:
            clipped.add_((~(stack.clip_grad_norm(clip) <= clip)).float())  # a NaN norm (a diverging step) counts as beyond it
        optimizer.step()
        loss_sum.add_(losses.detach() * idx.shape[1])
        correct.add_(hits(logits, y))

    # a graph has no branches: a captured step measures the norms every time, and every
    # GRAD_NORM_EVERY-th step's are added, as in the eager loop
    captured = (StaticStep(lambda idx: train_step(idx, True), (len(seeds), batch_size), device)
                if cfg["train"]["cuda_graph"] else None)
    for epoch in range(1, epochs + 1):
        stack.train()
        clock = EpochClock(device)
        order = torch.stack([torch.randperm(n, generator=g) for g in shufflers]).to(device)  # (seeds, n)
        for running_sum in (loss_sum, correct, grad_norm_sum, clipped):
            running_sum.zero_()
        steps = n_steps if max_updates is None else min(n_steps, max_updates - updates)
        for step in range(steps):
            idx = order[:, step * batch_size:(step + 1) * batch_size]
            sampled = step % GRAD_NORM_EVERY == 0
            if captured is not None and idx.shape[1] == batch_size:
                captured(idx)
            else:  # a short last batch has a shape of its own: eager
                train_step(idx, sampled)
            if sampled:
                grad_norm_sum.add_(grad_norms)
        updates += steps
        if cosine:  # the rate of the next epoch
            optimizer.set_scale(cosine_factor(epoch, epochs))
        seen, n_sampled = min(n, steps * batch_size), len(range(0, steps, GRAD_NORM_EVERY))
        clock.stop()
        epoch_losses = record(epoch, torch.cat([torch.stack([loss_sum, correct]) / seen, (grad_norm_sum / n_sampled).T,
                                                *([clipped[None] / steps] if clip is not None else [])]), clock)
        for i in list(active):
            if not math.isfinite(epoch_losses[i]):
                results[i].status, results[i].diverged_epoch = "diverged", epoch
                active.remove(i)
        if not active:
            break
    stack.unstack()
    return results


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was requested but PyTorch sees no CUDA device; use device=cpu or device=auto")
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
