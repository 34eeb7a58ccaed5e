"""`python -m experiments.report [results_dir]`: results/REPORT.md, every claim the suite covers,
its evidence and verdict, rebuilt from the committed study files alone (no training, no runs/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import caveats, judge, revisions, settings
from experiments.tables import markdown_table, metric_digits, pipe_table, settings_markdown, table_markdown, verdict_lines
from experiments.config import CONFIG_DIR, IMAGE_ARCHITECTURES, experiment_names
from experiments.metrics import FIXED_METRICS, add_log10_losses, known_metrics, meaning
from experiments.errors import UserError
from experiments.store import SEEDS_FILE, study_digest, write_atomic

PROTOCOLS = ("lecture", "modern")
REPRODUCTION_FILE = "reproduction.json"  # written by scripts/reproduce_all.py


def experiment_spec(name: str) -> dict:
    """The experiment block of configs/name/<name>.yaml, for claims that have no results yet."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml").experiment)


def uncovered_claims(specs: dict[str, dict]) -> dict[str, dict]:
    """The claims of configs/claims.yaml (CLAIMS.md's 24) without an experiment file yet, as
    stand-in specs: their section and claim."""
    claims = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "claims.yaml"))
    return {name: {"section": section, "claim": claim} for section, named in claims.items()
            for name, claim in named.items() if name not in specs}


def load_outcome(study_dir: Path) -> dict | None:
    """A study's stored verdict, summary and spec; None if it never ran."""
    try:
        verdict = json.loads((study_dir / "verdict.json").read_text())
        study_json = (study_dir / "study.json").read_text()
        study = json.loads(study_json)
        summary = pd.read_csv(study_dir / "summary.csv")
    except (OSError, ValueError):
        return None
    try:  # what the per-run table could re-judge: its columns, and the log10 losses they give
        seed_columns = set(add_log10_losses(pd.read_csv(study_dir / SEEDS_FILE, nrows=0)).columns)
    except (OSError, ValueError):
        seed_columns = set()
    # verdicts written before the digest was stored (2026-12-06) cannot be told apart
    unanalysed = "study_digest" in verdict and verdict["study_digest"] != study_digest(study_json)
    return {"verdict": verdict, "study": study, "summary": summary, "seed_columns": seed_columns, "unanalysed": unanalysed}


def command(name: str, protocol: str) -> str:
    return f"python -m experiments name={name}" + ("" if protocol == "lecture" else f" protocol={protocol}")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


REPO = Path(__file__).resolve().parents[2]


def judged(outcome: dict, name: str) -> tuple[str, str]:
    """The verdict to show and why it may not stand: a study judged by the rule before the verdict
    engine, or run before its experiment file last changed, shows as 'pending re-run'. (The
    experiment's `grid` does not apply to a study whose protocol has its own in `protocol_grids`.)"""
    verdict = outcome["verdict"]
    if outcome.get("unanalysed"):
        return PENDING, ("its study.json was rewritten after its verdict was judged: a run of the study is under way, "
                         "or stopped before its analysis; finish it (the same command again) for a verdict")
    if verdict["verdict"] != "incomplete" and "checks" not in verdict:
        return PENDING, ("these runs were judged by the previous rule (non-overlapping 95% CIs of the two means), "
                         "which the verdict engine replaced; re-run the study for a verdict")
    # a change after the last commit its runs were made at reached none of them (one between two
    # such commits may have reached some, and a re-run redoes just those); where git cannot order
    # the commits, a change after any of them counts
    commits = verdict.get("git_commits", [])
    newest = revisions.newest_commit(REPO, commits)
    if commits:
        protocol = outcome["study"].get("protocol", "lecture")
        own_grid = protocol in experiment_spec(name).get("protocol_grids", {})
        since = {k: None for commit in ([newest] if newest else commits)
                 for k in revisions.stale_keys(REPO, f"configs/name/{name}.yaml", commit) or []}
        changed = [k for k in since
                   if not k.startswith(tuple(f"experiment.{key}" for key in judge.RULE_KEYS))
                   and not (k.startswith("experiment.protocol_grids.")  # another protocol's grid
                            and not k.startswith(f"experiment.protocol_grids.{protocol}."))
                   and not (own_grid and k.startswith("experiment.grid."))]
        if changed:
            return PENDING, ("the experiment file changed what these runs ran (" + ", ".join(f"`{k}`" for k in changed[:6])
                             + (" …" if len(changed) > 6 else "") + "); re-run the study for a verdict")
    if judge.rule_changed(outcome["study"]):
        study = outcome["study"]
        lacking = sorted(judge.rule_metrics({**study, "experiment": {**study["experiment"], **judge.current_rule(name)}})
                         - outcome.get("seed_columns", set()))
        if lacking:
            return PENDING, (f"the experiment file's checks or tuning changed after this analysis, and the study's "
                             f"committed {SEEDS_FILE} lacks {', '.join(lacking)}; re-run the study for a verdict "
                             f"(where its runs/ folder is at hand, `python -m experiments.analysis results/{name}/<protocol> "
                             "--current-rule` re-judges them)")
        return PENDING_ANALYSIS, (f"the experiment file's checks or tuning changed after this analysis; "
                         f"`python -m experiments.analysis results/{name}/<protocol> --current-rule` re-judges the runs "
                         "(without them, from the study's seeds.csv)")
    if verdict.get("checks") and aligned_checks(outcome) is None:
        return PENDING_ANALYSIS, ("its verdict was judged with other checks than the verdict engine now draws from its "
                                  "study (the engine changed since: a study given settings on the command line is no "
                                  "longer held to the lecture's numbers); `python -m experiments.analysis <its folder> "
                                  "--current-rule` re-judges the runs (without them, from the study's seeds.csv)")
    return verdict["verdict"], ""


