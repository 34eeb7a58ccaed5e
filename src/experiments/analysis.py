"""Analysis: from a study folder's stored runs alone, the comparison table, the learning-curve
plot and the verdict. Rerun it alone with `python -m experiments.analysis <study folder>`."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from experiments.store import load_study, locked, write_atomic  # noqa: E402

STUDY_FILE = "study.json"
OUTPUTS = ("summary.csv", "summary.md", "curves.png", "verdict.json")


def ci95_half_width(values: pd.Series) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (NaN below 2 values)."""
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def final_rows(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.sort_values("epoch").groupby(["variant", "seed"], sort=False).tail(1)


def summarise(runs: pd.DataFrame, study: dict) -> pd.DataFrame:
    """One row per variant: the final metric's mean, 95% CI, spread and n over seeds."""
    spec = study["experiment"]
    metric = spec["verdict"]["metric"]
    finals = final_rows(runs) if len(runs) else pd.DataFrame(columns=["variant", "seed", metric])
    init = runs[runs["epoch"] == 0] if len(runs) else finals
    grad_cols = sorted((c for c in runs.columns if c.startswith("grad_norm_")),
                       key=lambda c: int(c.rsplit("_", 1)[1]))
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
            "seconds_per_run": mine["seconds"].mean() if len(mine) else math.nan,
        }
        if grad_cols:
            first_init = init[init["variant"] == variant]
            # how much smaller the input layer's gradient is than the output layer's, at init
            row["grad_ratio_init"] = (first_init[grad_cols[0]] / first_init[grad_cols[-1]]).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def decide(summary: pd.DataFrame, study: dict) -> dict:
    """The experiment's rule, applied to the numbers: reproduced / partly / not reproduced.

    Direction: the variant the lecture says wins must beat the other with non-overlapping 95%
    confidence intervals over seeds. Size: each variant's mean must lie within `tolerance` of the
    lecture's number. Direction and size -> reproduced; direction only -> partly.
    """
    rule = study["experiment"]["verdict"]
    better, worse, tolerance = rule["better"], rule["worse"], rule["tolerance"]
    by_variant = summary.set_index("variant")
    incomplete = by_variant[by_variant["n"] < by_variant["n_expected"]]
    if len(incomplete):
        parts = [f"{v}: {int(r.n)} of {int(r.n_expected)} seeds" for v, r in incomplete.iterrows()]
        return {"verdict": "incomplete", "reason": "missing runs (" + "; ".join(parts) + ")"}
    if (by_variant["n"] < 2).any():
        return {"verdict": "inconclusive", "reason": "fewer than 2 seeds per variant: no confidence interval"}
    b, w = by_variant.loc[better], by_variant.loc[worse]
    metric = rule["metric"]
    described = f"{better} {b['mean']:.3f} ± {b['ci95']:.3f} vs {worse} {w['mean']:.3f} ± {w['ci95']:.3f} {metric} (95% CI, n={int(b['n'])})"
    if not b["mean"] - b["ci95"] > w["mean"] + w["ci95"]:
        return {"verdict": "not reproduced", "reason": f"{better} does not beat {worse} beyond the seeds' spread: {described}"}
    off = [f"{v} {by_variant.loc[v, 'mean']:.3f} vs lecture {by_variant.loc[v, 'lecture']:.2f}"
           for v in (better, worse)
           if not math.isnan(by_variant.loc[v, "lecture"])
           and abs(by_variant.loc[v, "mean"] - by_variant.loc[v, "lecture"]) > tolerance]
    if off:
        return {"verdict": "partly", "reason": f"direction holds ({described}) but size differs by more than {tolerance}: " + "; ".join(off)}
    return {"verdict": "reproduced", "reason": f"direction and size hold within {tolerance} of the lecture: {described}"}


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(summary: pd.DataFrame, study: dict, verdict: dict) -> str:
    metric = study["experiment"]["verdict"]["metric"]
    header = ["variant", f"lecture {metric}", f"ours {metric} (mean ± 95% CI)", "min – max", "n",
              "diverged", "train_acc", "grad ratio first/last layer (init)", "s / run"]
    lines = [f"## {study['experiment']['title']} ({study['protocol']} protocol)", "",
             study["experiment"]["claim"], "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in summary.iterrows():
        cells = [r["variant"], _fmt(r["lecture"], 2), f"{_fmt(r['mean'])} ± {_fmt(r['ci95'])}",
                 f"{_fmt(r['min'])} – {_fmt(r['max'])}", f"{r['n']}/{r['n_expected']}", str(r["n_diverged"]),
                 _fmt(r["train_acc"]), f"{r['grad_ratio_init']:.2g}" if "grad_ratio_init" in r else "–",
                 _fmt(r["seconds_per_run"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Verdict: {verdict['verdict']}** — {verdict['reason']}", "",
              f"Lecture: {study['experiment']['lecture_ref']}", ""]
    return "\n".join(lines)


def plot_curves(runs: pd.DataFrame, study: dict) -> bytes:
    """Train loss, test accuracy (lecture's number dashed) and per-layer gradient norms."""
    spec = study["experiment"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    grad_cols = sorted((c for c in runs.columns if c.startswith("grad_norm_")),
                       key=lambda c: int(c.rsplit("_", 1)[1]))
    for i, variant in enumerate(spec["variants"]):
        color = f"C{i}"
        mine = runs[runs["variant"] == variant]
        if mine.empty:
            continue
        n_seeds = mine["seed"].nunique()
        by_epoch = mine.groupby("epoch")
        for ax, column in ((axes[0], "train_loss"), (axes[1], "test_acc")):
            curve = by_epoch[column].agg(["mean", "min", "max"])
            ax.plot(curve.index, curve["mean"], color=color, label=f"{variant} (n={n_seeds})")
            ax.fill_between(curve.index, curve["min"], curve["max"], color=color, alpha=0.2, linewidth=0)
        if variant in spec["lecture"] and spec["verdict"]["metric"] == "test_acc":
            axes[1].axhline(spec["lecture"][variant], color=color, linestyle="--", linewidth=1,
                            label=f"{variant}: lecture {spec['lecture'][variant]:.2f}")
        layers = range(1, len(grad_cols) + 1)
        for epochs, style, when in ((mine["epoch"] == 0, "-", "init"), (mine["epoch"] > 0, ":", "training mean")):
            norms = mine[epochs][grad_cols].mean()
            axes[2].plot(layers, norms.values, style, marker="o", markersize=3, color=color, label=f"{variant}, {when}")
    axes[0].set(title="Training loss (mean over the epoch)", xlabel="epoch", ylabel="loss", yscale="log")
    axes[1].set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (fraction correct)", ylim=(0, 1))
    axes[2].set(title="Gradient norm per weight layer", xlabel="layer (1 = input side)",
                ylabel="‖∂L/∂W‖₂", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec['title']} — {study['protocol']} protocol, band = min–max over seeds")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Software": None})  # no version stamp: rebuilds are identical
    plt.close(fig)
    return png.getvalue()


def analyse(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Rebuild the study's table, plot and verdict from its stored runs."""
    study_dir = Path(study_dir)
    with locked(study_dir):  # the last job of a parallel sweep to get here sees every run
        return _analyse(study_dir)


def _analyse(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    study = json.loads((study_dir / STUDY_FILE).read_text())
    runs, metas = load_study(study_dir)
    if len(runs):
        status = {(m["variant"], m["seed"]): m["status"] for m in metas}
        runs["status"] = [status[(v, s)] for v, s in zip(runs["variant"], runs["seed"])]
        runs = runs[runs["variant"].isin(study["experiment"]["variants"]) & runs["seed"].isin(study["seeds"])]
    summary = summarise(runs, study)
    verdict = decide(summary, study)
    write_atomic(study_dir / "summary.csv", summary.to_csv(index=False, float_format="%.6g"))
    write_atomic(study_dir / "summary.md", markdown_table(summary, study, verdict))
    write_atomic(study_dir / "verdict.json", json.dumps(verdict, indent=2) + "\n")
    if len(runs):
        write_atomic(study_dir / "curves.png", plot_curves(runs, study))
    return summary, verdict


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / STUDY_FILE).exists():
        print("usage: python -m experiments.analysis <study folder holding study.json>", file=sys.stderr)
        return 2
    analyse(Path(argv[0]))
    print((Path(argv[0]) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
