"""Analysis: from a study folder's stored runs alone, the comparison table, the learning-curve
plot and the verdict. Rerun it alone with `python -m experiments.analysis <study folder>`."""

from __future__ import annotations

import io
import json
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from experiments.config import CONFIG_DIR, grid_runs  # noqa: E402
from experiments import verdicts  # noqa: E402
from experiments.errors import UserError  # noqa: E402
from experiments.store import load_probe, load_study, locked, write_atomic  # noqa: E402

STUDY_FILE = "study.json"
OUTPUTS = ("summary.csv", "summary.md", "curves.png", "verdict.json")


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


def checks_of(rule: dict, study: dict | None = None) -> list[verdicts.Check]:
    """The claim's checks as the engine takes them; under the lecture protocol, plus a size check
    (equivalence within ±tolerance) for each variant the lecture gives a number for."""
    raw = rule.get("checks") or [{"better": rule["better"], "worse": rule["worse"]}]
    if study and study["experiment"].get("grid"):  # a plain variant name means the variant at its tuned value
        raw = [{**c, **{side: f"{c[side]}_tuned" for side in ("better", "worse")
                        if c.get(side) and not c[side].endswith(("_default", "_tuned"))}} for c in raw]
    checks = [verdicts.Check(better=c["better"], worse=c.get("worse") or None, value=c.get("value"),
                             metric=c.get("metric") or rule["metric"], kind=c.get("kind", "beats"),
                             margin=c.get("margin", 0.0), lower_is_better=c.get("lower_is_better", False),
                             key=c.get("key", True), note=c.get("note", "")) for c in raw]
    if study is not None and study.get("protocol") == "lecture" and rule.get("tolerance") is not None:
        checks += [verdicts.Check(better=variant, value=number, metric=rule["metric"], kind="equivalent",
                                  margin=rule["tolerance"], key=False, note="size: the lecture's number")
                   for variant, number in study["experiment"].get("lecture", {}).items()]
    return checks


def decide(summary: pd.DataFrame, finals: pd.DataFrame, study: dict) -> dict:
    """The experiment's checks, tested by the verdict engine on the per-seed values."""
    by_variant = summary.set_index("variant")
    incomplete = by_variant[by_variant["n"] < by_variant["n_expected"]]
    if len(incomplete):
        parts = [f"{v}: {int(r.n)} of {int(r.n_expected)} seeds" for v, r in incomplete.iterrows()]
        return {"verdict": "incomplete", "reason": "missing runs (" + "; ".join(parts) + ")", "checks": []}
    checks = checks_of(study["experiment"]["verdict"], study)
    values = {(c_variant, metric): finals.loc[finals["variant"] == c_variant, metric].to_numpy()
              for check in checks for c_variant in (check.better, check.worse) if c_variant is not None
              for metric in [check.metric] if metric in finals}
    result = verdicts.decide(checks, values)
    n = int(by_variant["n"].min()) if len(by_variant) else 0
    return {"verdict": result.verdict, "headline": f"n = {n} seeds per variant; {result.headline()}",
            "reason": f"n = {n} seeds per variant; " + result.reason(),
            "checks": [o.as_dict() for o in result.outcomes], "possible": result.possible}


def per_epoch(runs: pd.DataFrame, metric: str) -> pd.Series | None:
    """A verdict metric at every epoch that measured it (errors from accuracies); None if not per epoch."""
    if metric in runs:
        return runs[metric]
    if metric.endswith("_error") and metric.replace("_error", "_acc") in runs:
        return 1 - runs[metric.replace("_error", "_acc")]
    return None


