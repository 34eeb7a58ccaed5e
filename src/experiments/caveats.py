"""A claim's caveats: stated in its experiment file, shown in the report under the claim (shared ones)
or under one protocol's verdict (`protocol_caveats`). A number a caveat quotes from the results is a
placeholder filled from the committed table when the report is built, so a re-run cannot leave a
stale number in the text:

    {sgd_tuned.test_acc}            that variant's mean test accuracy under the caveat's protocol
    {lecture:plain_5x.ci95}         the same from the named protocol's table (needed in a shared caveat)
    {residual.max_drop_one_block}   a per-run metric the table lacks: its mean over the variant's rows
                                    of seeds.csv (a grid study's rows are its grid points: sgd_lr0.1)
    {relu.test_drop_from_peak:.1g}  with a format (Python's): the default is 3 decimals
"""

from __future__ import annotations

import re

import pandas as pd

from experiments.errors import UserError
from experiments.tables import fmt

PLACEHOLDER = re.compile(r"\{(?:(\w+):)?([^{}:\s]+)\.(\w+)(?::(\.\d+[efg]))?\}")
# the columns of a study's summary.csv a caveat may quote (mean, ci95, min, max: of the verdict's metric)
COLUMNS = ("mean", "ci95", "std", "min", "max", "n", "n_diverged", "train_acc", "test_acc", "grad_ratio_init",
           "grad_ratio_train", "parameters", "updates")
WHOLE = ("n", "n_diverged", "parameters", "updates")


def check(caveats: list[str], protocol_caveats: dict[str, list[str]], protocols: list[str], metrics: set[str]) -> None:
    """Every placeholder names a protocol that exists (a shared caveat's must name one) and a column
    the tables have or a metric the runs measure; a brace that is no placeholder is a typo."""
    for protocol, texts in [(None, caveats), *protocol_caveats.items()]:
        if protocol is not None and protocol not in protocols:
            raise UserError(f"experiment.protocol_caveats names unknown protocol {protocol!r}; known: {', '.join(protocols)}")
        for text in texts:
            rest = PLACEHOLDER.sub("", text)
            if "{" in rest or "}" in rest:
                raise UserError(f"a caveat holds a brace that is no placeholder {{variant.column}}: {text[:80]!r}")
            for named, variant, column, _ in PLACEHOLDER.findall(text):
                if column not in COLUMNS and column not in metrics:
                    raise UserError(f"caveat placeholder {{{variant}.{column}}}: a caveat quotes a column of summary.csv "
                                    f"({', '.join(COLUMNS)}) or a metric of seeds.csv")
                if (named or protocol) not in protocols:
                    raise UserError(f"caveat placeholder {{{variant}.{column}}} in a caveat every protocol shares must name "
                                    f"its protocol, e.g. {{lecture:{variant}.{column}}}" if not named else
                                    f"caveat placeholder {{{named}:{variant}.{column}}}: unknown protocol {named!r}")


def fill(text: str, protocol: str | None, summaries: dict[str, pd.DataFrame | None],
         seeds: dict[str, pd.DataFrame | None], views: dict[str, dict[str, str]],
         pending: frozenset[str] = frozenset()) -> str:
    """The caveat with each placeholder replaced by its number: from the protocol's summary.csv, or
    the mean over a run label's rows of its seeds.csv (a per-run metric, or a grid point; a grid
    study's `_tuned` or `_default` variant stands for the grid point it took, `views`); '(not run)'
    where that study has no table, '(no seeds.csv)' where it was analysed before seeds.csv existed,
    '(pending re-run)' where a study of a protocol in `pending` lacks the run (its experiment file
    asks for runs its folder does not hold yet, e.g. a widened grid's new points)."""
    def number(match: re.Match) -> str:
        named, variant, column, spec = match.groups()
        chosen = named or protocol
        if chosen not in summaries:
            raise UserError(f"caveat placeholder {match[0]}: unknown protocol {chosen!r}")
        summary = summaries[chosen]
        if summary is None:
            return "(not run)"
        if column in COLUMNS and variant in set(summary["variant"]):
            values = summary.loc[summary["variant"] == variant, column]
        else:
            per_run = seeds.get(chosen)
            if per_run is None:
                return "(no seeds.csv)"
            label = views.get(chosen, {}).get(variant, variant)
            values = per_run.loc[per_run["variant"] == label, column] if column in per_run else []
        if not len(values):
            if chosen in pending:
                return "(pending re-run)"
            raise UserError(f"caveat placeholder {match[0]}: the {chosen} protocol's summary.csv and seeds.csv have no "
                            f"{column} of {variant!r}")
        value = values.mean()
        if spec and pd.notna(value):
            return format(value, spec)
        return f"{value:,.0f}" if column in WHOLE and pd.notna(value) else fmt(value)
    return PLACEHOLDER.sub(number, text)
