"""Analysis: from a study folder's stored runs alone, the comparison table, the figures and the
verdict, composed from metrics, tuning, judge, tables and plots. Rerun it alone with
`python -m experiments.analysis <study folder>`."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments import caveats, plots
from experiments.config import CONFIG_DIR, ExperimentConfig, grid_for, grid_runs, override_key, protocol_names
from experiments.errors import UserError, one_line
from experiments.judge import RULE_KEYS, checks_of, closing_gaps, decide, kept_gap_notes, rule_metrics
from experiments.metrics import add_log10_losses, known_metrics, per_run, summarise
from experiments.probes import PROBES, probe_metrics
from experiments.store import SEEDS_FILE, STUDY_FILE, UNRECORDED, load_study, locked, study_digest, write_atomic
from experiments.tables import markdown_table
from experiments.tuning import resolve_grid


OUTPUTS = ("summary.csv", "summary.md", SEEDS_FILE, "curves.png", "verdict.json")


# every figure an experiment may list: the learning curves' and each probe's, under the probe's name
FIGURES = {**plots.FIGURES, **{name: probe.figure for name, probe in PROBES.items()}}


def copied_runs(metas: list[dict]) -> dict:
    """The runs copied from other studies, which trained them: how many, and their training time by
    the study they came from (the report's totals count them there); empty when there are none."""
    copied = [meta for meta in metas if meta.get("copied_from")]
    if not copied:
        return {}
    seconds: dict[str, float] = {}
    for meta in copied:
        study = meta["copied_from"].rsplit("/runs/", 1)[0]
        seconds[study] = seconds.get(study, 0.0) + meta.get("seconds", 0.0)
    return {"copied_runs": len(copied), "copied_seconds": {study: round(s, 1) for study, s in sorted(seconds.items())},
            "trained_at_commits": sorted({meta.get("trained_at_commit") or "unknown" for meta in copied})}


def check_experiment(spec: DictConfig) -> None:
    """The experiment's checks, probes and figures name what exists: tested before any run starts."""
    container = OmegaConf.to_container(spec, resolve=True, enum_to_str=True)
    metrics = known_metrics(probe_metrics(spec.probes))
    try:
        caveats.check(container["caveats"], container["protocol_caveats"], protocol_names(), metrics)
    except UserError as exc:
        raise UserError(f"experiment {spec.name!r}: {exc}") from None
    tolerance = container["verdict"].get("tolerance")
    if tolerance is not None and not 0 < tolerance < math.inf:
        raise UserError(f"experiment {spec.name!r}: verdict.tolerance must be a finite number > 0, or null (got {tolerance})")
    try:  # the verdict engine's own rules for a check (one of worse / value, finite numbers, margins),
        # with the lecture protocol's size checks, which are built from the lecture's numbers
        checks = checks_of(container["verdict"], {"protocol": "lecture", "experiment": container})
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"experiment {spec.name!r}: verdict: {one_line(exc)}") from None
    if not checks or not all(check.better for check in checks) or not any(check.key for check in checks):
        raise UserError(f"experiment {spec.name!r}: its verdict needs `better` and `worse`, or a list of `checks` "
                        "with at least one key check")
    empty = [key for key, values in spec.grid.items() if not values]
    if empty:
        raise UserError(f"experiment {spec.name!r}: experiment.grid gives no values for {', '.join(empty)}; "
                        f"list at least one, or leave the key out")
    named = [v for check in checks for v in check.variants]
    # a grid experiment's verdict speaks of <variant>_default and <variant>_tuned (<variant> alone: tuned)
    comparable = [*spec.variants, *(f"{v}_{kind}" for v in spec.variants for kind in ("default", "tuned") if spec.grid)]
    unknown = [v for v in (*named, *spec.lecture) if v not in comparable]
    unknown += [p for p in spec.probes if p not in PROBES] + [f for f in spec.figures if f not in FIGURES]
    if unknown:
        raise UserError(f"experiment {spec.name!r} names unknown variants, probes or figures: {', '.join(unknown)}")
    unknown_metrics = sorted({check.metric for check in checks} - metrics)
    if unknown_metrics:
        raise UserError(f"experiment {spec.name!r}: its verdict names unknown metrics {unknown_metrics}; "
                        f"known: {', '.join(sorted(m for m in metrics if not m.startswith('grad_norm_')))}")


def analyse(study_dir: Path, current_rule: bool = False) -> tuple[pd.DataFrame, dict]:
    """Rebuild the study's table, plot and verdict from its stored runs; with `current_rule`, judged
    by the experiment file's current rule (adopt_current_rule)."""
    study_dir = Path(study_dir)
    with locked(study_dir):  # the last job of a parallel sweep to get here sees every run
        return _analyse(study_dir, current_rule)