def closing_gaps(runs: pd.DataFrame, study: dict) -> list[str]:
    """Checks whose lead shrank by more than half over the second half of training. A longer
    budget might close them, so there the check measures convergence speed as much as the state
    training ends in (the caveat the report prints under the verdict)."""
    notes = []
    for check in checks_of(study["experiment"]["verdict"], study):
        values = per_epoch(runs, check.metric)
        if values is None or check.kind != "beats" or check.worse is None:
            continue
        measured = runs.assign(value=values).dropna(subset=["value"])
        curves = [measured[measured["variant"] == v].groupby("epoch")["value"].mean() for v in (check.better, check.worse)]
        epochs = curves[0].index.intersection(curves[1].index)
        last = epochs.max() if len(epochs) else 0
        middle = epochs[(epochs >= 1) & (epochs <= last / 2)]
        if not len(middle):
            continue
        sign = -1 if check.lower_is_better else 1
        lead = {epoch: sign * (curves[0][epoch] - curves[1][epoch]) for epoch in (middle.max(), last)}
        if 0 < lead[last] < lead[middle.max()] / 2:
            notes.append(f"{check.better}'s lead over {check.worse} in {check.metric} shrank from "
                         f"{lead[middle.max()]:.3g} at epoch {middle.max()} to {lead[last]:.3g} at epoch {last}: "
                         "a longer budget may close it")
    return notes


