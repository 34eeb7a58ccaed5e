"""Tuning on a grid: each variant at its own configured value (`<variant>_default`) and at the
grid point with the best validation score (`<variant>_tuned`: the highest accuracy, or the lowest
mean loss or log10 loss where the experiment tunes on val_loss or log10_val_loss), with the grid's table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments.config import grid_runs
from experiments.tables import pipe_table


def _shown(value) -> str:
    """A grid value as the tables show it: 1.0 as 1, 0.0001 as 0.0001."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _point(point: dict) -> str:
    """A grid point as a caveat names it: 'lr=0.016'."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={_shown(value)}" for key, value in point.items())


def _ends(point: dict, grid: dict) -> list[str]:
    """Where a grid point is an end of its grid, key by key: 'the grid's lowest lr' (for values that
    are not numbers, its first or last in the file's order). Every point of a 2-value key is an end."""
    found = []
    for key, value in point.items():
        values, short = grid[key], key.rsplit(".", 1)[-1]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        low, high = (min(values), max(values)) if numeric else (values[0], values[-1])
        if len(values) > 1 and value in (low, high):
            found.append(f"the grid's {('lowest' if numeric else 'first') if value == low else ('highest' if numeric else 'last')} {short}")
    return found


def _seeds_ahead(by_seed: pd.DataFrame, chosen: str, runner_up: str) -> str:
    """The chosen point's lead over the runner-up seed by seed (every grid point runs the same seeds),
    so that a mean lead carried by one seed shows as one: ' (per seed: ahead in 2 of 5, from -0.0045
    to +0.024)'. Both points' means are finite, so every seed's score is. Empty with fewer than 2 seeds."""
    if chosen not in by_seed or runner_up not in by_seed:
        return ""
    pair = by_seed[[chosen, runner_up]].dropna()
    if len(pair) < 2:
        return ""
    lead = pair[chosen] - pair[runner_up]
    ahead, behind = int((lead > 0).sum()), int((lead < 0).sum())
    level = len(lead) - ahead - behind
    counts = f"ahead in {ahead}{f', behind in {behind}' if behind else ''}{f', level in {level}' if level else ''} of {len(lead)}"
    return f" (per seed: {counts}, from {lead.min():+.2g} to {lead.max():+.2g})"


