"""Probes: measurements on a trained model beyond its learning curves. An experiment lists them in
`experiment.probes`. Each probe declares here, together, its measurement (a tidy table, stored as
runs/<variant>/seed<k>/<probe>.csv, and a few scalars, which join the run's last metrics row so that a
verdict check can use them), the names of those scalars, its figure (drawn from the tables; an
experiment lists it in `experiment.figures` under the probe's name) and what a run needs for it."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from experiments.data import FUNCTIONS, N_CLASSES, Split
from experiments.metrics import per_run
from experiments.plots import band, claim_title, colour, families, family, finish, plt, probe_figure, probe_tables
from experiments.train import LOSSES
from models import build_model
from models.mlp import ACTIVATIONS

MC_SAMPLES = 50  # thinned networks averaged, as in Srivastava et al. 2014, Fig. 11
LINE_POINTS = 41
LINE_SAMPLES = 2000
CLASSIFICATION_LOSSES = ("cross_entropy", "mse")  # loss_line draws both along its line


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def initial_model(run: dict, seed: int, splits: dict[str, Split]) -> torch.nn.Module:
    """The net train_run started from: built again under the run's seed."""
    torch.manual_seed(seed)
    return build_model(run["model"], *splits["train"].shape).to(splits["train"].x.device)


def band_figure(study: dict, study_dir: Path, probe: str, x: str, y: str, xlabel: str, ylabel: str, what: str,
                **axes_style) -> bytes | None:
    """A probe's figure of one line per variant, `y` against `x` (mean over seeds, min–max band, a marker per point)."""
    return probe_figure(study, study_dir, probe,
                        lambda ax, table, color, variant: band(ax, table, x, y, color, variant, marker="o"),
                        xlabel, ylabel, claim_title(study, what), **axes_style)