INTERVAL_NOTE = ("Each check: the advantage of the first variant over the second (difference of means over seeds, "
                 "oriented so that > 0 favours the first), [its 90% Welch interval, whose ends are one-sided 95% bounds], "
                 "the one-sided p-value of the decision shown and its Holm-adjusted value over the claim's checks.")


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict, one line per check, then any caveat about the training budget."""
    if not verdict.get("checks"):
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['reason']}", ""]
    else:
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['headline']}.", "",
                 *(f"- {'' if c['key'] else '(not a key check) '}{c['text']}" for c in verdict["checks"]), "",
                 f"<sub>{INTERVAL_NOTE}</sub>", ""]
    if verdict.get("closing_gaps"):
        lines += ["*Budget caveat* (computed from the curves): " + "; ".join(verdict["closing_gaps"]) + ". "
                  "Where a gap is still closing, the run measures convergence speed as much as the end state.", ""]
    return lines


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table_markdown(summary: pd.DataFrame, metric: str, lecture_label: str = "") -> list[str]:
    """The comparison table: a row per variant, lecture's number beside ours."""
    header = ["variant", lecture_label or f"lecture {metric}", f"ours {metric} (mean ± 95% CI)", "min – max", "n", "diverged",
              "train_acc", *(["test_acc"] if metric != "test_acc" else []), "parameters", "updates",
              "grad ratio first/last layer (init)", "(training)", "s / epoch", "s / run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in summary.iterrows():
        cells = [r["variant"], _fmt(r["lecture"], 2), f"{_fmt(r['mean'])} ± {_fmt(r['ci95'])}",
                 f"{_fmt(r['min'])} – {_fmt(r['max'])}", f"{int(r['n'])}/{int(r['n_expected'])}",
                 str(int(r["n_diverged"])), _fmt(r["train_acc"]), *([_fmt(r["test_acc"])] if metric != "test_acc" else []),
                 *(f"{r[c]:,.0f}" if c in r and not math.isnan(r[c]) else "–" for c in ("parameters", "updates")),
                 *(f"{r[c]:.2g}" if c in r else "–" for c in ("grad_ratio_init", "grad_ratio_train")),
                 _fmt(r["seconds_per_epoch"], 2), _fmt(r["seconds_per_run"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_table(summary: pd.DataFrame, study: dict, verdict: dict) -> str:
    spec = study["experiment"]
    lines = [f"## {spec['title']} ({study['protocol']} protocol)", "", spec["claim"], "",
             *table_markdown(summary, spec["verdict"]["metric"], spec.get("lecture_label", "")),
             "", *verdict_lines(verdict),
             f"Lecture: {spec['lecture_ref']}", ""]
    return "\n".join(lines)


MANY_VARIANTS = 6  # past this, one legend below the panels instead of one per panel


def colour(i: int, n: int):
    return f"C{i}" if n <= 10 else plt.get_cmap("tab20")(i % 20)


def claim_title(study: dict, what: str) -> str:
    """A figure's title: the claim and its verdict (never the claim alone, as if it were a fact)."""
    verdict = study.get("verdict", "not judged yet")
    return f"Claim: {study['experiment']['title']} — verdict: {verdict} ({study['protocol']} protocol). {what}"


def plot_curves(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes:
    """Train loss, test accuracy (lecture's number dashed) and per-layer gradient norms; of a grid
    experiment, the tuned variants (the ones its verdict compares)."""
    runs, study = compared(runs, study)
    spec = study["experiment"]
    variants = list(spec["variants"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    grad_cols = grad_columns(runs)
    for i, variant in enumerate(variants):
        color = colour(i, len(variants))
        mine = runs[runs["variant"] == variant]
        if mine.empty:
            continue
        label = f"{variant} (n={mine['seed'].nunique()})"
        for ax, column in ((axes[0], "train_loss"), (axes[1], "test_acc")):
            band(ax, mine, "epoch", column, color, label)
        if variant in spec["lecture"] and spec["verdict"]["metric"] == "test_acc":
            axes[1].axhline(spec["lecture"][variant], color=color, linestyle="--", linewidth=1,
                            label=f"{variant}: lecture {spec['lecture'][variant]:.2f}")
        layers = range(1, len(grad_cols) + 1)
        for epochs, style in ((mine["epoch"] == 0, "-"), (mine["epoch"] > 0, ":")):
            norms = mine[epochs][grad_cols].mean()
            axes[2].plot(layers, norms.values, style, marker="o", markersize=3, color=color,
                         label=label if style == "-" else None)
    axes[0].set(title="Training loss (mean over the epoch)", xlabel="epoch", ylabel="loss", yscale="log")
    final = runs[runs["epoch"] > 0].groupby(["variant", "epoch"])["test_acc"].mean().groupby(level=0).last()
    low = final.min() if len(final) else 0.0
    # zoom in where every variant learned, so that their differences show; else the whole 0-1 range
    axes[1].set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (fraction correct)",
                ylim=(max(0.0, low - 0.05), 1.0) if low > 0.5 else (0, 1))
    axes[2].set(title="Gradient norm per layer (solid: init, dotted: training)",
                xlabel="layer (1 = input side)", ylabel="‖∂L/∂W‖₂", yscale="log")
    return finish(fig, axes, claim_title(study, "Band = min–max over seeds."),
                  shared_legend=len(variants) > MANY_VARIANTS)


def finish(fig, axes, title: str, shared_legend: bool = False, legend_outside: bool = False) -> bytes:
    """The common style: grid, legend, title; PNG bytes without a version stamp, so rebuilds are identical."""
    for ax in axes:
        ax.grid(alpha=0.3)
        if legend_outside:  # beside the plot, never over the data
            ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0)
        elif not shared_legend:
            ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 10)))  # ~10 characters of 12-pt text an inch
    fig.tight_layout()
    if shared_legend:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
        fig.subplots_adjust(bottom=0.14 + 0.045 * math.ceil(len(labels) / 7))
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return png.getvalue()


def band(ax, table: pd.DataFrame, x: str, y: str, color: str, label: str, **style) -> None:
    """Mean over seeds as a line, min–max over seeds as a band."""
    curve = table.groupby(x)[y].agg(["mean", "min", "max"]).dropna()
    ax.plot(curve.index, curve["mean"], color=color, label=label, **style)
    ax.fill_between(curve.index, curve["min"], curve["max"], color=color, alpha=0.2, linewidth=0)


def probe_tables(study: dict, study_dir: Path, probe: str) -> pd.DataFrame:
    """A probe's tables by variant; of a grid study, those of each variant's tuned run, as <variant>_tuned."""
    tables = load_probe(study_dir, probe)
    tuned = {label: view for view, label in study.get("view_runs", {}).items() if view.endswith("_tuned")}
    if tables.empty or not study["experiment"].get("grid"):
        return tables
    return tables[tables["variant"].isin(tuned)].assign(variant=lambda t: t["variant"].map(tuned))


def probe_figure(study: dict, study_dir: Path, probe: str, draw, xlabel: str, ylabel: str, title: str,
                 **axes_style) -> bytes | None:
    """One axes, one colour per variant that has this probe's tables; `draw(ax, table, color, variant)`."""
    tables = probe_tables(study, study_dir, probe)
    if tables.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, variant in enumerate(v for v in study["experiment"]["variants"] if v in set(tables["variant"])):
        draw(ax, tables[tables["variant"] == variant], f"C{i}", variant)
    ax.set(xlabel=xlabel, ylabel=ylabel, **axes_style)
    return finish(fig, [ax], title)


def plot_mc_dropout(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Test accuracy of averaging k thinned networks, against weight scaling (dashed)."""
    def draw(ax, table, color, variant):
        band(ax, table, "k", "mc_acc", color, f"{variant}: mean of k thinned nets")
        ax.axhline(table["weight_scaling_acc"].mean(), color=color, linestyle="--", linewidth=1,
                   label=f"{variant}: weight scaling")

    return probe_figure(study, study_dir, "mc_dropout", draw, "k, thinned networks averaged (Monte-Carlo dropout)",
                        "test accuracy (fraction correct)",
                        claim_title(study, "Weight scaling vs averaging k sampled thinned networks; band = min–max over seeds."))


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


def plot_metric_vs_parameters(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """The verdict metric against parameter count, one line per variant family (name before '_')."""
    runs, study = compared(runs, study)
    spec = study["experiment"]
    metric = spec["verdict"]["metric"]
    finals = per_run(runs)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    families = sorted({v.split("_")[0] for v in finals["variant"]})
    for i, family in enumerate(families):
        mine = finals[finals["variant"].str.split("_").str[0] == family]
        band(ax, mine, "parameters", metric, f"C{i}", family, marker="o", markersize=3)
    ax.set(xlabel="parameters", ylabel=metric, xscale="log")
    return finish(fig, [ax], claim_title(study, "Band = min–max over seeds."))


def plot_metric_vs_depth(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """The verdict metric against depth, one line per variant family (name before '_'), on a log
    axis (linear near 0) so that a rise of a small error shows; of a grid experiment, the tuned runs."""
    runs, study = compared(runs, study)
    metric = study["experiment"]["verdict"]["metric"]
    finals = per_run(runs)
    if "depth" not in finals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    families = sorted({v.split("_")[0] for v in finals["variant"]})
    for i, family in enumerate(families):
        mine = finals[finals["variant"].str.split("_").str[0] == family]
        band(ax, mine, "depth", metric, f"C{i}", family, marker="o", markersize=4)
    ax.set(xlabel="depth (weight layers)", ylabel=metric)
    ax.set_yscale("symlog", linthresh=1e-4)  # errors of 0 happen: linear below 1e-4
    return finish(fig, [ax], claim_title(study, "Band = min–max over seeds."))


def plot_metric_vs_updates(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes:
    """Test accuracy against the number of optimizer updates, every variant on one log axis."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, variant in enumerate(study["experiment"]["variants"]):
        mine = runs[(runs["variant"] == variant) & (runs["updates"] > 0)]
        if not mine.empty:
            band(ax, mine, "updates", "test_acc", f"C{i}", variant, marker="o", markersize=2)
    ax.set(xlabel="optimizer updates", ylabel="test accuracy (fraction correct)", xscale="log", ylim=(0, 1))
    return finish(fig, [ax], claim_title(study, "Per update; band = min–max over seeds."))


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


def compared(runs: pd.DataFrame, study: dict) -> tuple[pd.DataFrame, dict]:
    """What a figure shows: every variant, or of a grid experiment each variant at its tuned value."""
    if not study["experiment"].get("grid"):
        return runs, study
    names = [v for v in study["experiment"]["variants"] if v.endswith("_tuned")]
    spec = {**study["experiment"], "variants": {v: {} for v in names}, "grid": {}}
    return runs[runs["variant"].isin(names)], {**study, "experiment": spec}


def plot_effective_lr(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes:
    """Step size per unit gradient over training (median over weights): Adagrad's keeps shrinking."""
    runs, study = compared(runs, study)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, variant in enumerate(study["experiment"]["variants"]):
        mine = runs[(runs["variant"] == variant) & (runs["epoch"] > 0)]
        if not mine.empty:
            band(ax, mine, "epoch", "effective_lr", f"C{i}", variant)
    ax.set(xlabel="epoch", ylabel="effective step size (median over weights)", yscale="log")
    fig.set_figwidth(9)
    return finish(fig, [ax], claim_title(study, "Effective learning rate at each optimizer's tuned rate; "
                                                "band = min–max over seeds."), legend_outside=True)


FIGURES = {"curves": plot_curves, "mc_dropout": plot_mc_dropout, "loss_line": plot_loss_line,
           "metric_vs_parameters": plot_metric_vs_parameters, "metric_vs_depth": plot_metric_vs_depth,
           "metric_vs_updates": plot_metric_vs_updates, "effective_lr": plot_effective_lr, "delete_blocks": plot_delete_blocks}


def analyse(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Rebuild the study's table, plot and verdict from its stored runs."""
    study_dir = Path(study_dir)
    with locked(study_dir):  # the last job of a parallel sweep to get here sees every run
        return _analyse(study_dir)


def resolve_grid(runs: pd.DataFrame, study: dict) -> tuple[pd.DataFrame, dict, str]:
    """For a grid experiment: each variant at its own configured value (<variant>_default) and at
    the grid value with the best mean validation accuracy (<variant>_tuned), plus the grid table."""
    spec = study["experiment"]
    labels = grid_runs(spec["variants"], spec["grid"])
    finals = per_run(runs) if len(runs) else pd.DataFrame(columns=["variant", "val_acc", "test_acc"])
    val = finals.groupby("variant")["val_acc"].mean()
    test = finals.groupby("variant")["test_acc"].mean()
    views, keys, at_edge, view_runs = [], list(spec["grid"]), [], {}
    header = ["variant", *(f"{k.rsplit('.', 1)[-1]}={v}" for k in keys for v in spec["grid"][k]), "tuned",
              "its lead over the runner-up (val)", "default"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for base, partial in spec["variants"].items():
        mine = [label for label, (b, _) in labels.items() if b == base]
        scored = [label for label in mine if label in val.index and pd.notna(val[label])]
        # the variant's own value of each grid key, as the runner resolved it without the grid
        own = study.get("grid_defaults", {}).get(base) or {key: OmegaConf.select(OmegaConf.create(partial), key)
                                                          for key in keys}
        chosen = {"tuned": max(scored, key=lambda label: val[label]) if scored else None,
                  "default": next((label for label in mine if all(
                      own.get(key) == value for key, value in labels[label][1].items())), None)}
        point = {kind: ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in labels[label][1].values())
                 if label else "–" for kind, label in chosen.items()}
        ranked = sorted((val[label] for label in scored), reverse=True)
        lead = f"{ranked[0] - ranked[1]:.4f}" if len(ranked) > 1 else "–"
        table.append(f"| {base} | " + " | ".join(
            f"{val[label]:.3f} ({test[label]:.3f})" if label in val.index and pd.notna(val[label]) else "–"
            for label in mine) + f" | {point['tuned']} | {lead} | {point['default']} |")
        if chosen["tuned"] in (mine[0], mine[-1]) and len(mine) > 2:
            at_edge.append(f"{base} ({chosen['tuned']})")
        for kind, label in chosen.items():
            if label is not None:
                views.append(runs[runs["variant"] == label].assign(variant=f"{base}_{kind}", grid_run=label))
                view_runs[f"{base}_{kind}"] = label
    view_names = [f"{b}_{kind}" for kind in ("default", "tuned") for b in spec["variants"]]
    resolved = {**study, "experiment": {**spec, "variants": {name: {} for name in view_names}}, "view_runs": view_runs}
    edge_note = ([f"Best value at the edge of the grid, so tuning may be incomplete for: {', '.join(at_edge)}.", ""]
                 if at_edge else [])
    grid_md = "\n".join(["Validation accuracy (test accuracy) of every grid point, mean over seeds; "
                          "`_tuned` takes the best validation accuracy, never the test set:", "", *table, "",
                          *edge_note])
    return (pd.concat(views, ignore_index=True) if views else runs.iloc[0:0]), resolved, grid_md


def _analyse(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    study = json.loads((study_dir / STUDY_FILE).read_text())
    runs, metas = load_study(study_dir)
    grid_md = ""
    if len(runs):
        status = {(m["variant"], m["seed"]): m["status"] for m in metas}
        runs["status"] = [status[(v, s)] for v, s in zip(runs["variant"], runs["seed"])]
        labels = grid_runs(study["experiment"]["variants"], study["experiment"].get("grid", {}))
        runs = runs[runs["variant"].isin(labels) & runs["seed"].isin(study["seeds"])]
    if study["experiment"].get("grid"):
        runs, study, grid_md = resolve_grid(runs, study)
    finals = per_run(runs) if len(runs) else pd.DataFrame()
    summary = summarise(finals, study)
    verdict = decide(summary, finals, study)
    verdict["closing_gaps"] = closing_gaps(runs, study) if len(runs) else []
    write_atomic(study_dir / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
    write_atomic(study_dir / "summary.md", markdown_table(summary, study, verdict) + grid_md)
    if grid_md:
        write_atomic(study_dir / "grid.md", grid_md)
    # what the report needs about the runs, since runs/ is not committed
    verdict |= {"runs": len(metas), "train_seconds": round(sum(m.get("seconds", 0.0) for m in metas), 1),
                "devices": sorted({m.get("device", "unknown") for m in metas}),
                "torch": sorted({m.get("torch", "unknown") for m in metas}),
                "git_commits": sorted({m.get("git_commit", "unknown") for m in metas})}
    write_atomic(study_dir / "verdict.json", json.dumps(verdict, indent=2) + "\n")
    for figure in study["experiment"].get("figures", ["curves"]) if len(runs) else []:
        png = FIGURES[figure](runs, {**study, "verdict": verdict["verdict"]}, study_dir)
        if png is not None:
            write_atomic(study_dir / f"{figure}.png", png)
    return summary, verdict


# what analysis alone may take from the current experiment file: how runs are judged and shown,
# never what they ran
RULE_KEYS = ("verdict", "lecture", "lecture_label", "figures", "title", "claim")


def current_rule(name: str) -> dict:
    """The experiment file's rule as it is now (configs/name/<name>.yaml)."""
    spec = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml").experiment)
    return {key: spec[key] for key in RULE_KEYS if key in spec}


def rule_changed(study: dict) -> bool:
    """True when the experiment file now judges the study's runs by other checks than it did."""
    try:
        now = current_rule(study["experiment"]["name"])
    except (OSError, KeyError):
        return False
    rule_then, rule_now = study["experiment"]["verdict"], {**study["experiment"]["verdict"], **now.get("verdict", {})}
    return (checks_of(rule_then, study) != checks_of(rule_now, study)
            or now.get("lecture", {}) != study["experiment"].get("lecture", {}))


def adopt_current_rule(study_dir: Path) -> None:
    """Judge a study's stored runs by its experiment file's current rule: what changed in the rule
    after the runs (a margin, a check) needs no re-run. What the runs ran must be unchanged."""
    study = json.loads((study_dir / STUDY_FILE).read_text())
    spec = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{study['experiment']['name']}.yaml").experiment)
    for key in ("variants", "grid", "probes"):
        if spec.get(key, {} if key != "probes" else []) != study["experiment"].get(key, {} if key != "probes" else []):
            raise UserError(f"the experiment file's {key} changed since these runs: re-run the study instead")
    study["experiment"] |= {key: spec[key] for key in RULE_KEYS if key in spec}
    write_atomic(study_dir / STUDY_FILE, json.dumps(study, indent=2) + "\n")


def main(argv: list[str]) -> int:
    adopt = "--current-rule" in argv
    argv = [a for a in argv if a != "--current-rule"]
    usage = "usage: python -m experiments.analysis <study folder holding study.json> [--current-rule]"
    if len(argv) != 1:
        print(f"error: give one study folder\n{usage}", file=sys.stderr)
        return 2
    if not (Path(argv[0]) / STUDY_FILE).is_file():
        print(f"error: {argv[0]} holds no {STUDY_FILE}: name a study folder such as results/relu_vs_sigmoid/lecture",
              file=sys.stderr)
        return 2
    try:
        if adopt:
            adopt_current_rule(Path(argv[0]))
        analyse(Path(argv[0]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((Path(argv[0]) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
