"""Markdown: a study's comparison table, its settings table and its verdict lines."""

from __future__ import annotations

import math
import numbers

import pandas as pd

from experiments.settings import flatten, own_protocol, settings_rows, study_label
from experiments.store import setting_overrides


TIMING_NOTE = ("s / epoch, s / run: wall time of a run on its device; runs made while other processes shared the cores "
               "ran slower, so timings compare only between runs made alone.")
INTERVAL_NOTE = ("Each check: the advantage of the first variant over the second (difference of means over seeds, "
                 "oriented so that > 0 favours the first; for a contrast, its combination of several such differences), [its 90% Welch interval, unadjusted: each end a one-sided 95% bound], "
                 "the one-sided p-value of the decision shown and its Holm-adjusted value over the claim's key checks "
                 "(a side check: over the side checks). The status follows Holm's p (and, where a spread is floored, the larger "
                 "p of an exact test), so an interval clear of 0 or of the margin can still leave a check open; a decision an exact "
                 "randomization test of the same seeds would leave open says that it rests on the normal model.")


def verdict_lines(verdict: dict, grid: bool = False) -> list[str]:
    """The verdict, one line per check, then any caveat about the training budget and, for a study
    tuned on a `grid`, about decisions that the grid's reach may have made, or that a runner-up point
    the validation split cannot tell from the tuned one would change."""
    if not verdict.get("checks"):
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['reason']}", ""]
    else:
        lines = [f"**Verdict: {verdict['verdict']}** — {verdict['headline']}.", "",
                 *(f"- {'' if c['key'] else '(premise) ' if c.get('premise') else '(not a key check) '}{c['text']}"
                   for c in verdict["checks"]), "",
                 f"<sub>{INTERVAL_NOTE}</sub>", ""]
    if verdict.get("closing_gaps"):
        lines += ["*Budget caveat* (computed from the curves): " + "; ".join(verdict["closing_gaps"]) + ". "
                  "Where a gap is still closing, the run measures convergence speed as much as the end state.", ""]
    if verdict.get("grid_edges"):
        lines += ["*Grid-edge caveat* (computed from the grid): "
                  + "; ".join(("" if note["key"] else "(not a key check) ") + note["text"] for note in verdict["grid_edges"])
                  + ".", ""]
    elif grid and "grid_edges" not in verdict and verdict.get("checks"):
        lines += ["*Grid-edge caveat*: not computed, as this study was judged before the check existed; its grid table "
                  "names the variants that do best at an end of the grid.", ""]
    if verdict.get("near_ties"):
        lines += ["*Near-tie caveat* (computed from the grid): " + "; ".join(note["text"] for note in verdict["near_ties"])
                  + ". The validation split cannot tell those two points apart, so the decisions named rest on a choice "
                  "it did not make.", ""]
    return lines


