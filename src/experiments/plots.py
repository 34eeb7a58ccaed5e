"""Figures: every plot a study can ask for (`experiment.figures`), as PNG bytes."""

from __future__ import annotations

import io
import math
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from experiments.metrics import SOLVED_BELOW, grad_columns, per_run  # noqa: E402
from experiments.store import load_probe  # noqa: E402


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
    tested = "test_acc" if runs["test_acc"].notna().any() else "test_loss"  # a regression has no accuracy
    for i, variant in enumerate(variants):
        color = colour(i, len(variants))
        mine = runs[runs["variant"] == variant]
        if mine.empty:
            continue
        label = f"{variant} (n={mine['seed'].nunique()})"
        for ax, column in ((axes[0], "train_loss"), (axes[1], tested)):
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
    if tested == "test_acc":
        axes[1].set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (fraction correct)",
                    ylim=(max(0.0, low - 0.05), 1.0) if low > 0.5 else (0, 1))
    else:
        axes[1].set(title="Test loss (squared error)", xlabel="epoch", ylabel="loss", yscale="log")
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
        # every panel's entries, each label once: a line may be drawn in some panels only
        by_label = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                by_label.setdefault(label, handle)
        handles, labels = list(by_label.values()), list(by_label)
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


def family(variant: str) -> str:
    """A recurrent variant's family: its name before the sequence length ('lstm' of 'lstm_100_tuned',
    'tanh_gain4+clip' of 'tanh_gain4+clip_30')."""
    named = re.match(r"(.+?)_\d+(?:_|$)", variant)
    return named[1] if named else variant


def families(variants) -> list[str]:
    """The families of these variants, in their order."""
    return list(dict.fromkeys(map(family, variants)))


def plot_metric_vs_length(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """A recurrent study: the verdict metric and the share of solved runs against the sequence length,
    one line per family (the variant's name before its length); of a grid experiment, the tuned runs."""
    runs, study = compared(runs, study)
    metric = study["experiment"]["verdict"]["metric"]
    finals = per_run(runs)
    if "seq_len" not in finals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    cells = families(study["experiment"]["variants"])
    for i, cell in enumerate(cells):
        mine = finals[finals["variant"].map(family) == cell]
        band(axes[0], mine, "seq_len", metric, colour(i, len(cells)), cell, marker="o", markersize=4)
        share = mine.groupby("seq_len")["solved"].mean()
        axes[1].plot(share.index, share.values, color=colour(i, len(cells)), marker="o", label=cell)
    axes[0].set(xlabel="sequence length (steps)", ylabel=metric, xscale="log")
    axes[1].set(xlabel="sequence length (steps)", ylabel=f"share of seeds solved (test MSE < {SOLVED_BELOW})",
                xscale="log", ylim=(-0.05, 1.05))
    return finish(fig, list(axes), claim_title(study, "Band = min–max over seeds."), shared_legend=True)


def plot_metric_vs_updates(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes:
    """Test accuracy against the number of optimizer updates, every variant on one log axis."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, variant in enumerate(study["experiment"]["variants"]):
        mine = runs[(runs["variant"] == variant) & (runs["updates"] > 0)]
        if not mine.empty:
            band(ax, mine, "updates", "test_acc", f"C{i}", variant, marker="o", markersize=2)
    ax.set(xlabel="optimizer updates", ylabel="test accuracy (fraction correct)", xscale="log", ylim=(0, 1))
    return finish(fig, [ax], claim_title(study, "Per update; band = min–max over seeds."))


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


def plot_checked_metrics(runs: pd.DataFrame, study: dict, study_dir: Path) -> bytes | None:
    """Each metric the verdict's checks test, per variant in the experiment's order: every seed a
    dot, the mean a bar; a check against a fixed number draws it dashed."""
    spec = study["experiment"]
    finals = per_run(runs)
    checks = spec["verdict"]["checks"]
    named = {v for check in checks for v in (check["better"], check["worse"], *check.get("versus", []),
                                             *(v for pair in check.get("pairs", []) for v in pair)) if v}
    if spec.get("grid"):  # the runs the checks compare, default and tuned alike (a plain name means tuned)
        finals = finals[finals["variant"].isin(named | {f"{v}_tuned" for v in named})]
    metrics = list(dict.fromkeys(check["metric"] or spec["verdict"]["metric"] for check in checks))
    metrics = [m for m in metrics if m in finals]
    if finals.empty or not metrics:
        return None
    variants = [v for v in spec["variants"] if v in set(finals["variant"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 1, 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        labels = []
        for x, variant in enumerate(variants):
            values = finals.loc[finals["variant"] == variant, metric]
            finite = values[values.abs() < math.inf]  # a diverged seed's NaN, a vanished gradient's -inf
            ax.bar(x, finite.mean() if len(finite) else 0, color=colour(x, len(variants)), alpha=0.35, width=0.6)
            ax.plot([x] * len(finite), finite, "o", color=colour(x, len(variants)), markersize=4)
            labels.append(variant + (f" ({len(values) - len(finite)} not finite)" if len(finite) < len(values) else ""))
        for check in checks:  # the bar a check against a fixed number sets: dashed for a key check, dotted for a side check
            if (check["metric"] or spec["verdict"]["metric"]) == metric and check.get("value") is not None:
                style = {"color": "black" if check["key"] else "grey", "linestyle": "--" if check["key"] else ":",
                         "linewidth": 1}
                what = f"{check['better']} vs {check['value']:g} ({'key' if check['key'] else 'side'} check)"
                if check["kind"] == "equivalent":  # the band the difference must lie in
                    ax.axhspan(check["value"] - check["margin"], check["value"] + check["margin"], alpha=0.12,
                               color=style["color"], label=f"{what}: ±{check['margin']:g}")
                else:  # the margin moves the bar: beyond it for `beats`, short of it for `not_worse`
                    toward = (-1 if check["lower_is_better"] else 1) * (1 if check["kind"] == "beats" else -1)
                    bar = check["value"] + toward * check["margin"]
                    ax.axhline(bar, label=what + (f": bar at {bar:g}" if check["margin"] else ""), **style)
        ax.set_xticks(range(len(variants)), labels, rotation=30, ha="right", fontsize=8)
        ax.set(title=metric, ylabel=metric)
        if not ax.get_legend_handles_labels()[0]:
            ax.plot([], [], "o", color="grey", label="one seed; bar = mean")
    return finish(fig, list(axes[0]), claim_title(study, "Every metric the checks test, per variant."))


# the figures of the learning curves; a probe brings its own figure (probes.PROBES)
FIGURES = {"curves": plot_curves, "metric_vs_parameters": plot_metric_vs_parameters, "metric_vs_depth": plot_metric_vs_depth,
           "metric_vs_length": plot_metric_vs_length,
           "metric_vs_updates": plot_metric_vs_updates, "effective_lr": plot_effective_lr,
           "checked_metrics": plot_checked_metrics}
