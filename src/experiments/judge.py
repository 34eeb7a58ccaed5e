"""A claim's rule applied to a study: its checks as the verdict engine takes them, the verdict
from the per-run values, and whether the experiment file's rule changed since."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments import store, verdicts
from experiments.config import CONFIG_DIR
from experiments.metrics import AT_INITIALISATION, BEST_VALUE, BINARY_METRICS, FIXED_METRICS, FOLLOWS_TUNING, per_epoch


def checks_of(rule: dict, study: dict | None = None) -> list[verdicts.Check]:
    """The claim's checks as the engine takes them; under the lecture protocol as the experiment
    file sets it (no setting changed on the command line), plus a size check (equivalence within
    ±tolerance) for each variant the lecture gives a number for."""
    raw = rule.get("checks") or [{"better": rule["better"], "worse": rule["worse"]}]
    if study and study["experiment"].get("grid"):  # a plain variant name means the variant at its tuned value
        def tuned(name: str) -> str:
            return name if name.endswith(("_default", "_tuned")) else f"{name}_tuned"

        raw = [{**c, **{side: tuned(c[side]) for side in ("better", "worse") if c.get(side)},
                **({"versus": [tuned(v) for v in c["versus"]]} if c.get("versus") else {}),
                **({"pairs": [[tuned(v) for v in pair] for pair in c["pairs"]]} if c.get("pairs") else {})} for c in raw]
    checks = [verdicts.Check(better=c["better"], worse=c.get("worse") or None, value=c.get("value"),
                             metric=c.get("metric") or rule["metric"], kind=c.get("kind", "beats"),
                             margin=c.get("margin", 0.0), lower_is_better=c.get("lower_is_better", False),
                             key=c.get("key", True), note=c.get("note", ""),
                             versus=tuple(c["versus"]) if c.get("versus") else None,
                             pairs=tuple(tuple(pair) for pair in c["pairs"]) if c.get("pairs") else None,
                             premise=c.get("premise", False)) for c in raw]
    if (study is not None and study.get("protocol") == "lecture" and rule.get("tolerance") is not None
            and not store.setting_overrides(study)):
        checks += [verdicts.Check(better=variant, value=number, metric=rule["metric"], kind="equivalent",
                                  margin=rule["tolerance"], key=False, note="size: the lecture's number")
                   for variant, number in study["experiment"].get("lecture", {}).items()]
    return checks


def rule_metrics(study: dict) -> set[str]:
    """The per-run metrics a study's rule reads: those its checks test and, for a grid, the
    validation score it tunes on and the test score the grid table shows beside it."""
    used = {check.metric for check in checks_of(study["experiment"]["verdict"], study)}
    if study["experiment"].get("grid"):
        tune_on = study["experiment"].get("tune_on", "val_acc")
        used |= {tune_on, tune_on.replace("val_", "test_")}
    return used


def decide(summary: pd.DataFrame, finals: pd.DataFrame, study: dict) -> dict:
    """The experiment's checks, tested by the verdict engine on the per-seed values."""
    by_variant = summary.set_index("variant")
    incomplete = by_variant[by_variant["n"] < by_variant["n_expected"]]
    if len(incomplete):
        parts = [f"{v}: {int(r.n)} of {int(r.n_expected)} seeds" for v, r in incomplete.iterrows()]
        return {"verdict": "incomplete", "reason": "missing runs (" + "; ".join(parts) + ")", "checks": []}
    checks = checks_of(study["experiment"]["verdict"], study)
    values = {(c_variant, metric): finals.loc[finals["variant"] == c_variant, metric].to_numpy()
              for check in checks for c_variant in check.variants
              for metric in [check.metric] if metric in finals}
    result = verdicts.decide(checks, values, binary=BINARY_METRICS, fixed=FIXED_METRICS, best_values=BEST_VALUE)
    n = int(by_variant["n"].min()) if len(by_variant) else 0
    return {"verdict": result.verdict, "headline": f"n = {n} seeds per variant; {result.headline()}",
            "reason": f"n = {n} seeds per variant; " + result.reason(),
            "checks": [o.as_dict() for o in result.outcomes], "possible": result.possible,
            **({"premise": result.premise} if result.premise else {}),
            **({"grid_edges": edge_caveats(result.outcomes, study["grid_edges"], values,
                                           study["experiment"].get("tune_on", "val_acc"))}
               if "grid_edges" in study else {}),
            **({"near_ties": tie_caveats(result, values, finals, study["near_ties"])} if "near_ties" in study else {})}


WOULD = {verdicts.HOLDS: "hold", verdicts.FAILS: "fail", verdicts.INCONCLUSIVE: "be open"}
NOW = {verdicts.HOLDS: "holds", verdicts.FAILS: "fails", verdicts.INCONCLUSIVE: "open"}