PENDING, PENDING_ANALYSIS = "pending re-run", "pending re-analysis"


def waits_for(name: str, protocol: str) -> str | None:
    """The hardware the experiment file leaves its study under `protocol` to ("a GPU"), if it names one."""
    return experiment_spec(name).get("rerun_waits_for", {}).get(protocol)


def trains_conv_nets(name: str) -> bool:
    """Whether an experiment file trains a conv net (its base model or any variant's)."""
    experiment = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml"))
    models = [experiment.get("model") or {}] + [v.get("model") or {} for v in experiment["experiment"]["variants"].values()]
    return any(model.get("arch") in IMAGE_ARCHITECTURES for model in models)


def runs_and_time(verdict: dict) -> str:
    """A study's run count and training time, naming the studies it copied runs from."""
    copied = verdict.get("copied_seconds", {})
    sources = ", ".join(f"{study.replace('/', ' (', 1)})" if study.count("/") == 1 else study for study in copied)
    return (f"{verdict.get('runs', '?')} runs" + (f" ({verdict['copied_runs']} of them copied from {sources}, which trained "
            f"them with the same settings and seeds: {minutes(sum(copied.values()))} of the training time here)" if copied else "")
            + f", {minutes(verdict.get('train_seconds', 0.0))} of training")


AIMED_SECONDS = 90 * 60  # a full lecture reproduction on a 2-core CPU, conv nets aside (the aim it is measured against)


def training_time_line(outcomes: dict) -> str:
    """Each protocol's training time added up, the lecture protocol's also without the conv nets (the
    full lecture reproduction's cost on a CPU is judged without them). A run copied from another
    study counts once: there, when that study is among these."""
    reported = {f"{name}/{protocol}" for (name, protocol), outcome in outcomes.items() if outcome}
    seconds = {protocol: {name: o["verdict"].get("train_seconds", 0.0)
                          - sum(s for study, s in o["verdict"].get("copied_seconds", {}).items() if study in reported)
                          for (name, p), o in outcomes.items() if o and p == protocol} for protocol in PROTOCOLS}
    total = sum(sum(by_name.values()) for by_name in seconds.values())
    conv = sorted(name for name in seconds["lecture"] if trains_conv_nets(name))
    parts = [f"{protocol} protocol {minutes(sum(by_name.values()))}" for protocol, by_name in seconds.items()]
    without = sum(s for name, s in seconds["lecture"].items() if name not in conv)
    return (f"Training time of every study below, added up: {minutes(total)} ({', '.join(parts)}); each run's own "
            f"training time on its device, which the study's section names; a run copied from another study (the "
            f"same settings and seed) counts once. Under the lecture protocol the studies "
            f"without conv nets add up to {minutes(without)} (those with conv nets: {', '.join(conv)}): a full lecture "
            f"reproduction without the conv nets trains for about half that on a 2-core CPU running two one-thread "
            f"runs at a time: by that estimate {without / 2 / AIMED_SECONDS:.1f} times the suite's aim of about "
            f"{AIMED_SECONDS // 60} min for it ({sum(seconds['lecture'].values()) / 2 / AIMED_SECONDS:.1f} times with the conv nets). Five seeds "
            f"and a rate grid per variant multiply the runs, and on the lecture's 500-unit nets the loop already "
            f"trains at most of the CPU's matmul rate ([BENCH.md](BENCH.md)): the way to minutes is a GPU.")


def pending_reruns(results_dir: Path) -> list[tuple[str, str]]:
    """(experiment, protocol) of every study whose committed verdict shows as 'pending re-run'."""
    return [(name, protocol) for name in experiment_names() for protocol in PROTOCOLS
            if (outcome := load_outcome(results_dir / name / protocol)) and judged(outcome, name)[0] == PENDING]


