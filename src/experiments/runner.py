"""Runner: every variant x seed of one experiment, into the results store, then the analysis."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from experiments import store
from experiments.config import IMAGE_ARCHITECTURES, check_run, grid_runs, override_key, protocol_settings
from experiments.data import make_splits
from experiments.errors import UserError, one_line
from experiments.metrics import needs_step_sizes, reads_timings
from experiments.probes import PROBES
from experiments.train import device_name, resolve_device, train_seeds

log = logging.getLogger(__name__)  # to stdout through Hydra's job logging (configs/config.yaml)
COMMAND_STARTED = time.time()  # this process's start, near enough: a sweep's jobs share it (basic launcher)
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=,+-]*$")  # one path component, no '..' tricks


def selected(cfg: DictConfig, runs: dict[str, dict]) -> dict[str, dict]:
    """The runs `only=` picks (by run label or by variant), all of them without it."""
    if cfg.only is None:
        return runs
    labels = grid_runs(cfg.experiment.variants, cfg.experiment.grid)
    return {label: run for label, run in runs.items() if label in cfg.only or labels[label][0] in cfg.only}


def build_runs(cfg: DictConfig) -> dict[str, dict]:
    """Every run's full, resolved config: the base config with its variant (and grid point) merged over it."""
    spec = cfg.experiment
    if not spec.variants:
        raise UserError(f"experiment {spec.name!r} lists no variants")
    labels = grid_runs(spec.variants, spec.grid)
    for label in list(labels) + [str(spec.name)]:
        if not SAFE_NAME.match(label):
            raise UserError(f"name {label!r} is not a safe folder name (letters, digits, _ . - only)")
    missing = [v for v in (cfg.only or []) if v not in labels and v not in spec.variants]
    if missing:
        raise UserError(f"only= names unknown variants {missing}; {spec.name} has {list(spec.variants)}")
    if cfg.only is not None and not cfg.only:
        raise UserError(f"only=[] picks no run; name variants of {spec.name}: {list(spec.variants)}, or leave only= out")
    if not cfg.seeds:
        raise UserError("seeds is empty: give at least one seed, e.g. seeds=[0,1,2]")
    if any(not 0 <= seed < 2**31 for seed in cfg.seeds):
        raise UserError(f"seeds must be in 0..2**31-1 (got {list(cfg.seeds)})")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise UserError(f"seeds lists a seed twice: {list(cfg.seeds)}")
    # the metrics a verdict reads that only a classification has
    judged = [spec.verdict.metric, *(check.metric for check in spec.verdict.checks if check.metric)]
    by_class = [m for m in judged if "_acc" in m or m.endswith("_error") or m == "failed_to_learn"]
    runs = {}
    for label in labels:
        base, point = labels[label]
        try:
            merged = OmegaConf.merge(cfg, spec.variants[base])
            for key, value in point.items():
                OmegaConf.update(merged, key, value)
        except Exception as exc:  # a variant that mistypes a key or a value
            raise UserError(f"variant {label!r} of {spec.name}: {one_line(exc)}") from None
        run = OmegaConf.to_container(merged, resolve=True, enum_to_str=True)
        run.pop("hydra", None)
        try:
            check_run(run)
        except UserError as exc:  # name the variant: with only= it may not be one the user picked
            raise UserError(f"variant {label!r} of {spec.name}: {exc}") from None
        for probe in spec.probes:
            if PROBES[probe].needs(run):
                raise UserError(f"variant {label!r}: {PROBES[probe].needs(run)}")
        if by_class and run["data"]["dataset"] != "mnist":
            raise UserError(f"variant {label!r}: {spec.name} judges {', '.join(sorted(set(by_class)))}, which a "
                            f"regression (data.dataset {run['data']['dataset']}) does not have; it needs data.dataset mnist")
        if spec.grid and spec.tune_on == "val_acc" and run["data"]["dataset"] != "mnist":
            raise UserError(f"variant {label!r} is a regression, which has no accuracy to tune on: "
                            f"set experiment.tune_on=val_loss")
        if spec.grid and not run["data"]["val_size"]:
            raise UserError(f"experiment {spec.name!r} tunes on a grid, which needs a validation split: data.val_size > 0")
        runs[label] = run
    return runs


def measured_settings(run: dict) -> dict:
    """The settings that decide what a run measures (no paths, no device choices)."""
    return {group: {k: v for k, v in run[group].items() if (group, k) not in store.KEY_EXCLUDES}
            for group in ("model", "data", "optimizer", "train")}


def grid_defaults(cfg: DictConfig) -> dict[str, dict]:
    """Each variant's own value of every grid key (the `_default` point of a grid experiment)."""
    spec = cfg.experiment
    return {variant: {key: OmegaConf.select(OmegaConf.merge(cfg, partial), key) for key in spec.grid}
            for variant, partial in spec.variants.items()} if spec.grid else {}


