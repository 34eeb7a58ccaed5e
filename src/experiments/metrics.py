"""Metrics: a study's per-epoch rows reduced to one row per run (the last epoch plus derived
columns) and one row per variant (the verdict metric's mean, 95% CI, spread and n over seeds)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import special

LEARNED_ABOVE = 0.2  # a final test accuracy at or below this (chance: 0.1) counts as failing to learn
# the adding problem counts as solved below this test squared error, 6% of a constant guess's 1/6
SOLVED_BELOW = 0.01
BINARY_METRICS = frozenset({"failed_to_learn", "solved"})  # 0/1 per run: tested against a share exactly (verdicts.share_test)
# set by the architecture, the same in every seed: compared by arithmetic (verdicts.Fact)
FIXED_METRICS = frozenset({"parameters", "receptive_field", "block_parameters", "block_weights_at_256"})
# the test score that follows each score a grid is tuned on, with whether lower is better: a grid
# point that scores better on validation is expected to score better on it too (judge.edge_caveats)
FOLLOWS_TUNING = {"val_acc": {"test_acc": False, "test_error": True}, "val_loss": {"test_loss": True},
                  "log10_val_loss": {"log10_test_loss": True}}
# measured on the untrained net: every rate of a grid starts a seed from the same weights, so the
# rate cannot move them (judge.edge_caveats names no check on them)
AT_INITIALISATION = frozenset({"grad_norm_init", "log10_grad_norm_init", "grad_ratio_init", "log10_grad_ratio_init",
                               "log10_act_ratio", "log10_memory_gradient_initial"})
# the best value a bounded metric can take: a variant at it in every seed cannot do better
BEST_VALUE = {"test_acc": 1.0, "train_acc": 1.0, "test_error": 0.0, "train_error": 0.0}


def ci95_half_width(values: pd.Series) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (NaN below 2 values)."""
    n = len(values)
    if n < 2:
        return math.nan
    return float(special.stdtrit(n - 1, 0.975) * values.std(ddof=1) / math.sqrt(n))


def grad_columns(runs: pd.DataFrame) -> list[str]:
    return sorted((c for c in runs.columns if c.startswith("grad_norm_")), key=lambda c: int(c.rsplit("_", 1)[1]))