def headline(outcome: dict) -> str:
    """The numbers the claim is about: the first key check's variants (one, where it is compared
    with a fixed number), mean ± 95% CI in the table's metric; for a check on another metric, its
    own numbers from the verdict: the variant's mean and 90% interval against the fixed number, or
    the advantage and its 90% interval."""
    rule = outcome["study"]["experiment"]["verdict"]
    checks = judge.checks_of(rule, outcome["study"])
    keys = [(i, c) for i, c in enumerate(checks) if c.key]
    # a count the architecture fixes says less about the runs than a measured key check, where there is one
    index, key = next(((i, c) for i, c in keys if c.metric not in FIXED_METRICS), keys[0])
    return headline_numbers(outcome, rule, index, key) + needs(key)


def still_open(verdict: dict, shown: str) -> str:
    """For an inconclusive verdict, what it can still become and where its key checks stand: a bare
    'inconclusive' reads as 'maybe true' where most key checks already fail; for 'partly', how much
    of the claim held."""
    key = [c["status"] for c in verdict.get("checks", []) if c["key"]]
    standing = f"key checks {key.count('holds')} hold, {key.count('fails')} fail, {key.count('inconclusive')} open"
    if shown == "partly":
        return f": {standing}"
    if shown != "inconclusive":
        return ""
    if verdict.get("premise") == "fails":
        return f": a premise of the claim fails, so it was not tested ({standing})"
    if verdict.get("premise") == "inconclusive":
        return f": a premise is open; if it holds, {' or '.join(verdict['possible'])} ({standing})"
    return f": {' or '.join(verdict['possible'])}; {standing}" if verdict.get("possible") else ""


def aligned_checks(outcome: dict) -> list[tuple] | None:
    """The study file's checks beside the verdict's results, (Check, result) in order; None where the
    verdict was judged by other checks (its statements differ)."""
    tested = outcome["verdict"].get("checks", [])
    checks = judge.checks_of(outcome["study"]["experiment"]["verdict"], outcome["study"])
    if len(checks) != len(tested) or any(c.statement() != t["statement"] for c, t in zip(checks, tested)):
        return None
    return list(zip(checks, tested))


def unsettled_checks(outcome: dict, shown: str, most: int = 2) -> str:
    """Which key checks fail and which are open, for a verdict short of reproduced: a count alone
    sends the reader to the section to learn which part of the claim did not hold. Where a premise
    withheld the verdict, the premises that fail or are open instead (the key checks were not
    tested); where a failing side check alone makes it 'partly', that check. Each is quoted as it
    states the claim, in a few words (verdicts.Check.short), with what was observed, so that a
    failing "a beats b" does not read as a finding; a kind with more than `most` checks is left to
    the section (the counts beside say how many)."""
    pairs = None if shown in (PENDING, PENDING_ANALYSIS, "reproduced") else aligned_checks(outcome)
    if not pairs:
        return ""
    if outcome["verdict"].get("premise"):
        kinds = [("premise failing", [p for p in pairs if p[0].premise and p[1]["status"] == "fails"]),
                 ("premise open", [p for p in pairs if p[0].premise and p[1]["status"] == "inconclusive"])]
    else:
        kinds = [("failing", [p for p in pairs if p[1]["key"] and p[1]["status"] == "fails"]),
                 ("open", [p for p in pairs if p[1]["key"] and p[1]["status"] == "inconclusive"])]
        if shown == "partly" and not kinds[0][1]:  # no key check fails: a side check made it partly
            kinds.append(("side check failing", [p for p in pairs if not p[1]["key"] and not p[0].premise
                                                 and p[1]["status"] == "fails"]))
    parts = [f"{word}: " + "; ".join(f"'{check.short()}'{observed(check, result)}" for check, result in named)
             for word, named in kinds if 0 < len(named) <= most]
    saturated = [p for _, named in kinds if len(named) > most for p in named if "saturated_at" in p[1]]
    if saturated:  # left unnamed, but not to be read as "maybe true"
        parts.append(f"{len(saturated)} open with every seed at its metric's best value, which more seeds are unlikely to settle")
    return f" ({' · '.join(parts)})" if parts else ""


def observed(check, result: dict) -> str:
    """What a check found, beside its statement, as its section's line gives it: the oriented
    advantage (a difference, for equivalence), or the variant's own value where it is compared with
    a number; a measure at its best value in every seed says so."""
    if "saturated_at" in result:
        return f" (every seed at {result['saturated_at']:g}, the best value: more seeds are unlikely to settle it)"
    if result["difference"] is None:
        return ""
    digits = ",.10g" if check.metric in FIXED_METRICS and not check.contrast else ".3g"  # a count is exact
    if check.value is not None:
        return f" (observed {check.own_value(result['difference']):{digits}})"
    return f" ({'difference' if check.kind == 'equivalent' else 'advantage'} {result['difference']:+{digits}})"