def record_study(study_dir: Path, study: dict) -> None:
    """Write study.json; jobs of one sweep that split the seeds between them add theirs up."""
    path = study_dir / store.STUDY_FILE
    with store.locked(study_dir):
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = None
        if before and before.get("experiment") == study["experiment"] and before.get("protocol") == study["protocol"]:
            study["seeds"] = sorted(set(before["seeds"]) | set(study["seeds"]))
        store.write_atomic(path, json.dumps(study, indent=2) + "\n")


def git_commit() -> str:
    """The commit the code and configs come from; '-dirty' when they have uncommitted changes
    (results/, which every study rewrites, does not count)."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=here, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", ":/", ":(exclude,top)results"],
                                 capture_output=True, text=True, cwd=here, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if changed else "")) if commit else "unknown"


def check_writable(results_dir: Path) -> None:
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=results_dir):
            pass
    except OSError as exc:
        raise UserError(f"results folder {results_dir} is not writable: {exc.strerror}") from None


def check_inside(study_dir: Path, results_dir: Path) -> None:
    """The study folder and its runs/ lie inside results_dir, symlinks followed."""
    for folder in (study_dir, study_dir / "runs"):
        if not folder.resolve().is_relative_to(results_dir.resolve()):
            raise UserError(f"refusing to write {folder} outside the results folder {results_dir}")


def run_study(cfg: DictConfig, study_dir: Path, protocol: str, overrides: list[str]) -> str:
    """Record the study and train its runs that are missing; return the device they ran on."""
    every_run = build_runs(cfg)
    runs = selected(cfg, every_run)
    device = resolve_device(cfg.device.value)
    check_inside(study_dir, Path(cfg.results_dir))
    spec = OmegaConf.to_container(cfg.experiment, resolve=True, enum_to_str=True)
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        record_study(study_dir, {"experiment": spec, "seeds": list(cfg.seeds), "protocol": protocol,
                                 "overrides": sorted(o for o in overrides if override_key(o) not in store.UNRECORDED),
                                 # every setting of every run, for the report's settings table
                                 "settings": {label: measured_settings(run) for label, run in every_run.items()},
                                 "lecture_settings": measured_settings(protocol_settings("lecture")),
                                 "grid_defaults": grid_defaults(cfg)})
    except OSError as exc:
        raise UserError(f"cannot write results to {study_dir}: {exc.strerror}") from None

    name = spec["name"]
    where = Where(study_dir, name, git_commit(), device, spec["probes"], needs_step_sizes(spec))
    data, splits = None, None  # made again only when the data change: the variants mostly share theirs
    pending = pending_members(cfg, study_dir, runs, spec["probes"])
    if reads_timings(spec):  # timings compare only between runs made side by side, under one load
        log.info(f"{name} | its checks compare run times: no run is copied from another study")
    else:  # force=true trains afresh: it copies only what this command has trained (a sweep's earlier jobs)
        pending = copy_finished_elsewhere(where, pending, Path(cfg.results_dir), COMMAND_STARTED if cfg.force else None)
    if pending and device.type == "cpu" and (hardware := spec["rerun_waits_for"].get(protocol)):
        log.warning(f"{name} | its experiment file leaves the {protocol}-protocol study to {hardware}, as too slow on a "
                    f"2-core CPU (the report's section says how slow); training its {len(pending)} missing runs on the CPU")
    for group, vectorise in training_groups(pending, device):
        if group[0].run["data"] != data:
            data, splits = group[0].run["data"], make_splits(group[0].run["data"], device)
        train_group(where, group, splits, vectorise)
    return device_name(device)


@dataclass(frozen=True)
class Member:
    """One run of a training group: a variant's (grid point's) label, its config and a seed."""
    label: str
    run: dict
    seed: int


def pending_members(cfg: DictConfig, study_dir: Path, runs: dict[str, dict], probes: list[str]) -> list[Member]:
    """Every label x seed without a finished run folder (all of them with force=true)."""
    pending = []
    for label, run in runs.items():
        for seed in cfg.seeds:
            if not cfg.force and store.is_finished(store.run_dir(study_dir, label, seed), store.run_key(run, seed, probes)):
                log.info(f"{cfg.experiment.name} | {label} | seed {seed} | already complete, skipped (force=true re-runs it)")
            else:
                pending.append(Member(label, run, seed))
    return pending


def copy_finished_elsewhere(where: Where, pending: list[Member], results_dir: Path, since: float | None) -> list[Member]:
    """Copy each pending run that another study under results_dir has trained (since `since`, if
    given) with the same settings, seed and probes (the same store.run_key), rather than train it
    again; return the rest. The copy's meta.json names the study it came from and the commit it was
    trained at; its time stays the source's, which the report's totals count once."""
    if not pending:
        return pending
    elsewhere, results = store.finished_runs(results_dir, where.study_dir, since), results_dir.resolve()
    rest = []
    for member in pending:
        key = store.run_key(member.run, member.seed, where.probes)
        source = elsewhere.get(key)
        meta = store.read_meta(source) if source else None
        path = store.run_dir(where.study_dir, member.label, member.seed)
        # the step size is recorded only where a study reads it, which the run key leaves out
        if meta is None or where.step_sizes and "effective_lr" not in store.recorded_columns(source):
            rest.append(member)
            continue
        origin = str(source.relative_to(results))
        try:
            copied = store.copy_run(source, path, {**meta, "experiment": where.name, "variant": member.label,
                                                   "config": member.run, "git_commit": where.commit,
                                                   "copied_from": origin, "trained_at_commit": meta.get("git_commit")})
        except OSError as exc:
            raise UserError(f"cannot write results to {path}: {exc.strerror}") from None
        if copied:
            log.info(f"{where.name} | {member.label} | seed {member.seed} | copied from {origin} (trained there with "
                     f"the same settings and seed)")
        else:
            rest.append(member)
    return rest


def training_groups(members: list[Member], device: torch.device) -> list[tuple[list[Member], bool]]:
    """The members trained together, each group with whether it is vectorised. Vectorised (the
    default for MLPs and RNNs on CUDA, train.vectorise=true elsewhere): every seed of a variant and
    every learning rate of its grid as one stacked model, since they share every shape. Plain: one
    run at a time: the default for conv nets, whose stacked activations (15 nets x 10k evaluation
    images x 32 channels x 28 x 28 floats: 15 GB for one layer) would fill a GPU's memory."""
    groups: dict[str, list[Member]] = {}
    for member in members:  # the same run but for the rate: one group
        shape = {**member.run, "optimizer": {k: v for k, v in member.run["optimizer"].items() if k != "lr"}}
        groups.setdefault(json.dumps(shape, sort_keys=True), []).append(member)
    planned = []
    for group in groups.values():
        vectorise = group[0].run["train"]["vectorise"]
        if vectorise is None:
            vectorise = device.type == "cuda" and len(group) > 1 and group[0].run["model"]["arch"] not in IMAGE_ARCHITECTURES
        planned += [(group, True)] if vectorise else [([member], False) for member in group]
    return planned


