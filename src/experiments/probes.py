"""Probes: measurements on a trained model beyond its learning curves. An experiment lists them in
`experiment.probes`; each returns a tidy table, which the runner stores as runs/<variant>/seed<k>/<probe>.csv
for a figure of analysis.py, and a few scalars, which join the run's last metrics row so that a
verdict check can use them."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from experiments.data import N_CLASSES, N_FEATURES, Split
from experiments.train import LOSSES
from models import build_model

MC_SAMPLES = 50  # thinned networks averaged, as in Srivastava et al. 2014, Fig. 11
LINE_POINTS = 41
LINE_SAMPLES = 2000


@torch.no_grad()
def mc_dropout(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test accuracy of averaging the softmax outputs of k sampled thinned networks (k = 1..50)
    against weight scaling, i.e. one pass with dropout off (PyTorch's inverted dropout)."""
    if not run["model"]["dropout"]:
        return pd.DataFrame(), {}  # without dropout every thinned network is the same network
    test = splits["test"]
    model.eval()
    scaled_acc = (model(test.x).argmax(1) == test.y).float().mean().item()
    torch.manual_seed(seed)
    model.train()  # dropout on: each pass samples a thinned network
    prob_sum = torch.zeros(len(test), N_CLASSES, device=test.x.device)
    rows = []
    for k in range(1, MC_SAMPLES + 1):
        prob_sum += model(test.x).softmax(1)
        rows.append({"k": k, "mc_acc": (prob_sum.argmax(1) == test.y).float().mean().item(),
                     "weight_scaling_acc": scaled_acc})
    model.eval()
    return pd.DataFrame(rows), {f"mc{MC_SAMPLES}_acc": rows[-1]["mc_acc"], "mc1_acc": rows[0]["mc_acc"],
                                "weight_scaling_acc": scaled_acc,
                                f"mc{MC_SAMPLES}_minus_scaling_acc": rows[-1]["mc_acc"] - scaled_acc}


@torch.no_grad()
def loss_line(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Both losses along the straight line from the initial weights (t = 0) to the trained ones
    (t = 1), on the first 2000 training images: where the error surface is flat, the loss barely
    changes along it."""
    torch.manual_seed(seed)  # the same initial weights train_run started from
    start = build_model(run["model"], N_FEATURES, N_CLASSES).to(splits["train"].x.device)
    end = model
    line = build_model(run["model"], N_FEATURES, N_CLASSES).to(splits["train"].x.device).eval()
    x, y = splits["train"].x[:LINE_SAMPLES], splits["train"].y[:LINE_SAMPLES]
    rows = []
    for t in (round(-0.5 + 2 * i / (LINE_POINTS - 1), 6) for i in range(LINE_POINTS)):
        for p_line, p_start, p_end in zip(line.parameters(), start.parameters(), end.parameters()):
            p_line.copy_(p_start + t * (p_end - p_start))
        logits = line(x)
        rows.append({"t": t, **{name: fn(logits[None], y[None]).item() for name, fn in LOSSES.items()}})
    return pd.DataFrame(rows), {}


@torch.no_grad()
def delete_blocks(model: torch.nn.Module, splits: dict[str, Split], run: dict, seed: int) -> tuple[pd.DataFrame, dict]:
    """Test accuracy with each block of a resmlp left out in turn (block -1: none left out)."""
    test = splits["test"]
    model.eval()
    rows = []
    for block in range(-1, len(model.blocks)):
        model.skipped = {block} - {-1}
        rows.append({"block": block, "test_acc": (model(test.x).argmax(1) == test.y).float().mean().item()})
    model.skipped = set()
    full, deleted = rows[0]["test_acc"], [row["test_acc"] for row in rows[1:]]
    return pd.DataFrame(rows), {"acc_one_block_deleted": sum(deleted) / len(deleted),
                                "min_acc_one_block_deleted": min(deleted),
                                # what deleting costs: on average over the blocks, and at the worst block
                                "drop_one_block": full - sum(deleted) / len(deleted),
                                "max_drop_one_block": full - min(deleted),
                                "worst_block": deleted.index(min(deleted))}


# the scalars each probe adds to a run's last row, which a verdict check may name
PROBE_SCALARS = {"mc_dropout": {f"mc{MC_SAMPLES}_acc", "mc1_acc", "weight_scaling_acc", f"mc{MC_SAMPLES}_minus_scaling_acc"},
                 "loss_line": set(),
                 "delete_blocks": {"acc_one_block_deleted", "min_acc_one_block_deleted", "drop_one_block",
                                   "max_drop_one_block", "worst_block"}}

PROBES: dict[str, Callable[[torch.nn.Module, dict[str, Split], dict, int], tuple[pd.DataFrame, dict]]] = {
    "mc_dropout": mc_dropout,
    "loss_line": loss_line,
    "delete_blocks": delete_blocks,
}
