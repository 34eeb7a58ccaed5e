"""Metrics: a study's per-epoch rows reduced to one row per run (the last epoch plus derived
columns) and one row per variant (the verdict metric's mean, 95% CI, spread and n over seeds)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats


def ci95_half_width(values: pd.Series) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (NaN below 2 values)."""
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def grad_columns(runs: pd.DataFrame) -> list[str]:
    return sorted((c for c in runs.columns if c.startswith("grad_norm_")), key=lambda c: int(c.rsplit("_", 1)[1]))


def per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, seed): the final epoch's columns plus gradient ratios.

    grad_ratio_init / grad_ratio_train: input layer's gradient norm over the output layer's, at
    initialisation and averaged over the training epochs (variants may differ in depth, so each
    run's last layer is its last non-empty column); log10_* the same in decades; test_error and train_error = 1 - accuracy.
    """
    ordered = runs.sort_values(["variant", "seed", "epoch"])
    finals = ordered.groupby(["variant", "seed"], sort=False).tail(1).set_index(["variant", "seed"])
    finals["test_error"] = 1 - finals["test_acc"]
    finals["train_acc_running"] = finals["train_acc"]  # over the last epoch, as the model trained
    if "train_eval_acc" in finals:  # the trained model in eval mode: dropout off, batch norm's running statistics
        finals["train_acc"] = finals["train_eval_acc"]
    finals["train_error"] = 1 - finals["train_acc"]
    # how fast training converged: the training loss averaged over the epochs
    trained = ordered[ordered["epoch"] > 0].groupby(["variant", "seed"])
    finals["mean_train_loss"] = trained["train_loss"].mean()
    finals["seconds_per_epoch"] = trained["epoch_seconds"].mean()  # training only, no evaluation
    finals["log10_seconds_per_epoch"] = finals["seconds_per_epoch"].map(safe_log10)
    if "effective_lr" in finals:  # how far the step size per unit gradient fell from the first epoch to the last
        first = ordered[ordered["epoch"] == 1].set_index(["variant", "seed"])["effective_lr"]
        finals["log10_lr_shrink"] = (finals["effective_lr"] / first).map(safe_log10)
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
# or a probe's scalar
EPOCH_COLUMNS = {"updates", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "train_eval_loss",
                 "train_eval_acc", "epoch_seconds", "effective_lr", "seconds", "parameters"}


DERIVED = {"test_error", "train_error", "train_acc_running", "mean_train_loss", "seconds_per_epoch",
           "log10_seconds_per_epoch", "log10_lr_shrink", "grad_ratio_init", "grad_ratio_train", "grad_norm_init",
           "log10_grad_ratio_init", "log10_grad_ratio_train", "log10_grad_norm_init"}


def known_metrics(probe_scalars: set[str]) -> set[str]:
    """Every metric a check may name, given the scalars the experiment's probes add."""
    return EPOCH_COLUMNS | DERIVED | set(probe_scalars) | {f"grad_norm_{k}" for k in range(1, 200)}


def safe_log10(x: float) -> float:
    return math.log10(x) if x > 0 else math.nan


def summarise(finals: pd.DataFrame, study: dict) -> pd.DataFrame:
    """One row per variant of the per-run table: the verdict metric's mean, 95% CI, spread and n over seeds."""
    spec = study["experiment"]
    metric = spec["verdict"]["metric"]
    if finals.empty:
        finals = pd.DataFrame(columns=["variant", "seed", metric])
    rows = []
    for variant in spec["variants"]:
        mine = finals[finals["variant"] == variant]
        values = mine[metric]
        row = {
            "variant": variant,
            "lecture": spec["lecture"].get(variant, math.nan),
            "mean": values.mean() if len(values) else math.nan,
            "ci95": ci95_half_width(values),
            "std": values.std(ddof=1) if len(values) > 1 else math.nan,
            "min": values.min() if len(values) else math.nan,
            "max": values.max() if len(values) else math.nan,
            "n": len(values),
            "n_expected": len(study["seeds"]),
            "n_diverged": int((mine["status"] == "diverged").sum()) if len(mine) else 0,
            "train_acc": mine["train_acc"].mean() if len(mine) else math.nan,
            "test_acc": mine["test_acc"].mean() if len(mine) else math.nan,
        }
        for column in ("grad_ratio_init", "grad_ratio_train"):
            if column in finals:
                row[column] = mine[column].mean() if len(mine) else math.nan
        for column in ("parameters", "updates"):
            if column in finals:
                row[column] = mine[column].mean() if len(mine) else math.nan
        row["seconds_per_epoch"] = mine["seconds_per_epoch"].mean() if len(mine) else math.nan
        row["seconds_per_run"] = mine["seconds"].mean() if len(mine) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def per_epoch(runs: pd.DataFrame, metric: str) -> pd.Series | None:
    """A verdict metric at every epoch that measured it (errors from accuracies); None if not per epoch."""
    if metric in runs:
        return runs[metric]
    if metric.endswith("_error") and metric.replace("_error", "_acc") in runs:
        return 1 - runs[metric.replace("_error", "_acc")]
    return None