def _analyse(study_dir: Path, current_rule: bool) -> tuple[pd.DataFrame, dict]:
    study = json.loads((study_dir / STUDY_FILE).read_text())
    runs, metas = load_study(study_dir)
    if len(runs):
        status = {(m["variant"], m["seed"]): m["status"] for m in metas}
        runs["status"] = [status[(v, s)] for v, s in zip(runs["variant"], runs["seed"])]
        labels = grid_runs(study["experiment"]["variants"], study["experiment"].get("grid", {}))
        runs = runs[runs["variant"].isin(labels) & runs["seed"].isin(study["seeds"])]
    if not len(runs) and current_rule and (study_dir / SEEDS_FILE).exists():
        return rejudge_from_seeds(study_dir)
    if not len(runs):  # a fresh clone: its committed tables must not be rebuilt from nothing
        # older study files still list some of store.UNRECORDED (data.root); the protocol is named below
        given = [o for o in study["overrides"] if override_key(o) not in {*UNRECORDED, "protocol"}]
        # the study folder is <results_dir>/<name>/<protocol>[/<overrides>]: a copy elsewhere is re-run there
        root = next((folder.parent for folder in study_dir.resolve().parents if folder.name == study["experiment"]["name"]),
                    None)
        elsewhere = [f"results_dir={root}"] if root is not None and root != Path("results").resolve() else []
        rerun = shlex.join(["python", "-m", "experiments", *given, f"protocol={study['protocol']}",
                            f"seeds=[{','.join(map(str, study['seeds']))}]", *elsewhere])
        raise UserError(f"{study_dir} holds no finished run of this study in runs/ (run folders are not committed, "
                        f"only the tables, figures and verdict made from them){' nor a ' + SEEDS_FILE if current_rule else ''}; "
                        f"to store them: {rerun}")
    adopted = current_rule_study(study_dir) if current_rule else None
    study = adopted or study
    finals = per_run(runs)
    write_atomic(study_dir / SEEDS_FILE, seed_table(finals, study))
    grid_md = ""
    if study["experiment"].get("grid"):
        runs, study, grid_md = resolve_grid(runs, study, finals)
        finals = per_run(runs)
    summary = summarise(finals, study)
    verdict = decide(summary, finals, study)
    verdict["closing_gaps"] = closing_gaps(runs, study)
    verdict["view_runs"] = study.get("view_runs", {})  # the grid point each _tuned / _default variant took
    # what the report needs about the runs, since runs/ is not committed
    verdict |= {"runs": len(metas), "train_seconds": round(sum(m.get("seconds", 0.0) for m in metas), 1),
                **copied_runs(metas),
                "devices": sorted({m.get("device", "unknown") for m in metas}),
                "torch": sorted({m.get("torch", "unknown") for m in metas}),
                "git_commits": sorted({m.get("git_commit", "unknown") for m in metas})}
    write_tables(study_dir, summary, study, verdict, grid_md, adopted)
    for figure in study["experiment"].get("figures", ["curves"]):
        png = FIGURES[figure](runs, {**study, "verdict": verdict["verdict"]}, study_dir)
        if png is not None:
            write_atomic(study_dir / f"{figure}.png", png)
    return summary, verdict


def rejudge_from_seeds(study_dir: Path) -> tuple[pd.DataFrame, dict]:
    """A study whose runs are gone (a fresh clone) judged by the experiment file's current rule from
    its committed seeds.csv: tuning, table and checks are made anew from every run's final numbers.
    What needs the curves is kept from the analysis that had the runs: the budget caveat (of the
    checks still made) and the figures, whose titles name that analysis's verdict."""
    stored = json.loads((study_dir / STUDY_FILE).read_text())
    study = adopted = current_rule_study(study_dir)
    finals = add_log10_losses(pd.read_csv(study_dir / SEEDS_FILE))
    missing = sorted(rule_metrics(study) - set(finals.columns))
    if missing:
        raise UserError(f"{study_dir / SEEDS_FILE} lacks {', '.join(missing)}, which the current rule checks or tunes on: "
                        "re-run the study")
    summary, verdict, study, grid_md = judge_seeds(finals, study)
    before = json.loads((study_dir / "verdict.json").read_text())
    verdict["closing_gaps"] = kept_gap_notes(before.get("closing_gaps", []), stored, adopted,
                                             before.get("view_runs", {}), study.get("view_runs", {}))
    verdict["view_runs"] = study.get("view_runs", {})
    verdict |= {key: before[key] for key in ("runs", "train_seconds", "copied_runs", "copied_seconds", "trained_at_commits",
                                             "devices", "torch", "git_commits") if key in before}
    write_tables(study_dir, summary, study, verdict, grid_md, adopted)
    return summary, verdict


def judge_seeds(finals: pd.DataFrame, study: dict) -> tuple[pd.DataFrame, dict, dict, str]:
    """Table and verdict from every run's final numbers (a seeds.csv), each grid variant at its tuned
    point: the study as tuned and its grid table come with them."""
    grid_md = ""
    if study["experiment"].get("grid"):
        finals, study, grid_md = resolve_grid(finals, study, finals)
    summary = summarise(finals, study)
    return summary, decide(summary, finals, study), study, grid_md