def per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, seed): the final epoch's columns plus gradient ratios.

    grad_ratio_init / grad_ratio_train: input layer's gradient norm over the output layer's, at
    initialisation and averaged over the training epochs (variants may differ in depth, so each
    run's last layer is its last non-empty column); log10_* the same in decades; test_error and train_error = 1 - accuracy;
    failed_to_learn (1 or 0), solved (1 or 0: the adding problem's test squared error below SOLVED_BELOW), loss_drop, and early stopping's test_acc_at_best_val and early_stop_gain (over the last epoch's) and test_drop_from_peak.
    """
    ordered = runs.sort_values(["variant", "seed", "epoch"])
    finals = ordered.groupby(["variant", "seed"], sort=False).tail(1).set_index(["variant", "seed"])
    finals["test_error"] = 1 - finals["test_acc"]
    finals["train_acc_running"] = finals["train_acc"]  # over the last epoch, as the model trained
    if "train_eval_acc" in finals:  # the trained model in eval mode: dropout off, batch norm's running statistics
        finals["train_acc"] = finals["train_eval_acc"]
    finals["train_error"] = 1 - finals["train_acc"]
    finals["generalisation_gap"] = finals["train_acc"] - finals["test_acc"]  # how far the model overfits
    # how fast training converged: the training loss averaged over the epochs
    trained = ordered[ordered["epoch"] > 0].groupby(["variant", "seed"])
    finals["mean_train_loss"] = trained["train_loss"].mean()
    finals["mean_test_acc"] = trained["test_acc"].mean()  # the area under the test curve: higher, sooner
    finals["seconds_per_epoch"] = trained["epoch_seconds"].mean()  # training only, no evaluation
    if "clipped_share" in finals:  # the share of the run's updates clipped: each epoch weighed by its updates
        steps = ordered["updates"] - ordered.groupby(["variant", "seed"])["updates"].shift()
        cut = ordered.assign(steps=steps, cut=ordered["clipped_share"] * steps)[ordered["epoch"] > 0]
        totals = cut.groupby(["variant", "seed"])[["cut", "steps"]].sum()
        finals["clipped_share"] = totals["cut"] / totals["steps"]
    finals["log10_seconds_per_epoch"] = finals["seconds_per_epoch"].map(safe_log10)
    add_log10_losses(finals)
    if "seq_len" in finals:  # the adding problem: solved or not (a diverged run's NaN loss is not)
        finals["solved"] = (finals["test_loss"] < SOLVED_BELOW).astype(float)
    if "effective_lr" in finals:  # how far the step size per unit gradient fell from the first epoch to the last
        first = ordered[ordered["epoch"] == 1].set_index(["variant", "seed"])["effective_lr"]
        finals["log10_lr_shrink"] = (finals["effective_lr"] / first).map(safe_log10)
    # how far training lowered the loss: the initial net's loss on the training set minus the running
    # mean over the last epoch (a slightly conservative pairing: the last epoch's early batches count)
    initial = ordered[ordered["epoch"] == 0].set_index(["variant", "seed"])["train_loss"]
    finals["loss_drop"] = initial - finals["train_loss"]
    # whether a run learned at all: it diverged, its loss did not go down, or it ended near chance
    # (10 classes: 0.1); a diverged net's NaN logits argmax to class 0, about 0.098 accuracy
    if "status" in finals:
        finals["failed_to_learn"] = ((finals["status"] == "diverged") | ~(finals["loss_drop"] > 0)
                                     | ~(finals["test_acc"] > LEARNED_ABOVE)).astype(float)
    evaluated = ordered[(ordered["epoch"] > 0) & ordered["val_acc"].notna()] if "val_acc" in ordered else ordered.iloc[0:0]
    if len(evaluated):  # early stopping: the test accuracy at the epoch with the best validation accuracy (the first such)
        best = evaluated.loc[evaluated.groupby(["variant", "seed"])["val_acc"].idxmax()].set_index(["variant", "seed"])
        finals["best_val_epoch"] = best["epoch"]
        finals["test_acc_at_best_val"] = best["test_acc"]
        finals["early_stop_gain"] = finals["test_acc_at_best_val"] - finals["test_acc"]
        # how far the test accuracy fell from its peak: the overfitting early stopping could undo (read
        # off the test curve, so a description of the run, not a rule anyone could apply)
        finals["test_drop_from_peak"] = evaluated.groupby(["variant", "seed"])["test_acc"].max() - finals["test_acc"]
    grad_cols = grad_columns(runs)
    if grad_cols:
        norms = ordered.set_index(["variant", "seed"])[grad_cols]
        ratio = norms.iloc[:, 0] / norms.ffill(axis=1).iloc[:, -1]
        at_init = ordered.set_index(["variant", "seed"])["epoch"] == 0
        finals["grad_ratio_init"] = ratio[at_init.values].groupby(level=[0, 1]).mean()
        finals["grad_ratio_train"] = ratio[~at_init.values].groupby(level=[0, 1]).mean()
        # the whole gradient's size at initialisation: small where the error surface is flat
        total = norms.pow(2).sum(axis=1, min_count=1).pow(0.5)
        finals["grad_norm_init"] = total[at_init.values].groupby(level=[0, 1]).mean()
        for column in ("grad_ratio_init", "grad_ratio_train", "grad_norm_init"):
            finals[f"log10_{column}"] = finals[column].map(safe_log10)
    return finals.reset_index()


# what a check's metric can name: a column of the last epoch's row, a derived column of per_run,
# or a probe's scalar; each with its meaning, which the report's glossary prints
EPOCH_COLUMNS = {
    "updates": "optimizer steps taken",
    "train_loss": "training loss, averaged over the last epoch's batches as the model trained",
    "train_acc": "the trained model's accuracy on its training images, dropout off and batch norm in eval mode "
                 "(where a run measured only the running figure: that figure)",
    "val_loss": "loss on the validation split after the last epoch",
    "val_acc": "accuracy on the validation split after the last epoch",
    "test_loss": "loss on the test set after the last epoch (a regression: its squared error)",
    "test_acc": "accuracy on the test set after the last epoch",
    "train_eval_loss": "the trained model's loss on its training images, in eval mode",
    "train_eval_acc": "the trained model's accuracy on its training images, in eval mode",
    "epoch_seconds": "wall time of the last epoch's training",
    "effective_lr": "the optimizer's step size per unit gradient in the last epoch (an adaptive method's shrinks)",
    "seconds": "wall time of the run",
    "clipped_share": "with train.clip_grad_norm: the share of an epoch's updates whose gradient norm exceeded the clip "
                     "(a run's: averaged over the epochs)",
    "parameters": "the net's number of parameters",
}
# the metrics that need the optimizer's step size recorded every epoch (train.effective_lr, opt-in)
STEP_SIZE_METRICS = {"effective_lr", "log10_lr_shrink"}


def needs_step_sizes(spec: dict) -> bool:
    """Whether an experiment's figures or checks use the per-epoch step size."""
    return "effective_lr" in spec["figures"] or any(check["metric"] in STEP_SIZE_METRICS
                                                    for check in spec["verdict"]["checks"])


def reads_timings(spec: dict) -> bool:
    """Whether an experiment's checks or tuning read a run's wall time (s / epoch, a probe's timing)."""
    metrics = [spec["verdict"]["metric"], spec.get("tune_on") or "", *(check.get("metric") or "" for check in spec["verdict"]["checks"])]
    return any("seconds" in metric for metric in metrics)


DERIVED = {
    "mean_test_acc": "test accuracy averaged over the evaluated epochs: the area under the test curve (higher, sooner)",
    "failed_to_learn": f"1 when a run diverged, its training loss did not fall, or it ended at a test accuracy of "
                       f"{LEARNED_ABOVE} or less; else 0",
    "loss_drop": "the initial net's training loss minus the last epoch's",
    "best_val_epoch": "the evaluated epoch with the best validation accuracy (the first such)",
    "test_acc_at_best_val": "the test accuracy at the evaluated epoch with the best validation accuracy",
    "early_stop_gain": "test_acc_at_best_val minus the last epoch's test accuracy: what early stopping gains",
    "test_drop_from_peak": "the best evaluated test accuracy minus the last: how far the test curve fell",
    "test_error": "1 − test_acc",
    "train_error": "1 − train_acc",
    "generalisation_gap": "train_acc − test_acc: how far the model overfits",
    "train_acc_running": "training accuracy over the last epoch as the model trained (dropout on)",
    "mean_train_loss": "training loss averaged over the epochs: how fast training converged (lower, sooner)",
    "seconds_per_epoch": "training time of an epoch, evaluation left out, averaged over the epochs",
    "log10_seconds_per_epoch": "log10 of an epoch's training time (seconds_per_epoch)",
    "log10_test_loss": "log10 of a regression's test squared error (its fit error spans decades)",
    "log10_val_loss": "log10 of the validation loss (what experiment.tune_on log10_val_loss tunes on)",
    "log10_lr_shrink": "log10 of the effective step size at the end over that of the first epoch (−1: it fell to a tenth)",
    "grad_ratio_init": "the first layer's gradient norm over the last layer's, at initialisation",
    "grad_ratio_train": "the first layer's gradient norm over the last layer's, averaged over training",
    "grad_norm_init": "the norm of every weight layer's gradient together (biases left out) on one batch of the "
                      "untrained net (small where the error surface is flat)",
    "log10_grad_ratio_init": "log10 of the first layer's gradient norm over the last layer's, at initialisation "
                             "(very negative: the gradient vanishes towards the input)",
    "log10_grad_ratio_train": "log10 of the first layer's gradient norm over the last layer's, averaged over training",
    "log10_grad_norm_init": "log10 of grad_norm_init: the untrained net's weight gradient norm, in decades",
    "solved": f"1 when the adding problem's test squared error is below {SOLVED_BELOW}; else 0",
}


def known_metrics(probe_scalars: set[str]) -> set[str]:
    """Every metric a check may name, given the scalars the experiment's probes add."""
    return set(EPOCH_COLUMNS) | set(DERIVED) | set(probe_scalars) | {f"grad_norm_{k}" for k in range(1, 200)}


def meaning(metric: str, probe_scalars: dict[str, str]) -> str:
    """What a metric measures, in a phrase ('' for one nobody described)."""
    if metric.startswith("grad_norm_") and metric.rsplit("_", 1)[1].isdigit():
        return f"the norm of layer {metric.rsplit('_', 1)[1]}'s weight gradient, averaged over every 10th step of the last epoch"
    return {**EPOCH_COLUMNS, **DERIVED, **probe_scalars}.get(metric, "")


def add_log10_losses(finals: pd.DataFrame) -> pd.DataFrame:
    """log10_test_loss and log10_val_loss where the losses are known and these are not: a
    regression's fit error spans decades (also for a seeds.csv written before log10_val_loss)."""
    for split in ("test", "val"):
        if f"{split}_loss" in finals and f"log10_{split}_loss" not in finals:
            finals[f"log10_{split}_loss"] = finals[f"{split}_loss"].map(safe_log10)
    return finals


def safe_log10(x: float) -> float:
    return math.log10(x) if x > 0 else math.nan


def summarise(finals: pd.DataFrame, study: dict) -> pd.DataFrame:
    """One row per variant of the per-run table: the verdict metric's mean, 95% CI, spread and n over seeds."""
    spec = study["experiment"]
    metric = spec["verdict"]["metric"]
    by_variant = finals.assign(diverged=finals["status"] == "diverged").groupby("variant")
    table = by_variant[metric].agg(mean="mean", ci95=ci95_half_width, std="std", min="min", max="max", n="size")
    means = [column for column in ("train_acc", "test_acc", "grad_ratio_init", "grad_ratio_train",
                                   "parameters", "updates", "seconds_per_epoch") if column in finals]
    table = table.join(by_variant.agg(n_diverged=("diverged", "sum"), seconds_per_run=("seconds", "mean"),
                                      **{column: (column, "mean") for column in means}))
    table = table.reindex(list(spec["variants"]))  # every variant, in the experiment's order, run or not
    table[["n", "n_diverged"]] = table[["n", "n_diverged"]].fillna(0).astype(int)
    for count in ("parameters", "updates"):  # whole numbers: summary.csv keeps every digit (1,199,882, not 1.19988e+06)
        if count in table:
            table[count] = table[count].round().astype("Int64")
    table["lecture"] = [spec["lecture"].get(variant, math.nan) for variant in table.index]
    table["n_expected"] = len(study["seeds"])
    order = ["lecture", "mean", "ci95", "std", "min", "max", "n", "n_expected", "n_diverged", "train_acc", "test_acc",
             *(c for c in ("grad_ratio_init", "grad_ratio_train", "parameters", "updates") if c in table),
             "seconds_per_epoch", "seconds_per_run"]
    return table[order].rename_axis("variant").reset_index()


def per_epoch(runs: pd.DataFrame, metric: str) -> pd.Series | None:
    """A verdict metric at every epoch that measured it (errors from accuracies); None if not per epoch.
    A run's final train_acc is its trained model in eval mode (train_eval_acc, measured once, at the
    end); the per-epoch train_acc was measured while training (dropout on, batch norm in training
    mode), another quantity, so those runs give no training-accuracy curve."""
    if metric in ("train_acc", "train_error") and "train_eval_acc" in runs:
        return None
    if metric in runs:
        return runs[metric]
    if metric.endswith("_error") and metric.replace("_error", "_acc") in runs:
        return 1 - runs[metric.replace("_error", "_acc")]
    return None