def normal_model_only(outcome: dict, shown: str) -> str:
    """How many key checks' decisions no exact test backs: one an exact randomization test of the
    same seeds would leave open, or a contrast of several variants, which has none (their lines say
    'rests on the normal model'); so that the row does not read firmer than its section."""
    pairs = None if shown in (PENDING, PENDING_ANALYSIS) else aligned_checks(outcome)
    count = sum(1 for check, result in pairs or [] if result["key"] and result["status"] != "inconclusive"
                and ("exact_p_holm" in result or check.contrast))
    if not count:
        return ""
    return ("; 1 decision rests on the normal model alone (an exact test of these seeds would leave it open)" if count == 1
            else f"; {count} decisions rest on the normal model alone (an exact test of these seeds would leave them open)")


def at_grid_edge(outcome: dict, shown: str) -> str:
    """How many decisions the verdict rests on may owe something to the reach of a grid (the
    grid-edge caveat), so that the summary row does not read firmer than its section."""
    verdict = outcome["verdict"]
    if shown in (PENDING, PENDING_ANALYSIS) or not outcome["study"]["experiment"].get("grid"):
        return ""
    if "grid_edges" not in verdict:
        return "; grid-edge caveat not computed"
    count = sum(note["decides"] for note in verdict["grid_edges"])
    return (f"; {count} decision{'s' if count > 1 else ''} it rests on could change with a wider grid" if count else "")


def at_near_tie(outcome: dict, shown: str) -> str:
    """How many key checks would change status at a grid point the validation split cannot tell from
    the tuned one (the near-tie caveat), and whether the verdict would: the row must not read firmer
    than its section."""
    notes = outcome["verdict"].get("near_ties", []) if shown not in (PENDING, PENDING_ANALYSIS) else []
    count = sum(note["key_changes"] for note in notes)
    verdicts_there = sorted({note["verdict"] for note in notes if note["verdict"] != shown})
    parts = ([f"{count} key check{'s' if count > 1 else ''} would change"] if count else []) + (
        [f"the verdict would be {' or '.join(verdicts_there)}"] if verdicts_there else [])
    return f"; {' and '.join(parts)} at a rate validation cannot tell from the tuned one (near-tie caveat)" if parts else ""


def still_closing(outcome: dict, shown: str) -> str:
    """How many key checks' gaps were still closing at the last epoch (the budget caveat), so that
    the summary row does not read firmer than its section. Side checks are left to the section."""
    notes = outcome["verdict"].get("closing_gaps", []) if shown not in (PENDING, PENDING_ANALYSIS) else []
    prefixes = {judge.gap_prefix(check) for check in judge.checks_of(outcome["study"]["experiment"]["verdict"],
                                                                     outcome["study"]) if check.key}
    count = sum(any(note.startswith(prefix) for note in notes) for prefix in prefixes)  # checks, not notes
    if not count:
        return ""
    return f"; {count} check's gap still closing at the end (budget caveat)" if count == 1 else \
        f"; {count} checks' gaps still closing at the end (budget caveat)"


def changed_settings(study: dict) -> str:
    """The settings that depart from the study's protocol in every run, as its section heading names
    them: a verdict cell under 'lecture protocol' should not read as the lecture's own
    setting where the study changed it (deep_vs_fat trains ReLU nets with Adam). Runs recorded without
    settings predate the verdict engine: their cell, pending re-run, shows no verdict to qualify."""
    changed = settings.departures(study) if "settings" in study else []
    return f"; changed: {', '.join(changed)}" if changed else ""


def needs(check) -> str:
    """What the check asks of the difference, where a margin makes it more than a direction: a
    headline of two numbers alone would hide it. Against a number, in the variant's own terms."""
    if check.value is not None:
        toward, away = check.toward_away
        if check.kind == "beats":
            return f" (needs {toward} {check.own_value(check.margin):g})"
        if check.kind == "not_worse":
            return f" (needs at most {check.margin:g} {away} {check.value:g})"
        return f" (needs within ±{check.margin:g} of {check.value:g})"
    if check.kind == "beats":
        return f" (needs an advantage above {check.margin:g})" if check.margin else ""
    if check.kind == "not_worse":
        return f" (needs a deficit below {check.margin:g})"
    return f" (needs a difference within ±{check.margin:g})"