def write_tables(study_dir: Path, summary: pd.DataFrame, study: dict, verdict: dict, grid_md: str,
                 adopted: dict | None = None) -> None:
    """The study's tables and verdict; with `adopted`, the study.json of the rule they were judged by,
    written last, so that a failure before leaves the stored rule and its verdict together."""
    summary_csv = summary.to_csv(index=False, float_format="%.6g")
    write_atomic(study_dir / "summary.csv", summary_csv)
    # the table from the numbers the CSV holds, as the report shows them: 0.11349999 (a float32
    # accuracy) and its CSV value 0.1135 would round apart
    shown = pd.read_csv(io.StringIO(summary_csv))
    write_atomic(study_dir / "summary.md", markdown_table(shown, study, verdict) + grid_md)
    if grid_md:
        write_atomic(study_dir / "grid.md", grid_md)
    study_json = (json.dumps(adopted, indent=2) + "\n") if adopted is not None else (study_dir / STUDY_FILE).read_text()
    verdict["study_digest"] = study_digest(study_json)
    write_atomic(study_dir / "verdict.json", json.dumps(verdict, indent=2) + "\n")
    if adopted is not None:
        write_atomic(study_dir / STUDY_FILE, study_json)


def seed_table(finals: pd.DataFrame, study: dict) -> str:
    """Every run's final measurements, one row per run (each grid point its own variant): the numbers
    behind every mean, interval and test of the study, for a reader to test again, and for
    rejudge_from_seeds. The runs themselves are not committed."""
    known = known_metrics(probe_metrics(study["experiment"].get("probes", [])))
    shown = [c for c in finals.columns if c in known and not re.fullmatch(r"grad_norm_\d+", c)]
    # every digit: tuning breaks ties between grid points at float rounding, and a re-judged study must
    # get the same numbers as from its runs
    return finals[["variant", "seed", "status", *sorted(shown)]].to_csv(index=False)


def adopt_current_rule(study_dir: Path) -> None:
    write_atomic(study_dir / STUDY_FILE, json.dumps(current_rule_study(study_dir), indent=2) + "\n")


def current_rule_study(study_dir: Path) -> dict:
    """The study as judged by its experiment file's current rule: what changed in the rule after the
    runs (a margin, a check) needs no re-run. What the runs ran must be unchanged."""
    study = json.loads((study_dir / STUDY_FILE).read_text())
    own = OmegaConf.load(CONFIG_DIR / "name" / f"{study['experiment']['name']}.yaml").experiment
    # through the schema, so that every check carries its defaults as the stored ones do; a value
    # that names a setting (batch_size: ${data.train_size}) resolved by the settings the runs had
    spec = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(ExperimentConfig), own), enum_to_str=True)
    ran = next(iter(study.get("settings", {}).values()), {})
    with contextlib.suppress(OmegaConfBaseException):  # settings not recorded: compared as written
        spec["variants"] = OmegaConf.to_container(OmegaConf.create({**ran, "variants": spec["variants"]}), resolve=True)["variants"]
    # the grid as the study's protocol gets it (as the entry point gives it: apply_protocol_grid)
    spec["grid"] = grid_for(spec, study["protocol"])
    for key in ("variants", "grid", "probes"):
        if spec.get(key, {} if key != "probes" else []) != study["experiment"].get(key, {} if key != "probes" else []):
            raise UserError(f"the experiment file's {key} changed since these runs: re-run the study instead")
    study["experiment"] |= {key: spec[key] for key in RULE_KEYS if key in spec}
    return study


USAGE = ("usage: python -m experiments.analysis <study folder> [--current-rule]\n"
         "  rebuilds the study's tables, figures and verdict from its runs (e.g. results/relu_vs_sigmoid/lecture);\n"
         "  --current-rule judges them by the experiment file's current checks (from seeds.csv where the runs are gone)")


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    adopt = "--current-rule" in argv
    argv = [a for a in argv if a != "--current-rule"]
    if len(argv) != 1:
        print("error: give one study folder: python -m experiments.analysis <study folder> [--current-rule]",
              file=sys.stderr)
        return 2
    if not (Path(argv[0]) / STUDY_FILE).is_file():
        print(f"error: {argv[0]} holds no {STUDY_FILE}: name a study folder such as results/relu_vs_sigmoid/lecture",
              file=sys.stderr)
        return 2
    try:
        analyse(Path(argv[0]), current_rule=adopt)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # a damaged study folder
        print(f"error: cannot analyse {argv[0]}: a file of the study or its runs is damaged or missing "
              f"({type(exc).__name__}: {one_line(exc)[:200]}); re-run the study to rebuild it", file=sys.stderr)
        return 1
    print((Path(argv[0]) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