def resolve_grid(runs: pd.DataFrame, study: dict, finals: pd.DataFrame) -> tuple[pd.DataFrame, dict, str]:
    """For a grid experiment: each variant at its own configured value (<variant>_default) and at
    the grid value with the best mean validation score (<variant>_tuned), plus the grid table.
    `runs` are relabelled (one row per epoch, or per run where they are the `finals` themselves),
    `finals` are scored (metrics.per_run: one row per run)."""
    spec = study["experiment"]
    labels = grid_runs(spec["variants"], spec["grid"])
    tune_on = spec.get("tune_on", "val_acc")
    shown_on = tune_on.replace("val_", "test_")
    sign = 1 if tune_on == "val_acc" else -1  # the score to maximise: accuracy, or minus the (log) loss
    shown = ".3f" if sign > 0 else ".3g"  # losses of a fit span decades
    # a seed without a finite score (a diverged run's loss) makes its grid point the worst: a mean
    # over the seeds that survived would score a point where most diverged on its lucky ones
    scores = sign * finals[tune_on]
    finite_scores = scores.where(np.isfinite(scores), -np.inf)
    val = finite_scores.groupby(finals["variant"]).mean()
    unscored = (~np.isfinite(scores)).groupby(finals["variant"]).sum()
    # every grid point runs the same seeds: seed -> score, one column per point, to read a lead seed by seed
    by_seed = (pd.DataFrame({"variant": finals["variant"], "seed": finals["seed"], "score": finite_scores})
               .pivot_table(index="seed", columns="variant", values="score", aggfunc="first")
               if "seed" in finals else pd.DataFrame())
    test = finals.groupby("variant")[shown_on].mean()
    runs_of = finals.groupby("variant").size()
    # a mean over seeds of which some diverged hides a split (two seeds at 0.96, three at chance: 0.44)
    diverged = (finals["status"] == "diverged").groupby(finals["variant"]).sum() if "status" in finals else pd.Series(dtype=int)
    views, keys, at_edge, untrained_at, view_runs = [], list(spec["grid"]), [], [], {}
    header = ["variant", *(f"{k.rsplit('.', 1)[-1]}={v}" for k in keys for v in spec["grid"][k]), "tuned",
              "its lead over the runner-up (val)", "default"]
    rows, off_grid = [], []
    near_ties = {}  # a _tuned variant whose point leads the runner-up in at most half the seeds: judged there too
    edges = {}  # a _tuned variant whose best grid point (alone or tied) is an end of its grid: where, in words
    for base, partial in spec["variants"].items():
        mine = [label for label, (b, _) in labels.items() if b == base]
        scored = [label for label in mine if label in val.index and pd.notna(val[label])]
        # the variant's own value of each grid key, as the runner resolved it without the grid
        own = study.get("grid_defaults", {}).get(base) or {key: OmegaConf.select(OmegaConf.create(partial), key)
                                                          for key in keys}
        best = max((val[label] for label in scored), default=math.nan)
        # points whose mean scores differ only by float rounding tie; the first in grid order is taken
        tied = [label for label in scored if math.isclose(val[label], best, rel_tol=1e-9, abs_tol=1e-12)]
        chosen = {"tuned": tied[0] if tied else None,
                  "default": next((label for label in mine if all(
                      own.get(key) == value for key, value in labels[label][1].items())), None)}
        if chosen["default"] is None:
            off_grid.append(base)
        point = {kind: ", ".join(map(_shown, labels[label][1].values()))
                 if label else "–" for kind, label in chosen.items()}
        runner_up = max((label for label in scored if label not in tied), key=lambda label: val[label], default=None)
        gap = best - val[runner_up] if runner_up else math.nan
        # a classifier that learned at no grid point (every run diverged, kept its loss or ended near
        # chance): the argmax picks among runs that did not learn (a net at chance: which digit each
        # seed guesses); only a value beyond the grid might train it, so it counts as at the grid's edge
        own_runs = finals[finals["variant"].isin(mine)]
        untrained = (len(scored) > 1 and {"failed_to_learn", "test_acc"} <= set(own_runs)
                     and bool(own_runs["test_acc"].notna().all() and (own_runs["failed_to_learn"] == 1).all()))
        lead = ("–" if len(scored) < 2 or not math.isfinite(best) else
                "none: every run at every grid point failed to learn, so the choice is arbitrary" if untrained else
                f"0: {len(tied)} points tie for best, the first in grid order is taken" if len(tied) > 1 else
                "each other point has a diverged seed" if gap == math.inf else
                f"{gap:.2g}{_seeds_ahead(by_seed, tied[0], runner_up)}")  # .2g: a lead of one validation image is not shown as 0
        rows.append([base, *(f"{sign * val[label]:{shown}} ({test[label]:{shown}})"
                             + (f"; {diverged[label]} of {runs_of[label]} diverged" if diverged.get(label, 0) else "")
                             if label in val.index and math.isfinite(val[label])
                             else f"not finite (no finite score in {unscored[label]} of {runs_of[label]} seeds)"
                             if label in val.index and pd.notna(val[label])
                             else "–" for label in mine), point["tuned"], lead, point["default"]])
        if len(tied) == 1 and runner_up and not untrained and math.isfinite(gap) and {tied[0], runner_up} <= set(by_seed):
            pair = by_seed[[tied[0], runner_up]].dropna()
            ahead = int((pair[tied[0]] > pair[runner_up]).sum())
            if len(pair) >= 2 and ahead <= len(pair) / 2:  # validation does not tell the two points apart
                rival = finals[finals["variant"] == runner_up].set_index("seed")
                near_ties[f"{base}_tuned"] = {
                    "taken": _point(labels[tied[0]][1]), "runner_up": _point(labels[runner_up][1]), "ahead": ahead,
                    "seeds": len(pair), "values": {column: rival[column].to_dict() for column in rival
                                                   if pd.api.types.is_numeric_dtype(rival[column])}}
        on_edge = [label for label in tied if _ends(labels[label][1], spec["grid"])]  # a tie reaching the edge counts too
        if untrained:
            untrained_at.append(base)
            edges[f"{base}_tuned"] = f"{_point(labels[tied[0]][1])}, though no grid point trains it (every run failed to learn)"
        elif on_edge:
            at_edge.append(f"{base} ({', '.join(on_edge)})")
            taken, edge = _point(labels[tied[0]][1]), labels[on_edge[0]][1]
            where = " and ".join(_ends(edge, spec["grid"]))
            edges[f"{base}_tuned"] = (f"{taken}: every grid point scores alike on validation" if len(tied) == len(scored) > 1
                                      else f"{taken}, {where}" if on_edge[0] == tied[0]
                                      else f"{taken}, tied with {_point(edge)}, {where}")
        for kind, label in chosen.items():
            if label is not None:
                views.append(runs[runs["variant"] == label].assign(variant=f"{base}_{kind}", grid_run=label))
                view_runs[f"{base}_{kind}"] = label
    # a variant whose own value is not on the grid has no `_default` run, and none is waited for
    view_names = [f"{b}_{kind}" for kind in ("default", "tuned") for b in spec["variants"]
                  if kind == "tuned" or b not in off_grid]
    resolved = {**study, "experiment": {**spec, "variants": {name: {} for name in view_names}}, "view_runs": view_runs,
                "grid_edges": edges, "near_ties": near_ties}
    edge_note = ([f"Best value (alone or tied) at the edge of the grid, so tuning may be incomplete for: {', '.join(at_edge)}.", ""]
                 if at_edge else [])
    edge_note += ([f"No grid point trains {', '.join(untrained_at)}: every run failed to learn, so the tuned value is "
                   "arbitrary (a choice among runs that did not learn), and only a value beyond the grid might train "
                   "it; the grid-edge caveat counts it as at an edge.", ""] if untrained_at else [])
    edge_note += ([f"Own value not on the grid, so no `_default` run: {', '.join(off_grid)}.", ""] if off_grid else [])
    what = {"val_acc": "accuracy", "val_loss": "loss"}.get(tune_on, "log10 loss")
    grid_md = "\n".join([f"Validation {what} (test {what}) of every grid point, mean over seeds; "
                          f"`_tuned` takes the {'best' if sign > 0 else 'lowest'} validation {what}, never the test set:",
                          "", *pipe_table(header, rows), "",
                          *edge_note])
    return (pd.concat(views, ignore_index=True) if views else runs.iloc[0:0]), resolved, grid_md