def headline_numbers(outcome: dict, rule: dict, index: int, key) -> str:
    tested = outcome.get("verdict", {}).get("checks") or []
    if (key.metric != rule["metric"] or key.contrast) and len(tested) > index and tested[index]["difference"] is not None:
        advantage, (low, high) = tested[index]["difference"], tested[index]["ci90"]
        if key.metric in FIXED_METRICS and not key.contrast:  # exact: no interval
            other = f"{key.value:,.10g}" if key.value is not None else key.worse
            mine = f" {key.own_value(advantage):,.10g}" if key.value is not None else ""
            return f"{key.metric}: {key.better}{mine} vs {other}" + ("" if key.value is not None else f", advantage {advantage:+,.10g}")
        if key.value is not None:  # the variant's own mean: the fixed number plus the oriented difference
            ends = sorted(key.own_value(x) for x in (low, high))
            return (f"{key.metric}: {key.better} {key.own_value(advantage):.3g} "
                    f"[{ends[0]:.3g}, {ends[1]:.3g}] vs {key.value:g}")
        if key.pairs:
            return (f"{key.metric}: mean of {len(key.pairs) + 1} pairs' advantages ({key.better} vs {key.worse}, …), "
                    f"{advantage:+.3g} [{low:.3g}, {high:.3g}]")
        versus = f" minus {key.versus[0]} vs {key.versus[1]}" if key.versus else ""
        return f"{key.metric}: {key.better} vs {key.worse}{versus}, advantage {advantage:+.3g} [{low:.3g}, {high:.3g}]"
    summary = outcome["summary"].set_index("variant")
    digits = metric_digits(summary["mean"])  # as the study's table shows them
    cells = []
    for variant in [key.better] + ([key.worse] if key.worse is not None else []):
        if variant in summary.index:
            row = summary.loc[variant]
            ci = f" ± {row['ci95']:.{digits}f}" if pd.notna(row["ci95"]) else ""
            cells.append(f"{variant} {row['mean']:.{digits}f}{ci}")
    return f"{rule['metric']}: " + " vs ".join(cells)


def judge_all(results_dir: Path) -> dict[tuple[str, str], tuple[dict, tuple[str, str]]]:
    """Every study folder's outcome, with the verdict to show and why it may not stand (judged():
    it reads git and the experiment file, so once per build)."""
    return {(name, protocol): (outcome, judged(outcome, name)) for name in experiment_names() for protocol in PROTOCOLS
            if (outcome := load_outcome(Path(results_dir) / name / protocol)) is not None}