def pipe_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table from cells already formatted as text (every table of the suite's files).
    Not DataFrame.to_markdown: that needs tabulate, and every cell here is text already."""
    return ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(str, cells)) + " |" for cells in rows)]


def fmt(value, digits: int = 3) -> str:
    """A number with `digits` decimals, '–' when missing; a whole number too (a CSV reads a column of
    1.0s back as integers, which must print as the analysis printed them)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def metric_digits(means) -> int:
    """Decimals for a table's means in its metric: 3, or as many as give its largest mean two
    significant digits where every mean is below 0.01 (training errors of a few images in 10,000
    would all read 0.000 to 0.003), at most 6."""
    largest = max((abs(m) for m in means if pd.notna(m)), default=0.0)
    return 3 if largest == 0 or largest >= 0.01 else min(6, 1 - math.floor(math.log10(largest)))


def table_markdown(summary: pd.DataFrame, metric: str, lecture_label: str = "") -> list[str]:
    """The comparison table: a row per variant, lecture's number beside ours. A column no variant
    has a value in (accuracies of a regression) is left out."""
    def count(c):
        return lambda r: f"{r[c]:,.0f}" if c in r and pd.notna(r[c]) else "–"

    def ratio(c):
        return lambda r: f"{r[c]:.2g}" if c in r and pd.notna(r[c]) else "–"

    digits = metric_digits(summary["mean"])
    columns = [
        ("variant", lambda r: r["variant"]),
        (lecture_label or f"lecture {metric}", lambda r: fmt(r["lecture"], 2)),
        (f"ours {metric} (mean ± 95% CI)", lambda r: f"{fmt(r['mean'], digits)} ± {fmt(r['ci95'], digits)}"),
        ("min – max", lambda r: f"{fmt(r['min'], digits)} – {fmt(r['max'], digits)}"),
        ("n", lambda r: f"{int(r['n'])}/{int(r['n_expected'])}"),
        ("diverged", lambda r: str(int(r["n_diverged"]))),
        ("train_acc", lambda r: fmt(r["train_acc"])),
        *([("test_acc", lambda r: fmt(r["test_acc"]))] if metric != "test_acc" else []),
        ("parameters", count("parameters")), ("updates", count("updates")),
        ("grad ratio first/last layer (init)", ratio("grad_ratio_init")), ("(training)", ratio("grad_ratio_train")),
        ("s / epoch", lambda r: fmt(r["seconds_per_epoch"], 2)), ("s / run", lambda r: fmt(r["seconds_per_run"], 1)),
    ]
    cells = [[cell(r) for _, cell in columns] for _, r in summary.iterrows()]
    optional = {"train_acc", "test_acc", "parameters", "updates", "grad ratio first/last layer (init)", "(training)"}
    kept = [k for k, (name, _) in enumerate(columns)
            if name not in optional or any(row[k] != "–" for row in cells)]
    return [*pipe_table([columns[k][0] for k in kept], [[row[k] for k in kept] for row in cells]), "", f"<sub>{TIMING_NOTE}</sub>"]


def lecture_line(study: dict) -> str:
    """Where the lecture's numbers come from, and whether these runs were compared with them: only
    the lecture protocol's, as the experiment file sets it, are (judge.checks_of)."""
    ref = study["experiment"]["lecture_ref"]
    if study["protocol"] != "lecture":
        return f"Lecture (its numbers are the lecture protocol's, never compared with these runs): {ref}"
    given = ", ".join(override.lstrip("+") for override in setting_overrides(study))
    if given:
        return (f"Lecture (its numbers are the lecture protocol's as the experiment file sets it; these runs were given "
                f"{given} on the command line, so they are not compared with them): {ref}")
    return f"Lecture: {ref}"


def markdown_table(summary: pd.DataFrame, study: dict, verdict: dict) -> str:
    spec = study["experiment"]
    # the title states the claim, not a finding: a slide of this file must not read as one; the label
    # names the settings the study changed from its protocol, as the report's heading does
    lines = [f"## Claim tested: {spec['title']} ({study_label(study)})", "", f"Claim: {spec['claim']}", "",
             "The caveats stated with the study, and its settings, are in the report (results/REPORT.md).", "",
             *table_markdown(summary, spec["verdict"]["metric"], spec.get("lecture_label", "")),
             "", *verdict_lines(verdict, bool(spec.get("grid"))),
             lecture_line(study), ""]
    return "\n".join(lines)


def settings_markdown(study: dict) -> list[str]:
    """The settings table: each setting beside the lecture protocol's and, for a study under another
    protocol, that protocol's too, so that the marks agree with the section heading, which names
    what departs from the study's own protocol."""
    if "settings" not in study:
        return ["*Settings: not recorded with these runs (they predate the settings table).*", ""]
    seeds = study.get("seeds", [])
    references = {"lecture": flatten(study["lecture_settings"])}
    if study["protocol"] != "lecture":
        references[study["protocol"]] = own_protocol(study)
    rows = [[f"`{key}`", *referenced, value, mark] for key, referenced, value, mark in settings_rows(study, references)]
    rows.append(["seeds", *("–" for _ in references), f"{', '.join(map(str, seeds))} (n = {len(seeds)})", ""])
    return [*pipe_table(["setting", *(f"{protocol} protocol" for protocol in references), "this study", ""], rows), ""]