@torch.no_grad()
def mc_dropout(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test accuracy of averaging the softmax outputs of k sampled thinned networks (k = 1..50)
    against weight scaling, i.e. one pass with dropout off (PyTorch's inverted dropout)."""
    if not run["model"]["dropout"]:
        return pd.DataFrame(), {}  # without dropout every thinned network is the same network
    test = splits["test"]
    model.eval()
    scaled_acc = accuracy(model(test.x), test.y)
    torch.manual_seed(seed)
    model.train()  # dropout on: each pass samples a thinned network
    prob_sum = torch.zeros(len(test), N_CLASSES, device=test.x.device)
    rows = []
    for k in range(1, MC_SAMPLES + 1):
        prob_sum += model(test.x).softmax(1)
        rows.append({"k": k, "mc_acc": accuracy(prob_sum, test.y),
                     "weight_scaling_acc": scaled_acc})
    model.eval()
    return pd.DataFrame(rows), {f"mc{MC_SAMPLES}_acc": rows[-1]["mc_acc"], "mc1_acc": rows[0]["mc_acc"],
                                "weight_scaling_acc": scaled_acc,
                                f"mc{MC_SAMPLES}_minus_scaling_acc": rows[-1]["mc_acc"] - scaled_acc}


def plot_mc_dropout(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Test accuracy of averaging k thinned networks, against weight scaling (dashed)."""
    def draw(ax, table, color, variant):
        band(ax, table, "k", "mc_acc", color, f"{variant}: mean of k thinned nets")
        ax.axhline(table["weight_scaling_acc"].mean(), color=color, linestyle="--", linewidth=1,
                   label=f"{variant}: weight scaling")

    return probe_figure(study, study_dir, "mc_dropout", draw, "k, thinned networks averaged (Monte-Carlo dropout)",
                        "test accuracy (fraction correct)",
                        claim_title(study, "Weight scaling vs averaging k sampled thinned networks; band = min–max over seeds."))


@torch.no_grad()
def loss_line(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Both losses along the straight line from the initial weights (t = 0) to the trained ones
    (t = 1), on the first 2000 training images: where the error surface is flat, the loss barely
    changes along it."""
    start = initial_model(run, seed, splits)
    end = model
    line = build_model(run["model"], *splits["train"].shape).to(splits["train"].x.device).eval()
    x, y = splits["train"].x[:LINE_SAMPLES], splits["train"].y[:LINE_SAMPLES]
    rows = []
    for t in (round(-0.5 + 2 * i / (LINE_POINTS - 1), 6) for i in range(LINE_POINTS)):
        for p_line, p_start, p_end in zip(line.parameters(), start.parameters(), end.parameters()):
            p_line.copy_(p_start + t * (p_end - p_start))
        logits = line(x)
        rows.append({"t": t, **{name: LOSSES[name](logits[None], y[None]).item() for name in CLASSIFICATION_LOSSES}})
    return pd.DataFrame(rows), {}


def plot_loss_line(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Both losses from the initial (t=0) to the trained weights (t=1) of each variant."""
    probe = probe_tables(study, study_dir, "loss_line")
    if probe.empty:
        return None
    variants = [v for v in study["experiment"]["variants"] if v in set(probe["variant"])]
    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 4.2), squeeze=False, sharey=True)
    for ax, variant in zip(axes[0], variants):
        mine = probe[probe["variant"] == variant]
        # one axis for both losses: MSE's flat line beside cross-entropy's steep one is the point
        band(ax, mine, "t", "cross_entropy", "C1", "cross-entropy")
        band(ax, mine, "t", "mse", "C0", "MSE on softmax")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.axvline(1, color="grey", linewidth=0.8)
        ax.set(title=f"from initial (t=0) to trained weights (t=1) of '{variant}'", xlabel="t along the line",
               ylabel="loss on 2,000 training images")
    return finish(fig, list(axes[0]), claim_title(study, "Both losses along a line in weight space, on one axis; "
                                                         "band = min–max over seeds."))


@torch.no_grad()
def delete_blocks(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test accuracy with each block of a resmlp left out in turn (block -1: none left out)."""
    test = splits["test"]
    model.eval()
    rows = []
    for block in range(-1, len(model.blocks)):
        model.skipped = {block} - {-1}
        rows.append({"block": block, "test_acc": accuracy(model(test.x), test.y)})
    model.skipped = set()
    full, deleted = rows[0]["test_acc"], [row["test_acc"] for row in rows[1:]]
    return pd.DataFrame(rows), {"acc_one_block_deleted": sum(deleted) / len(deleted),
                                "min_acc_one_block_deleted": min(deleted),
                                # what deleting costs: on average over the blocks, and at the worst block
                                "drop_one_block": full - sum(deleted) / len(deleted),
                                "max_drop_one_block": full - min(deleted),
                                # the others: whether one block makes the average (resnet_ensemble's block 0)
                                "drop_one_block_but_worst": full - (sum(deleted) - min(deleted)) / (len(deleted) - 1)
                                if len(deleted) > 1 else math.nan,
                                "worst_block": deleted.index(min(deleted))}


def plot_delete_blocks(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Test accuracy after deleting each block in turn; dashed: nothing deleted."""
    def draw(ax, table, color, variant):
        band(ax, table[table["block"] >= 0], "block", "test_acc", color, f"{variant}: one block deleted", marker="o")
        ax.axhline(table.loc[table["block"] < 0, "test_acc"].mean(), color=color, linestyle="--", linewidth=1,
                   label=f"{variant}: nothing deleted")

    return probe_figure(study, study_dir, "delete_blocks", draw, "deleted block (0 = nearest the input)",
                        "test accuracy (fraction correct)",
                        claim_title(study, "Deleting one block at test time; band = min–max over seeds."),
                        ylim=(0, 1))


ACTIVATION_SAMPLES = 1000


@torch.no_grad()
def activation_scale(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """At initialisation (the weights train_run started from, rebuilt from the seed): the standard
    deviation of each hidden layer's output on 1,000 training images; log10_act_ratio compares the
    last hidden layer's with the first's (0: the scale is kept; very negative: activations vanish)."""
    start = initial_model(run, seed, splits).eval()
    x = splits["train"].x[:ACTIVATION_SAMPLES]
    rows = []
    for module in start.net:
        x = module(x)
        if type(module) in ACTIVATIONS.values():  # each hidden layer's output
            rows.append({"layer": len(rows) + 1, "act_std": x.std().item()})
    ratio = rows[-1]["act_std"] / rows[0]["act_std"]
    return pd.DataFrame(rows), {"log10_act_ratio": math.log10(ratio) if ratio > 0 else -math.inf}


def plot_activation_scale(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Standard deviation of each hidden layer's activations at initialisation, per variant."""
    return band_figure(study, study_dir, "activation_scale", "layer", "act_std", "hidden layer (1 = input side)",
                       "std of the activations at initialisation",
                       "Activations at initialisation, 1,000 training images; band = min–max over seeds.", yscale="log")


SMALL_WEIGHT = 0.01  # of the layer's RMS weight: below it a weight counts as pruned
NOISE_SIGMAS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # 1.0: the lecture's x ~ N(x, 1)


@torch.no_grad()
def noisy_test(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test accuracy with Gaussian noise of standard deviation sigma added to every pixel after
    scaling to [0, 1] (no clipping, as the lecture's demo), one seeded noise draw per sigma."""
    test = splits["test"]
    model.eval()
    noise = torch.Generator(device=test.x.device).manual_seed(seed)
    rows = [{"sigma": sigma, "test_acc": accuracy(model(test.x + sigma * torch.randn(test.x.shape, generator=noise,
                                                                                   device=test.x.device)), test.y)}
            for sigma in NOISE_SIGMAS]
    by_sigma = {row["sigma"]: row["test_acc"] for row in rows}
    return pd.DataFrame(rows), {"noisy_test_acc": by_sigma[1.0], "noise_drop": by_sigma[0.0] - by_sigma[1.0]}


def plot_noisy_test(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Test accuracy against the noise's sigma, beside the training accuracy (dashed)."""
    finals = per_run(runs)

    def draw(ax, table, color, variant):
        band(ax, table, "sigma", "test_acc", color, f"{variant}: test, noise sigma", marker="o")
        if len(finals):
            ax.axhline(finals.loc[finals["variant"] == variant, "train_acc"].mean(), color=color, linestyle="--",
                       linewidth=1, label=f"{variant}: training accuracy (clean)")

    return probe_figure(study, study_dir, "noisy_test", draw, "sigma of the Gaussian noise added to test pixels in [0, 1]",
                        "accuracy (fraction correct)",
                        claim_title(study, "Trained on clean images; band = min–max over seeds."), ylim=(0, 1.03))


@torch.no_grad()
def weight_norm(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """The trained weights' size: L2 norm over every weight matrix (biases left out), and the fraction
    of weights below 1% of their layer's RMS weight (what weight decay's "pruning" would show: a
    uniform shrinking leaves it unchanged); a histogram of log10 |w| as the table."""
    layers = [p.detach().abs().flatten() for p in model.parameters() if p.dim() > 1]
    weights = torch.cat(layers)
    small = sum(int((w < SMALL_WEIGHT * w.square().mean().sqrt()).sum()) for w in layers)
    edges = torch.linspace(-6, 1, 29)  # |w| outside 1e-6 .. 10 lands in the end bins
    counts = torch.histc(weights.clamp(1e-6, 9.99).log10().cpu(), bins=len(edges) - 1, min=-6, max=1)
    table = pd.DataFrame({"log10_abs_w": (edges[:-1] + edges[1:]).div(2).tolist(),
                          "fraction": (counts / weights.numel()).tolist()})
    return table, {"weight_norm": weights.square().sum().sqrt().item(), "small_weight_fraction": small / weights.numel()}


def plot_weight_norm(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Distribution of the trained weights' magnitudes, per variant."""
    return probe_figure(study, study_dir, "weight_norm",
                        lambda ax, table, color, variant: band(ax, table, "log10_abs_w", "fraction", color, variant),
                        "log10 |w| (weight matrices)", "fraction of weights",
                        claim_title(study, "Trained weights' magnitudes; band = min–max over seeds."), yscale="log")


FIT_POINTS = 801  # where function_fit's figure draws each trained net's curve


@torch.no_grad()
def function_fit(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """A trained 1-D regressor against its target: the worst absolute error over the test grid (the
    uniform error the universality theorem bounds), and the net's curve on a fine grid as the table."""
    model.eval()
    test = splits["test"]
    worst = (model(test.x).squeeze(-1) - test.y).abs().max().item()
    x = torch.linspace(-1, 1, FIT_POINTS, device=test.x.device)
    table = pd.DataFrame({"x": x.tolist(), "target": FUNCTIONS[run["data"]["dataset"]](x, run["data"]["teeth"]).tolist(),
                          "prediction": model(x[:, None]).squeeze(-1).tolist()})
    return table, {"max_abs_error": worst, "log10_max_abs_error": math.log10(worst) if worst > 0 else -math.inf}


def plot_function_fit(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Each variant's fitted curve (seed mean, band = min–max over seeds) over its target, one panel
    per function (the variant name's part before '-')."""
    tables = probe_tables(study, study_dir, "function_fit")
    if tables.empty:
        return None
    variants = [v for v in study["experiment"]["variants"] if v in set(tables["variant"])]
    functions = list(dict.fromkeys(v.split("-")[0] for v in variants))
    fig, axes = plt.subplots(len(functions), 1, figsize=(11, 3.6 * len(functions)), squeeze=False)
    for ax, function in zip(axes[:, 0], functions):
        mine = [v for v in variants if v.split("-")[0] == function]
        target = tables[tables["variant"] == mine[0]].groupby("x")["target"].first()
        ax.plot(target.index, target.values, color="black", linewidth=2.5, alpha=0.35, label="target")
        for i, variant in enumerate(mine):
            band(ax, tables[tables["variant"] == variant], "x", "prediction", colour(i, len(mine)), variant, linewidth=1)
        ax.set(title=function, xlabel="x", ylabel="f(x)")
    return finish(fig, list(axes[:, 0]), claim_title(study, "Trained nets' curves over the target; band = min–max "
                                                            "over seeds."), legend_outside=True)


@torch.no_grad()
def conv_geometry(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """A cnn's convolutions, counted on the real modules: per layer its kernel, parameters and the
    receptive field so far (computed from the kernels); as scalars the receptive field measured through
    the real layers (models.cnn.CNN.measured_receptive_field) and the parameters of every convolution
    after the first (the block a study compares: the first is a shared stem)."""
    convs = [layer for layer in model.convs if isinstance(layer, torch.nn.Conv2d)]
    rows, field = [], 1
    for i, conv in enumerate(convs, start=1):
        field += conv.kernel_size[0] - 1
        rows.append({"layer": i, "kernel": conv.kernel_size[0], "parameters": sum(p.numel() for p in conv.parameters()),
                     "receptive_field": field})
    table = pd.DataFrame(rows)
    table["cumulative_parameters"] = table["parameters"].cumsum()
    return table, {"receptive_field": model.measured_receptive_field(),
                   "block_parameters": int(table["parameters"].iloc[1:].sum())}


def plot_conv_geometry(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """How far each variant's convolutions see against what they cost: cumulative parameters
    against the receptive field, one marker per layer."""
    return band_figure(study, study_dir, "conv_geometry", "receptive_field", "cumulative_parameters",
                       "receptive field (pixels on a side)", "parameters of the convolutions so far",
                       "Counted on the real modules; one marker per convolution.")


LECTURE_CHANNELS = 256  # the block's input channels where the lecture counts a bottleneck's parameters
TIMING_INPUT = (16, 28, 28)  # maps per batch and their side, for block_at_256's forward time
TIMING_REPEATS = 5


@torch.no_grad()
def block_at_256(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """The block a cnn study compares (every convolution after the stem) rebuilt as real modules at
    the lecture's size: every channel count scaled so that the block takes 256 channels in, padded to
    keep the map's size, no biases (as the lecture counts). Its weights, and the median time of a
    forward pass over 16 maps of 28 x 28 on the run's device (one pass to warm up, then 5 timed)."""
    device = splits["train"].x.device
    convs = [layer for layer in model.convs if isinstance(layer, torch.nn.Conv2d)][1:]
    scale = LECTURE_CHANNELS / convs[0].in_channels
    block = torch.nn.Sequential(*(torch.nn.Conv2d(round(c.in_channels * scale), round(c.out_channels * scale), c.kernel_size,
                                                  padding=c.kernel_size[0] // 2, bias=False) for c in convs)).to(device)
    torch.manual_seed(seed)
    x = torch.randn(TIMING_INPUT[0], LECTURE_CHANNELS, *TIMING_INPUT[1:], device=device)
    seconds = []
    for _ in range(TIMING_REPEATS + 1):
        started = time.perf_counter()
        block(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    timed = sorted(seconds[1:])
    return (pd.DataFrame({"repeat": range(1, TIMING_REPEATS + 1), "seconds": seconds[1:]}),
            {"block_weights_at_256": sum(p.numel() for p in block.parameters()),
             "log10_block_seconds_at_256": math.log10(timed[len(timed) // 2])})


def plot_block_at_256(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """The forward time of each variant's block at 256 channels, per timed repeat."""
    return band_figure(study, study_dir, "block_at_256", "repeat", "seconds", "timed forward pass",
                       "seconds (16 maps of 28 x 28, 256 channels in)",
                       "The compared blocks at the lecture's 256 channels; band = min–max over seeds.", yscale="log")


MEMORY_SAMPLES = 1000  # training sequences the recurrent probes read
SCALES = [round(0.05 * i, 2) for i in range(41)]  # recurrent_scale's factors, 0 to 2


def sequence_panels(study: dict, study_dir: Path, probe: str, draw, xlabel: str, ylabel: str, what: str,
                    **axes_style) -> bytes | None:
    """A figure of a recurrent study's probe: one panel per sequence length, one colour per family (the
    variant's name before its length, plots.family); `draw(ax, table, color, cell)`."""
    tables = probe_tables(study, study_dir, probe)
    if tables.empty:
        return None
    # the sequences a probe read (fewer than MEMORY_SAMPLES in a small run; probes stored before the
    # count was recorded read MEMORY_SAMPLES)
    sequences = f"{int(tables['sequences'].min()) if 'sequences' in tables else MEMORY_SAMPLES:,}"
    ylabel, what = ylabel.format(sequences=sequences), what.format(sequences=sequences)
    lengths = sorted(tables["seq_len"].unique())
    cells = families(study["experiment"]["variants"])
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4.2), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        mine = tables[tables["seq_len"] == length]
        for i, cell in enumerate(cells):
            table = mine[mine["variant"].map(family) == cell]
            if not table.empty:
                draw(ax, table, colour(i, len(cells)), cell)
        ax.set(title=f"sequences of {length} steps", xlabel=xlabel, ylabel=ylabel, **axes_style)
    return finish(fig, list(axes[0]), claim_title(study, what), shared_legend=True)


def gradient_through_time(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """How far back the gradient reaches: the norm of the loss's gradient with respect to the hidden
    state after each step, on the first MEMORY_SAMPLES training sequences, of the initial and of the trained net.
    log10_memory_gradient_<when>: the first step's norm over the last step's, in decades (very negative:
    the gradient vanishes on its way back; positive: it grows). In float64, so that a gradient that
    has shrunk by 40 decades is measured rather than flushed to 0."""
    train = splits["train"]
    x, y = train.x[:MEMORY_SAMPLES].double(), train.y[:MEMORY_SAMPLES].double()
    rows, scalars = [], {}
    for when, net in (("initial", initial_model(run, seed, splits)), ("trained", copy.deepcopy(model))):
        net.double().eval()
        states = net.states(x)
        for state in states:
            state.retain_grad()
        net.zero_grad(set_to_none=True)
        LOSSES[run["train"]["loss"]](net.head(states[-1])[None], y[None]).sum().backward()
        norms = [state.grad.norm().item() for state in states]
        net.zero_grad(set_to_none=True)
        rows += [{"when": when, "seq_len": len(norms), "steps_back": len(norms) - step, "grad_norm": norm,
                  "sequences": len(x)}
                 for step, norm in enumerate(norms, start=1)]
        ratio = norms[0] / norms[-1]
        scalars[f"log10_memory_gradient_{when}"] = math.log10(ratio) if ratio > 0 else -math.inf
    return pd.DataFrame(rows), scalars


def plot_gradient_through_time(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """The gradient at each hidden state against how many steps before the end it lies."""
    def draw(ax, table, color, cell):
        band(ax, table[table["when"] == "trained"], "steps_back", "grad_norm", color, f"{cell}, trained")
        band(ax, table[table["when"] == "initial"], "steps_back", "grad_norm", color, f"{cell}, initial",
             linestyle=":")

    return sequence_panels(study, study_dir, "gradient_through_time", draw, "steps before the end",
                           "|dLoss / d hidden state|", "How far back the gradient reaches (dotted: initial nets); "
                           "{sequences} training sequences, band = min–max over seeds.", yscale="log")


@torch.no_grad()
def recurrent_scale(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """The loss along a line in weight space: the trained net's recurrent weights multiplied by s from
    0 to 2 (s = 1: the trained net), everything else kept, on the first MEMORY_SAMPLES training sequences. A plain RNN's
    loss is flat over most of the line and climbs a wall where the recurrent map starts to amplify."""
    train = splits["train"]
    x, y = train.x[:MEMORY_SAMPLES], train.y[:MEMORY_SAMPLES]
    trained = model.recurrent.weight.clone()
    model.eval()
    rows = []
    for s in SCALES:
        model.recurrent.weight.copy_(s * trained)
        loss = LOSSES[run["train"]["loss"]](model(x)[None], y[None]).item()
        rows.append({"seq_len": x.shape[1], "scale": s, "train_loss": loss if math.isfinite(loss) else math.inf,
                     "sequences": len(x)})
    model.recurrent.weight.copy_(trained)
    return pd.DataFrame(rows), {}


def plot_recurrent_scale(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """The training loss as the trained recurrent weights are scaled by s."""
    return sequence_panels(study, study_dir, "recurrent_scale",
                           lambda ax, table, color, cell: band(ax, table, "scale", "train_loss", color, cell),
                           "s (recurrent weights x s; 1 = trained)", "squared error, {sequences} training sequences",
                           "The loss along a line in weight space; band = min–max over seeds.", yscale="log")


BLOCK_ARCHITECTURES = ("resmlp", "rescnn")  # the nets delete_blocks can take blocks out of


def needs_rnn(run: dict, probe: str) -> str:
    return "" if run["model"]["arch"] == "rnn" else f"the {probe} probe needs model.arch rnn, not {run['model']['arch']!r}"


@dataclass(frozen=True)
class Probe:
    measure: Callable[[torch.nn.Module, dict[str, Split], dict, int], tuple[pd.DataFrame, dict]]
    scalars: dict[str, str]  # what measure adds to the run's last row (a check may name it), with its meaning
    figure: Callable[[pd.DataFrame, dict, Path], bytes | None]
    needs: Callable[[dict], str] = lambda run: ""  # why a run cannot take this probe; "" if it can


PROBES = {
    "mc_dropout": Probe(mc_dropout, {
        f"mc{MC_SAMPLES}_acc": f"test accuracy of the softmax outputs of {MC_SAMPLES} thinned nets averaged (Monte-Carlo dropout)",
        "mc1_acc": "test accuracy of one thinned net (dropout on)",
        "weight_scaling_acc": "test accuracy of one pass with dropout off (weight scaling)",
        f"mc{MC_SAMPLES}_minus_scaling_acc": f"test accuracy of {MC_SAMPLES} thinned nets averaged minus that of weight scaling"}, plot_mc_dropout),
    "loss_line": Probe(loss_line, {}, plot_loss_line),
    "activation_scale": Probe(activation_scale, {
        "log10_act_ratio": "log10 of the last hidden layer's output spread over the first's, at initialisation "
                           "(0: the scale is kept; very negative: activations vanish)"}, plot_activation_scale,
                              needs=lambda run: "" if run["model"]["arch"] == "mlp" else
                              f"the activation_scale probe needs model.arch mlp, not {run['model']['arch']!r}"),
    "noisy_test": Probe(noisy_test, {
        "noisy_test_acc": "test accuracy with Gaussian noise of standard deviation 1 added to every pixel",
        "noise_drop": "test accuracy on clean images minus that with noise of standard deviation 1"}, plot_noisy_test),
    "function_fit": Probe(function_fit, {
        "max_abs_error": "the worst absolute error of the fitted function over the test grid",
        "log10_max_abs_error": "log10 of max_abs_error"}, plot_function_fit,
                          needs=lambda run: "" if run["data"]["dataset"] != "mnist" else
                          "the function_fit probe needs a 1-D function (data.dataset smooth or sawtooth), not mnist"),
    "conv_geometry": Probe(conv_geometry, {
        "receptive_field": "side, in pixels, of the input square one unit of the last convolution sees, measured "
                           "through the real layers",
        "block_parameters": "parameters of every convolution after the first (the block compared)"}, plot_conv_geometry,
                           needs=lambda run: "" if run["model"]["arch"] == "cnn" else
                           f"the conv_geometry probe needs model.arch cnn, not {run['model']['arch']!r}"),
    "block_at_256": Probe(block_at_256, {
        "block_weights_at_256": "weights of the compared block rebuilt with 256 channels in (no biases)",
        "log10_block_seconds_at_256": "log10 of that block's median forward time over 16 maps of 28 × 28"},
                          plot_block_at_256,
                          needs=lambda run: "" if run["model"]["arch"] == "cnn" and len(run["model"]["kernels"]) > 1 else
                          "the block_at_256 probe needs model.arch cnn with a block after its first convolution"),
    "gradient_through_time": Probe(gradient_through_time,
                                   {"log10_memory_gradient_initial": "log10 of the gradient's norm at the first step over "
                                                                     "that at the last, untrained (very negative: it vanishes "
                                                                     "on its way back through time)",
                                    "log10_memory_gradient_trained": "the same for the trained net"},
                                   plot_gradient_through_time, needs=lambda run: needs_rnn(run, "gradient_through_time")),
    "recurrent_scale": Probe(recurrent_scale, {}, plot_recurrent_scale,
                             needs=lambda run: needs_rnn(run, "recurrent_scale")),
    "weight_norm": Probe(weight_norm, {
        "weight_norm": "L2 norm of every trained weight matrix together (biases left out)",
        "small_weight_fraction": f"share of weights below {SMALL_WEIGHT} of their layer's RMS weight"}, plot_weight_norm),
    "delete_blocks": Probe(delete_blocks, {
        "acc_one_block_deleted": "test accuracy with one block left out, averaged over the blocks",
        "min_acc_one_block_deleted": "test accuracy with the worst block to lose left out",
        "drop_one_block": "test accuracy lost by leaving one block out, averaged over the blocks",
        "max_drop_one_block": "test accuracy lost by leaving out the block whose loss costs most",
        "drop_one_block_but_worst": "test accuracy lost by leaving one block out, averaged over the blocks but the worst",
        "worst_block": "the block whose deletion costs most (0: the first)"}, plot_delete_blocks,
                           needs=lambda run: "" if run["model"]["arch"] in BLOCK_ARCHITECTURES else
                           f"the delete_blocks probe needs a net made of blocks (model.arch "
                           f"{' or '.join(BLOCK_ARCHITECTURES)}), not {run['model']['arch']!r}"),
}

# every probe scalar's meaning, for the report's glossary
SCALAR_MEANINGS = {name: text for probe in PROBES.values() for name, text in probe.scalars.items()}


def probe_metrics(probes: list[str]) -> set[str]:
    """The per-run metrics these probes add (names that are no probe add none)."""
    return {metric for probe in probes if probe in PROBES for metric in PROBES[probe].scalars}