def build_report(results_dir: Path, judgments: dict | None = None) -> str:
    """REPORT.md's text; `judgments` as judge_all gives them (made here when not given)."""
    from experiments.probes import probe_metrics  # torch comes with it: only when the report is built

    results_dir = Path(results_dir)
    judgments = judge_all(results_dir) if judgments is None else judgments
    # its study.json already describes the runs under way while its tables show the last analysis
    under_way = [f"{name} ({protocol})" for (name, protocol), (outcome, _) in judgments.items() if outcome.get("unanalysed")]
    if under_way:
        raise UserError(f"the study.json of {', '.join(under_way)} was rewritten after its verdict (a run under way, or "
                        "stopped before its analysis): finish it, then build the report")
    specs = {name: experiment_spec(name) for name in experiment_names()}
    for name, spec in specs.items():  # a caveat is wording, edited without a run: checked here too
        try:
            caveats.check(spec.get("caveats", []), spec.get("protocol_caveats", {}), list(PROTOCOLS),
                          known_metrics(probe_metrics(spec.get("probes", []))))
            waiting = spec.get("rerun_waits_for", {})
            if unknown := sorted(set(waiting) - set(PROTOCOLS)):
                raise UserError(f"experiment.rerun_waits_for names unknown protocol {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(PROTOCOLS)}")
            if unexplained := sorted(p for p in waiting if not spec.get("protocol_caveats", {}).get(p)):
                raise UserError(f"experiment.rerun_waits_for names {', '.join(unexplained)}, and protocol_caveats "
                                "do not say why (the report promises it)")
            if arrived := sorted(p for p in waiting if (name, p) in judgments):
                raise UserError(f"the {', '.join(arrived)}-protocol study has results now, and experiment.rerun_waits_for "
                                "still says it waits: take that protocol out of it, and the caveats saying why")
        except UserError as exc:
            raise UserError(f"configs/name/{name}.yaml: {exc}") from None
    not_covered = uncovered_claims(specs)
    order = sorted(specs, key=lambda name: (specs[name].get("section", ""), name))
    every_claim = {**specs, **not_covered}
    listed = sorted(every_claim, key=lambda name: (every_claim[name].get("section", ""), name))
    outcomes = {(name, p): judgments[(name, p)][0] if (name, p) in judgments else None for name in order for p in PROTOCOLS}
    for name in order:  # an experiment that fixes every setting the protocols differ in runs once
        if settings.protocols_identical(name):
            outcomes[(name, "modern")] = None
    shown_as = {key: judgments[key][1] for key, outcome in outcomes.items() if outcome}

    lines = ["# lecture-claims: the report", "",
             "Each claim of the lectures' *tips for training deep networks* that this suite covers, tested on real "
             "MNIST with several seeds. Tables give each variant's mean over seeds with a Student-t 95% confidence "
             "interval, min–max and n. Verdicts come from the verdict engine (`src/experiments/verdicts.py`, rules in "
             "the README): each statement of a claim is a one-sided Welch test on the difference of two variants' means, "
             "or of a contrast of several such differences (margins for non-inferiority, equivalence and 'far' stated in the experiment file; where a variant's seeds all "
             "agree, an exact randomization test too; a count the architecture fixes is compared by arithmetic), "
             "Holm-corrected within the claim's key checks and within its side checks; every key check holds and no side check fails → *reproduced*, every key check fails "
             "→ *not reproduced*, otherwise *partly*; *inconclusive* when open key checks could still tip it, or when "
             "a premise of the claim (a side check marked so, tested alone) fails or is open. Each "
             "section lists every setting of the study beside the lecture protocol's (a modern-protocol section beside "
             "the modern protocol's too), and the changes made to it after "
             "results existed. A `_tuned` variant's rate is chosen on the "
             "validation split with the same seeds whose test scores are compared, so tuned means are slightly "
             "optimistic. "
             "Generated by `python -m experiments.report` from the study folders under `results/`; do not edit by hand.",
             ""]
    recorded = {key: outcome["study"] for key, outcome in outcomes.items() if outcome}
    shared, partners = settings.shared_runs(recorded), settings.sharing(recorded)
    unrecorded = [f"{name} ({protocol})" for (name, protocol), outcome in outcomes.items()
                  if outcome and "settings" not in outcome["study"]]
    lines += ["Runs shared between studies: these variants train the same runs (the same settings, up to how often "
              "they are evaluated, and the same seeds; found from each study's recorded settings), so their numbers "
              "are one measurement and the verdicts built on them are not independent confirmations:", "",
              *(f"- {line}" for line in shared or ["none"]),
              *([f"- not compared, their runs recorded without settings: {', '.join(unrecorded)}"] if unrecorded else []), ""]
    try:
        reproduction = json.loads((results_dir / REPRODUCTION_FILE).read_text())
        covered = reproduction.get("experiments")
        newer = [name for name in order if covered is not None and name not in covered]
        scope = ("" if covered and not newer else
                 f" It did not include {', '.join(newer)} (added since)." if newer else
                 " Which claims it covered was not recorded; claims added since are not in this time.")
        lines += [f"Full reproduction: `{reproduction['command']}` took {minutes(reproduction['seconds'])} "
                  f"on {reproduction['device']} (torch {reproduction['torch']}).{scope}", ""]
    except (OSError, ValueError, KeyError):
        lines += ["Full reproduction: not recorded yet (`python scripts/reproduce_all.py`).", ""]

    lines += ["## Changes to what every study shares", "",
              "Detected in git in the shared configs (`configs/config.yaml`, the protocols, the default model, data and "
              f"optimizer) after the first results were committed; reasons from `{revisions.SHARED_RECORD}`:", "",
              *(revisions.revision_lines(REPO, revisions.SHARED_FILES, "results", revisions.shared_recorded(REPO))
                or ["- none"]), ""]
    lines += [training_time_line(outcomes), ""]
    lines += ["## Summary", "",
              "One line per claim:", "",
              "- **lecture's numbers**: the lecture's own (or where they come from), which only the lecture protocol's "
              "runs are compared with;",
              "- **lecture protocol: headline**: the two numbers its first key check compares under the lecture "
              "protocol (each variant's mean ± 95% CI in the table's metric; for a check on another metric, the "
              "variant's mean or the advantage with its 90% interval, as the check's line gives it), and what the "
              "check needs beyond a direction;",
              "- **each protocol's verdict**, with its seeds per variant; short of reproduced, where its key checks "
              "stand and, in brackets, the checks that fail and those open (where there are at most two of a kind), each "
              "quoted as it states the claim, with what was observed; or the premise that withheld the verdict, or the "
              "failing side check that made it *partly*; an inconclusive one with what it can still become;",
              "- then, where they apply: the key checks whose decision rests on the normal model alone (no exact test "
              "of the same seeds backs it), the decisions a wider grid could change, the key checks (and the verdict) "
              "that a grid point the validation split cannot tell from the tuned one would change, the key checks whose gap was "
              "still closing at the end (the caveats under its verdict), the claims whose studies train some of the "
              "same runs (listed above), and every setting that differs from that protocol's in every run (a setting "
              "that varies, as its values), as its section heading lists them;",
              "- *not run* where that protocol was not run for the claim; *not run, waiting for a GPU* where its "
              "experiment file leaves that study to a GPU (its section says why).", "",
              "The sections below give every check, and [Metrics](#metrics) what each metric they name measures. "
              f"{len(order)} studies; {len(not_covered)} claims of the lectures not covered yet are listed as *not run*.", ""]
    rows = []
    for name in listed:
        if name in not_covered:
            rows.append([name, "–", f"not covered yet: {not_covered[name]['claim']}", "not run", "not run"])
            continue
        # numbers from another data set, or a derived bound, are named by their label, not listed
        lecture_numbers = (specs[name].get("lecture_label") or
                           " · ".join(f"{v} {x:.2f}" for v, x in specs[name].get("lecture", {}).items()) or "–")
        cells = []
        for protocol in PROTOCOLS:
            outcome = outcomes[(name, protocol)]
            if outcome is None:
                same = protocol == "modern" and settings.protocols_identical(name)
                hardware = waits_for(name, protocol)
                cells.append("same runs as the lecture protocol" if same else
                             f"not run, waiting for {hardware} (its section says why)" if hardware else "not run")
                continue
            shown, _ = shown_as[(name, protocol)]
            key_metrics = {c["metric"] for c in outcome["verdict"].get("checks", []) if c["key"]}
            # a count the architecture fixes is arithmetic: its seeds are not a sample of it
            seeds = ("arithmetic on the nets' layers" if key_metrics and key_metrics <= FIXED_METRICS
                     else f"n = {int(outcome['summary']['n'].min())}")
            # a pending study's study.json may already be a new run's, not that of the runs counted here
            cells.append(f"**{shown}** ({seeds})" + still_open(outcome["verdict"], shown)
                         + unsettled_checks(outcome, shown) + normal_model_only(outcome, shown)
                         + at_grid_edge(outcome, shown) + at_near_tie(outcome, shown) + still_closing(outcome, shown)
                         + (f"; shares runs with {', '.join(partners[(name, protocol)])} (see above)"
                            if (name, protocol) in partners and shown != PENDING else "")
                         + ("" if shown == PENDING else changed_settings(outcome["study"])))
        lecture = outcomes[(name, "lecture")]
        rows.append([f"[{name}](#{name})", lecture_numbers, headline(lecture) if lecture else "–", *cells])
    lines += [*pipe_table(["claim", "lecture's numbers", "lecture protocol: headline", "lecture protocol: verdict",
                           "modern protocol: verdict"], rows), ""]

    section = None
    for name in listed:
        spec = specs.get(name) or not_covered[name]
        if spec.get("section", "") != section:
            section = spec.get("section", "")
            lines += [f"## {section or 'Other'}", ""]
        if name in not_covered:
            lines += [f"### {name}", "", f"**Not run:** no experiment covers this claim yet. {spec['claim']}", ""]
            continue
        lines += [f"### {name}", "", f"**{spec['title']}.** {spec['claim']}", "",
                  f"- Lecture: {spec.get('lecture_ref') or '–'}"]
        if spec.get("source_ref"):
            lines.append(f"- Source: {spec['source_ref']}")
        # a shared rule's change, listed here too where it changed a check of this study
        shared = [f"- {r['date']}, commit {str(r['commit'])[:7]}, a rule every study shares (`{revisions.SHARED_RECORD}`): "
                  f"{r['what']}. Why: {r['why']}" for r in revisions.shared_recorded(REPO) if name in r.get("changed", [])]
        seeds = []
        for protocol in PROTOCOLS:
            outcome = outcomes[(name, protocol)]
            line = outcome and revisions.seeds_changed(REPO, f"results/{name}/{protocol}", outcome["study"]["seeds"])
            if line:
                seeds.append(f"- {protocol.capitalize()} protocol, {line}")
        lines += ["", "Changes after results existed (detected in git; reasons from the experiment file):", "",
                  *(revisions.in_time_order(REPO, revisions.revision_lines(REPO, [f"configs/name/{name}.yaml"], f"results/{name}",
                                                                   spec.get("revisions", [])) + shared + seeds)
                    or ["- none"]), ""]
        tables = {p: outcomes[(name, p)]["summary"] if outcomes[(name, p)] else None for p in PROTOCOLS}
        per_run = {p: seeds_table(results_dir / name / p) for p in PROTOCOLS}
        views = {p: outcomes[(name, p)]["verdict"].get("view_runs", {}) if outcomes[(name, p)] else {} for p in PROTOCOLS}
        pending = frozenset(p for p in PROTOCOLS if outcomes[(name, p)] and shown_as[(name, p)][0] == PENDING)
        # before the protocols' sections, which a reader of one protocol may not read past; about
        # runs, so a claim not run yet has none to qualify
        if spec.get("caveats") and any(table is not None for table in tables.values()):
            lines += ["Caveats (stated with the study; they apply to every protocol below):", "",
                      *(f"- {caveats.fill(text, None, tables, per_run, views, pending)}" for text in spec["caveats"]), ""]
        for protocol in PROTOCOLS:
            outcome = outcomes[(name, protocol)]
            if outcome is None:
                if protocol == "modern" and settings.protocols_identical(name):
                    lines += ["**Modern protocol:** the experiment file sets every setting in which the protocols "
                              "differ, so it would run the study above again; not run or reported twice.", ""]
                elif hardware := waits_for(name, protocol):
                    lines += [f"**{protocol.capitalize()} protocol: not run, waiting for {hardware}** — "
                              f"`{command(name, protocol)}`", "",
                              *(line for text in spec["protocol_caveats"][protocol]
                                for line in (f"*Why it waits* (from the experiment file): "
                                             f"{caveats.fill(text, protocol, tables, per_run, views)}", ""))]
                else:
                    lines += [f"**{protocol.capitalize()} protocol: not run** — `{command(name, protocol)}`", ""]
                continue
            verdict, study = outcome["verdict"], outcome["study"]
            shown, why = shown_as[(name, protocol)]
            lines += [f"#### {settings.study_label(study)[0].upper()}{settings.study_label(study)[1:]}", "",
                      *settings_markdown(study),
                      *table_markdown(outcome["summary"], study["experiment"]["verdict"]["metric"],
                                      study["experiment"].get("lecture_label", "")), "",
                      *([f"**Verdict: {shown}** — {why}.", ""] if why else verdict_lines(verdict, bool(study["experiment"].get("grid")))),
                      *(line for text in spec.get("protocol_caveats", {}).get(protocol, [])
                        for line in (f"*Caveat* (stated with the study): {caveats.fill(text, protocol, tables, per_run, views, pending)}", "")),
                      *([(results_dir / name / protocol / "grid.md").read_text()]
                        if (results_dir / name / protocol / "grid.md").exists() else []),
                      *(f"![{name}, {protocol} protocol: {figure}]({name}/{protocol}/{figure}.png)\n"
                        for figure in study["experiment"].get("figures", ["curves"])
                        if (results_dir / name / protocol / f"{figure}.png").exists()),
                      f"Reproduce: `{command(name, protocol)}` — {runs_and_time(verdict)} on "
                      f"{', '.join(verdict.get('devices', ['unknown']))}, torch {', '.join(verdict.get('torch', ['?']))}.",
                      ""]
    return "\n".join(lines + glossary(outcomes))