def tie_caveats(result: verdicts.Verdict, values: dict[tuple[str, str], np.ndarray], finals: pd.DataFrame,
                near_ties: dict[str, dict]) -> list[dict]:
    """Decisions that a choice the validation split cannot make would change: a `_tuned` variant whose
    point leads its grid's runner-up in at most half the seeds (tuning.resolve_grid) is judged again
    with the runner-up's runs, every other variant as tuned. Each caveat: its text, how many key
    checks (or premises) change status, and the verdict there."""
    notes = []
    for tuned, tie in near_ties.items():
        seeds = finals.loc[finals["variant"] == tuned, "seed"].tolist()
        # a check must read the variant, and the runner-up must have run every seed it did
        if not any(variant == tuned for variant, _ in values) or any(
                seed not in column for column in tie["values"].values() for seed in seeds):
            continue
        swapped = {(variant, metric): np.array([tie["values"][metric][seed] for seed in seeds])
                   if variant == tuned and metric in tie["values"] else array for (variant, metric), array in values.items()}
        again = verdicts.decide([o.check for o in result.outcomes], swapped, binary=BINARY_METRICS, fixed=FIXED_METRICS,
                                best_values=BEST_VALUE)
        changed = [(now, then) for now, then in zip(result.outcomes, again.outcomes) if now.status != then.status]
        if not changed:
            continue
        notes.append({"key_changes": sum(now.check.key or now.check.premise for now, _ in changed),
                      "verdict": again.verdict,
                      "text": f"{tuned} took {tie['taken']}, ahead of {tie['runner_up']} on validation in only {tie['ahead']} "
                              f"of {tie['seeds']} seeds; judged at {tie['runner_up']}, "
                              + "; ".join(f"{'' if now.check.key else '(not a key check) '}'{now.check.short()}' would "
                                          f"{WOULD[then.status]} (now {NOW[now.status]})" for now, then in changed)
                              + (f", and the verdict would be {again.verdict} (now {result.verdict})"
                                 if again.verdict != result.verdict else ", the verdict unchanged")})
    return notes


def edge_caveats(outcomes: list[verdicts.Outcome], edges: dict[str, str],
                 values: dict[tuple[str, str], np.ndarray], tune_on: str = "val_acc") -> list[dict]:
    """Decided checks that the reach of a grid may have decided. A variant that does best at an end
    of its grid might do better beyond it, so its tuning may be incomplete. On the test score that
    follows the tuning score (FOLLOWS_TUNING, read in its own direction) a decision rests on one
    side's shortfall, the worse side of a check that holds or the better side of one that fails, and
    only that side is named; an equivalence can break on either side, and how a rate that scores
    better on validation moves any other metric (a training error, a weight norm) is not known, so
    there every variant at an edge is named. A variant on the side a decision rests on that is at its
    metric's best value in every seed (a training error of 0) cannot do better and is not named, nor
    is a check on a metric of the untrained net (AT_INITIALISATION), which no rate can move.
    `edges`: each `_tuned` variant at an edge, with where it does best (tuning.resolve_grid);
    `values`: the per-seed values the checks read. Each caveat: its text, whether its check is a key
    check, and whether the verdict rests on the decision alone: a key check or a premise, or the one
    side check that fails where every key check holds (making the claim 'partly'); where a premise
    fails, only the premises."""
    every_key_holds = all(o.status == verdicts.HOLDS for o in outcomes if o.check.key)
    premise_failed = any(o.check.premise and o.status == verdicts.FAILS for o in outcomes)
    side_failures = sum(not o.check.key and not o.check.premise and o.status == verdicts.FAILS for o in outcomes)
    notes = []
    for o in outcomes:
        c = o.check
        if (o.status not in (verdicts.HOLDS, verdicts.FAILS) or isinstance(o.diff, verdicts.Fact)
                or c.metric in AT_INITIALISATION):
            continue
        # a better score of these raises the check's advantage; of the others, lowers it
        raising = [c.better, *(c.versus[1:] if c.versus else ()), *(better for better, _ in c.pairs or ())]
        lowering = [*([c.worse] if c.worse else []), *(c.versus[:1] if c.versus else ()), *(worse for _, worse in c.pairs or ())]
        rests_on = [] if c.kind == "equivalent" else lowering if o.status == verdicts.HOLDS else raising
        follows = bool(rests_on) and FOLLOWS_TUNING.get(tune_on, {}).get(c.metric) == c.lower_is_better
        best = BEST_VALUE.get(c.metric)

        def at_best(variant: str) -> bool:  # every seed at the metric's best value: nothing does better
            return (variant in rests_on and best is not None and (best == 0.0) == c.lower_is_better
                    and verdicts.all_at(values.get((variant, c.metric)), best))

        under = [v for v in (rests_on if follows else c.variants) if v in edges and not at_best(v)]
        if not under:
            continue
        boundary = {"beats": c.margin, "not_worse": -c.margin}.get(c.kind)
        distance = abs(o.diff.estimate - boundary) if boundary is not None else abs(c.margin - abs(o.diff.estimate))
        decides = c.premise if premise_failed else (
            c.key or c.premise or (o.status == verdicts.FAILS and every_key_holds and side_failures == 1))
        notes.append({"key": c.key, "decides": decides,
                      "text": f"{c.compared} on {c.metric} ({c.kind.replace('_', ' ')}) {o.status}, "
                              f"{'its difference' if boundary is None else 'its advantage'} {o.diff.estimate:+.3g} lying "
                              f"{distance:.3g} from the decision's boundary, and "
                              + " and ".join(f"{v} does best at {edges[v]}" for v in under) + ": "
                              + ("a value beyond the grid might improve " + ("it" if len(under) == 1 else "them")
                                 + " and narrow that distance" if follows else
                                 f"how a value beyond the grid would move {c.metric} is not known")})
    return notes