@dataclass(frozen=True)
class Where:
    """What every run of one study shares: where it is filed and what made it."""
    study_dir: Path
    name: str  # the experiment's
    commit: str  # the code's git commit
    device: torch.device
    probes: list[str]
    step_sizes: bool  # record the optimizer's effective_lr every epoch (the experiment uses it)


def train_group(where: Where, group: list[Member], splits, vectorise: bool) -> None:
    """Train the members of one group together and commit each one's run folder."""
    study_dir, name, commit, device, probes = where.study_dir, where.name, where.commit, where.device, where.probes
    from torch.utils.tensorboard import SummaryWriter

    paths = [store.run_dir(study_dir, member.label, member.seed) for member in group]
    try:
        temps = [store.temp_dir_for(path) for path in paths]
    except OSError as exc:
        raise UserError(f"cannot write results to {paths[0].parent}: {exc.strerror}") from None
    writers = [SummaryWriter(log_dir=str(tmp)) for tmp in temps]
    run = group[0].run  # the members differ at most in the learning rate
    epochs = run["train"]["epochs"]

    def on_epoch(i: int, row: dict) -> None:
        for column, value in row.items():
            if column != "epoch":
                kind = "grad_norm" if column.startswith("grad_norm") else column.split("_")[0]
                writers[i].add_scalar(f"{kind}/{column}", value, row["epoch"])
        scores = ("train_acc", "val_acc", "test_acc") if run["data"]["dataset"] == "mnist" else ("val_loss", "test_loss")
        shown = " | ".join(f"{k} {row[k]:.4g}" for k in ("train_loss", *scores) if k in row)
        log.info(f"{name} | {group[i].label} | seed {group[i].seed} | epoch {row['epoch']:>3}/{epochs} | {shown} | "
                 f"{row['seconds']:.1f} s")

    started = time.perf_counter()
    results = train_seeds(run, splits, [m.seed for m in group], vectorise, on_epoch, step_sizes=where.step_sizes,
                          lrs=[m.run["optimizer"]["lr"] for m in group])
    seconds = (time.perf_counter() - started) / len(group)  # a vectorised group shares its time
    for member, result, writer, tmp, path in zip(group, results, writers, temps, paths):
        writer.close()
        label, run, seed = member.label, member.run, member.seed
        if result.status == "diverged":
            log.info(f"{name} | {label} | seed {seed} | diverged (non-finite loss) at epoch {result.diverged_epoch}; "
                     f"recorded, continuing")
        else:
            for probe in probes:
                table, scalars = PROBES[probe].measure(result.model, splits, run, seed)
                if not table.empty:
                    table.to_csv(tmp / f"{probe}.csv", index=False)
                result.rows[-1].update(scalars)
        meta = {"experiment": name, "variant": label, "seed": seed, "key": store.run_key(run, seed, probes),
                "status": result.status, "parameters": result.parameters, "diverged_epoch": result.diverged_epoch,
                "config": run, "seconds": seconds, "runs_in_group": len(group) if vectorise else 1,
                "device": device_name(device), "torch": torch.__version__, "python": sys.version.split()[0],
                "git_commit": commit}
        try:
            store.commit_run(tmp, path, result.rows, meta)
        except OSError as exc:
            raise UserError(f"cannot write results to {path}: {exc.strerror}") from None