def glossary(outcomes: dict) -> list[str]:
    """What each metric a check names measures, and which studies check it."""
    from experiments.probes import SCALAR_MEANINGS  # torch comes with it: only when the report is built

    checked: dict[str, set[str]] = {}
    for (name, _), outcome in outcomes.items():
        for check in (outcome or {}).get("verdict", {}).get("checks", []):
            checked.setdefault(check["metric"], set()).add(name)
    rows = [[f"`{metric}`", meaning(metric, SCALAR_MEANINGS) or "–", ", ".join(f"[{n}](#{n})" for n in sorted(names))]
            for metric, names in sorted(checked.items())]
    return ["## Metrics", "", "What each metric a check names measures, per run; a check compares its means over seeds.", "",
            *pipe_table(["metric", "meaning", "checked in"], rows), ""]


def seeds_table(study_dir: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(study_dir / SEEDS_FILE)
    except (OSError, ValueError):  # none (analysed before seeds.csv existed), or unreadable
        return None


def refresh_study_pages(results_dir: Path, judgments: dict) -> None:
    """Each study's own summary.md, made again from its committed files as the analysis makes it, with
    the verdict the report shows (`judgments`, as judge_all gives them): a study judged by a rule
    since replaced says so on its own page too."""
    for (name, protocol), (outcome, (shown, why)) in judgments.items():
        study_dir = results_dir / name / protocol
        verdict = {"verdict": shown, "reason": why + "."} if why else outcome["verdict"]
        grid = study_dir / "grid.md"
        page = markdown_table(outcome["summary"], outcome["study"], verdict) + (grid.read_text() if grid.exists() else "")
        if not (study_dir / "summary.md").exists() or (study_dir / "summary.md").read_text() != page:
            write_atomic(study_dir / "summary.md", page)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m experiments.report [results folder, default results]\n"
              "  rebuilds REPORT.md and each study's summary.md from the study folders (no training)")
        return 0
    if len(argv) > 1:
        print("error: give at most one results folder: python -m experiments.report [results]", file=sys.stderr)
        return 2
    results_dir = Path(argv[0]) if argv else Path("results")
    if not results_dir.is_dir():
        print(f"error: no results folder {results_dir}", file=sys.stderr)
        return 1
    try:
        judgments = judge_all(results_dir)
        write_atomic(results_dir / "REPORT.md", build_report(results_dir, judgments))
        refresh_study_pages(results_dir, judgments)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # a damaged study folder
        print(f"error: cannot build the report from {results_dir}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
        return 1
    print(f"wrote {results_dir / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