def reads_curves(check: verdicts.Check) -> bool:
    """Whether closing_gaps can read the check's gap over training: two variants compared directly."""
    return check.kind in ("beats", "not_worse") and check.worse is not None and not check.contrast


def gap_prefix(check: verdicts.Check) -> str:
    """How a budget note of the check begins: a 'beats' check's lead, a 'not worse' check's deficit."""
    gap = "lead over" if check.kind == "beats" else "deficit to"
    return f"{check.better}'s {gap} {check.worse} in {check.metric} "


def closing_gaps(runs: pd.DataFrame, study: dict) -> list[str]:
    """Checks whose gap shrank by more than half over the second half of training: a 'beats' check's
    lead, or the deficit of a 'not worse' check's better side where it still exceeds the margin (the
    whole deficit halving, as a lead does, not just its part beyond the margin). A longer budget
    might close them, so there the check measures convergence speed as much as the state training
    ends in (the caveat the report prints under the verdict)."""
    notes = []
    for check in checks_of(study["experiment"]["verdict"], study):
        values = per_epoch(runs, check.metric)
        if values is None or not reads_curves(check):
            continue
        measured = runs.assign(value=values).dropna(subset=["value"])
        curves = [measured[measured["variant"] == v].groupby("epoch")["value"].mean() for v in (check.better, check.worse)]
        epochs = curves[0].index.intersection(curves[1].index)
        last = epochs.max() if len(epochs) else 0
        middle = epochs[(epochs >= 1) & (epochs <= last / 2)]
        if not len(middle):
            continue
        sign = -1 if check.lower_is_better else 1
        # a 'beats' check's lead; a 'not worse' check's deficit, which only past the margin decides it
        gap = {epoch: (1 if check.kind == "beats" else -1) * sign * (curves[0][epoch] - curves[1][epoch])
               for epoch in (middle.max(), last)}
        floor = 0 if check.kind == "beats" else check.margin
        if floor < gap[last] < gap[middle.max()] / 2:
            beyond = f", still above the margin {check.margin:g}" if check.kind == "not_worse" else ""
            notes.append(f"{gap_prefix(check)}shrank from {gap[middle.max()]:.3g} at epoch {middle.max()} to "
                         f"{gap[last]:.3g} at epoch {last}{beyond}: a longer budget may close it")
    return notes


def kept_gap_notes(notes: list[str], stored: dict, adopted: dict, runs_then: dict, runs_now: dict) -> list[str]:
    """The budget notes an analysis with the curves made under the stored rule that still apply under
    the adopted one (judged again without the runs, the curves are gone): those of checks both rules
    make alike (for a 'not worse' check, with the same margin, which decides whether a note is made),
    between the same runs (runs_then, runs_now: the grid point each _tuned variant took, view_runs)."""
    def curve_checks(study: dict, view_runs: dict) -> dict[tuple, str]:
        return {(c.better, c.worse, view_runs.get(c.better), view_runs.get(c.worse), c.metric, c.lower_is_better, c.kind,
                 c.margin if c.kind == "not_worse" else None): gap_prefix(c)
                for c in checks_of(study["experiment"]["verdict"], study) if reads_curves(c)}

    before = curve_checks(stored, runs_then)
    still = tuple(before[same] for same in before.keys() & curve_checks(adopted, runs_now).keys())
    return [note for note in notes if still and note.startswith(still)]


# what analysis alone may take from the current experiment file: how runs are judged and shown,
# never what they ran
RULE_KEYS = ("verdict", "tune_on", "lecture", "lecture_label", "figures", "title", "claim")


def current_rule(name: str) -> dict:
    """The experiment file's rule as it is now (configs/name/<name>.yaml)."""
    spec = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml").experiment)
    return {key: spec[key] for key in RULE_KEYS if key in spec}


def rule_changed(study: dict) -> bool:
    """True when the experiment file now judges the study's runs by other checks, or tunes its grid on
    another validation score, than it did."""
    try:
        now = current_rule(study["experiment"]["name"])
    except (OSError, KeyError):
        return False
    rule_then, rule_now = study["experiment"]["verdict"], {**study["experiment"]["verdict"], **now.get("verdict", {})}
    tuned_on = (study["experiment"].get("tune_on", "val_acc"), now.get("tune_on", "val_acc"))
    return (checks_of(rule_then, study) != checks_of(rule_now, study)
            or now.get("lecture", {}) != study["experiment"].get("lecture", {})
            or bool(study["experiment"].get("grid")) and tuned_on[0] != tuned_on[1])
