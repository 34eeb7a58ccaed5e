"""Markdown: a study's comparison table and its verdict lines."""

from __future__ import annotations

import math

import pandas as pd


INTERVAL_NOTE = ("Each check: the advantage of the first variant over the second (difference of means over seeds, "
                 "oriented so that > 0 favours the first), [its 90% Welch interval, whose ends are one-sided 95% bounds], "
                 "the one-sided p-value of the decision shown and its Holm-adjusted value over the claim's key checks (a side check: over the side checks).")


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict, one line per check, then any caveat about the training budget and the study's own caveats."""
    if not verdict.get("checks"):
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['reason']}", ""]
    else:
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['headline']}.", "",
                 *(f"- {'' if c['key'] else '(not a key check) '}{c['text']}" for c in verdict["checks"]), "",
                 f"<sub>{INTERVAL_NOTE}</sub>", ""]
    if verdict.get("closing_gaps"):
        lines += ["*Budget caveat* (computed from the curves): " + "; ".join(verdict["closing_gaps"]) + ". "
                  "Where a gap is still closing, the run measures convergence speed as much as the end state.", ""]
    lines += [line for caveat in verdict.get("caveats", []) for line in (f"*Caveat* (stated with the study): {caveat}", "")]
    return lines


def pipe_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table from cells already formatted as text (every table of the suite's files).
    Not DataFrame.to_markdown: that needs tabulate, and every cell here is text already."""
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, cells)) + " |" for cells in rows)]


def fmt(value, digits: int = 3) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table_markdown(summary: pd.DataFrame, metric: str, lecture_label: str = "") -> list[str]:
    """The comparison table: a row per variant, lecture's number beside ours."""
    header = ["variant", lecture_label or f"lecture {metric}", f"ours {metric} (mean ± 95% CI)", "min – max", "n", "diverged",
              "train_acc", *(["test_acc"] if metric != "test_acc" else []), "parameters", "updates",
              "grad ratio first/last layer (init)", "(training)", "s / epoch", "s / run"]
    rows = []
    for _, r in summary.iterrows():
        rows.append([r["variant"], fmt(r["lecture"], 2), f"{fmt(r['mean'])} ± {fmt(r['ci95'])}",
                 f"{fmt(r['min'])} – {fmt(r['max'])}", f"{int(r['n'])}/{int(r['n_expected'])}",
                 str(int(r["n_diverged"])), fmt(r["train_acc"]), *([fmt(r["test_acc"])] if metric != "test_acc" else []),
                 *(f"{r[c]:,.0f}" if c in r and pd.notna(r[c]) else "–" for c in ("parameters", "updates")),
                 *(f"{r[c]:.2g}" if c in r else "–" for c in ("grad_ratio_init", "grad_ratio_train")),
                     fmt(r["seconds_per_epoch"], 2), fmt(r["seconds_per_run"], 1)])
    return pipe_table(header, rows)


def markdown_table(summary: pd.DataFrame, study: dict, verdict: dict) -> str:
    spec = study["experiment"]
    lines = [f"## {spec['title']} ({study['protocol']} protocol)", "", spec["claim"], "",
             *table_markdown(summary, spec["verdict"]["metric"], spec.get("lecture_label", "")),
             "", *verdict_lines(verdict),
             f"Lecture: {spec['lecture_ref']}", ""]
    return "\n".join(lines)
