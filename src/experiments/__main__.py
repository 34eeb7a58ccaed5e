"""`python -m experiments name=<experiment> [key=value ...]` — the Hydra entry point.

Before Hydra runs, the command line is composed once (each swept value in turn) so that an
unknown experiment, a mistyped key or a bad value ends in one line, not a Hydra report.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config import CONFIG_DIR, apply_protocol_grid, experiment_names, override_key, protocol_names, register_schema
from experiments.errors import UserError, one_line
from experiments.settings import flatten, reads

# The modules that import torch (about 2 s on a 2-core CPU) are imported where they are first
# needed, after the command line has composed: a mistyped command fails without waiting for them.

# Hydra's flags that print or pick multirun, and never read configs from or write files to another
# place: passed on to Hydra. Any other flag (--config-dir, --config-name, ...) is refused.
FLAGS = {"-m", "--multirun", "--resolve"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
HELP_FLAGS = {"--help", "-h"}  # print the composed config and exit: overrides are checked, nothing is written
BARE_FLAGS = {"--hydra-help", "--version"}  # print and exit; Hydra reads no overrides with them
SUBMITTING_LAUNCHERS = {"slurm", "submitit_slurm"}  # hydra/launcher choices that run jobs on other nodes
CUDA_GRAPH_NEEDS_CUDA = ("train.cuda_graph=true captures training steps in CUDA graphs: it needs device=cuda "
                         "(or device=auto on a machine with a GPU)")


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides); a flag that could move files is an error."""
    flags, overrides, i = [], [], 0  # flags: as Hydra reads them, a flag's value its own item
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if not arg.startswith("-"):
            overrides.append(arg)
        elif arg in FLAGS or arg in HELP_FLAGS or arg in BARE_FLAGS:
            flags.append(arg)
        elif name in FLAGS_WITH_VALUE:
            value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            if name in ("--cfg", "-c") and value not in ("job", "hydra", "all"):
                raise UserError(f"{name} takes job, hydra or all (got {value!r})")
            if not value:
                raise UserError(f"{name} needs a value")
            i += "=" not in arg
            flags += [arg] if "=" in arg else [arg, value]
        elif name in ("--info", "-i"):
            topic = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "all")
            if "=" not in arg and topic in INFO_TOPICS and i + 1 < len(args):
                i += 1
            elif "=" not in arg:
                topic = "all"  # a bare --info: Hydra would take the next override for its topic
            if topic not in INFO_TOPICS:
                raise UserError(f"--info takes one of {', '.join(sorted(INFO_TOPICS))} (got {topic!r})")
            flags.append(f"--info={topic}")
        else:
            raise UserError(f"the Hydra flag {name!r} is not supported here: use overrides (key=value), "
                            "and results_dir= to choose where results go")
        i += 1
    modes = {flag.split("=", 1)[0] for flag in flags} & {"-m", "--multirun", "--cfg", "-c", "--info"}
    if len(modes) > 1:  # Hydra runs exactly one of them
        raise UserError(f"{' and '.join(sorted(modes))} cannot be combined: -m runs a sweep, --cfg and --info print "
                        "one job's config")
    printing = {"--cfg", "-c", *HELP_FLAGS}
    if not any(flag.split("=", 1)[0] in printing for flag in flags):
        for flag in flags:
            if flag.split("=", 1)[0] in {"--resolve", "--package", "-p"}:
                raise UserError(f"{flag.split('=', 1)[0]} only works with --cfg (or --help): it changes what is printed")
    return flags, overrides


def flag_value(flags: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of these flags in split_flags' list (given as --flag=value or --flag value)."""
    for i, flag in enumerate(flags):
        name, equals, value = flag.partition("=")
        if name in names:
            return value if equals else flags[i + 1]
    return None


def check_once_each(overrides: list[str]) -> None:
    """Hydra keeps the last of two values of one key without a word; the first was likely meant too."""
    keys = [override_key(override) for override in overrides]
    for key in dict.fromkeys(keys):
        if keys.count(key) > 1:
            given = [override for override, each in zip(overrides, keys) if each == key]
            raise UserError(f"{key} is given {len(given)} times ({', '.join(given)}): give each key once; several values "
                            f"make a sweep, e.g. -m {key}=a,b")


def check_spelling_of_switches(overrides: list[str], cfg: DictConfig) -> None:
    """A switch is written true or false: Hydra also reads yes, on, 1 as true, but the folder of the
    study is named after the spelling, so one setting would have several folders."""
    for override in overrides:
        key, _, value = override.partition("=")
        if not key.startswith(("~", "hydra")) and isinstance(OmegaConf.select(cfg, key), bool) \
                and value not in ("true", "false"):
            raise UserError(f"{override!r}: write {key}=true or {key}=false")


def check_hydra_override(override: str) -> None:
    """Of Hydra's own settings only the launcher may change: the others (run.dir, output_subdir,
    sweep.dir, job.chdir, ...) would move files outside results_dir."""
    key, _, value = override.lstrip("+~").partition("=")
    if key.startswith("hydra") and not (key == "hydra/launcher" or key.startswith("hydra.launcher.")):
        raise UserError(f"{override!r}: Hydra's own settings cannot be overridden here, except hydra/launcher and "
                        "hydra.launcher.*; use results_dir= to choose where results go")
    if key.startswith("hydra.launcher.") and ("/" in value or "\\" in value):
        raise UserError(f"{override!r}: a launcher setting may not name a path (its files go under results_dir)")
    if override.startswith("+"):  # '+key=' adds a key the schema lacks: a typo would be silently ignored
        raise UserError(f"{override!r}: every setting already exists, so set it without '+' ({override.lstrip('+')}); "
                        "a key that needs '+' is not one the suite reads")


def override_sets(args: list[str]) -> list[list[str]]:
    """The command line of each job of the sweep (one job without a sweep)."""
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise UserError(f"cannot read the command line ({one_line(exc)}); quote a value that holds spaces or "
                        "characters other than letters, digits and _-./, e.g. 'experiment.title=\"Élan\"'") from None
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            try:
                choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
            except HydraException:
                raise UserError(f"{override.input_line!r}: list a sweep's values (a,b,c, range(), choice()); "
                                "interval() and glob() cannot be listed") from None
        else:
            choices.append([override.input_line])
    # every job of the sweep: a value may be bad only together with another (batch size vs training set)
    return [list(job) for job in itertools.product(*choices)]


def precheck(args: list[str]) -> list[str]:
    """Check the command line; return it as Hydra reads it: the flags, then the overrides (Hydra
    takes one unbroken run of overrides)."""
    flags, overrides = split_flags(args)
    if any(flag in BARE_FLAGS for flag in flags):
        return [flag for flag in flags if flag in BARE_FLAGS][:1]
    if any(flag in HELP_FLAGS for flag in flags) and not overrides:
        raise UserError("--help prints an experiment's composed config: add name=<experiment> (python -m experiments "
                        "--help alone prints the usage)")
    for override in overrides:
        check_hydra_override(override)
        if "${" in override:  # an interpolation could name any path or setting once resolved
            raise UserError(f"{override!r}: interpolations (${{...}}) are not accepted on the command line; "
                            "type the value itself")
    check_once_each(overrides)
    multirun = bool({"-m", "--multirun"} & set(flags))
    names = experiment_names()
    sets = override_sets(overrides)
    launchers = {o.split("=", 1)[1].strip("'\"") for s in sets for o in s if o.split("=", 1)[0] == "hydra/launcher"}
    if multirun and launchers & SUBMITTING_LAUNCHERS and shutil.which("srun") is None:
        launcher = sorted(launchers & SUBMITTING_LAUNCHERS)[0]
        raise UserError(f"hydra/launcher={launcher} submits SLURM jobs, but this machine has no srun: run the command on "
                        "the cluster's login node, or try the sweep here with hydra/launcher=submitit_local")
    if len(sets) > 1 and not multirun:
        raise UserError("several values of one key (a,b, range() or choice()) make a sweep: add -m to run each "
                        "as its own job, e.g. python -m experiments -m name=relu_vs_sigmoid optimizer.lr=0.03,0.1")
    chosen = {o.split("=", 1)[1].strip("'\"") for s in sets for o in s if o.split("=", 1)[0] == "name"}
    if not chosen:
        raise UserError(f"say which experiment to run: name=<one of {', '.join(names)}>")
    for name in sorted(chosen):
        if name not in names:
            raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(names)}")
    if any(o.startswith("~") and o.lstrip("~").split("=", 1)[0] in ("name", "protocol") for o in overrides):
        raise UserError("name and protocol cannot be deleted (~): set them, e.g. protocol=modern")
    protocols = {o.split("=", 1)[1].strip("'\"") for s in sets for o in s if o.split("=", 1)[0] == "protocol"}
    for protocol in sorted(protocols):
        if protocol not in protocol_names():
            raise UserError(f"unknown protocol {protocol!r}; choose one of: {', '.join(protocol_names())}")
    folders, data_roots = set(), set()  # checked once every job has passed, so a bad one writes nothing
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for overrides_now in sets:
            job_overrides = [o for o in overrides_now if not o.lstrip("+~").startswith("hydra")]
            try:  # with the launcher's overrides, so that a mistyped one is caught here too
                cfg = compose(config_name="config", overrides=overrides_now, return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve as in a real run
                check_experiment_overrides_change_it(overrides_now, cfg)  # before the protocol's grid is applied
                check_spelling_of_switches(job_overrides, cfg)
                check_package(flags, cfg)
                if cfg.train.cuda_graph and cfg.device.value == "cpu":  # said before torch's import (about 2 s)
                    raise UserError(CUDA_GRAPH_NEEDS_CUDA)
                apply_protocol_grid(cfg, cfg.hydra.runtime.choices.protocol)
                from experiments import analysis
                from experiments.runner import build_runs
                from experiments.train import resolve_device

                analysis.check_experiment(cfg.experiment)
                runs = build_runs(cfg)
                check_overrides_change_runs(job_overrides, cfg, runs)
                # a launcher that submits jobs runs them on other nodes: their devices are checked there
                submits = cfg.hydra.runtime.choices.get("hydra/launcher") in SUBMITTING_LAUNCHERS
                if not submits and resolve_device(cfg.device.value).type != "cuda" and any(
                        run["train"]["cuda_graph"] for run in runs.values()):
                    raise UserError(CUDA_GRAPH_NEEDS_CUDA)
                if any(run["data"]["dataset"] == "mnist" for run in runs.values()):  # the other data need no files
                    data_roots.add((cfg.data.root, cfg.data.download))
            except (HydraException, OmegaConfBaseException, ValueError, IndexError, TypeError) as exc:
                message = one_line(exc)
                if "In 'name/" in message and "not in 'Config'" in message:
                    message += " (an experiment file must start with the line '# @package _global_')"
                grid = re.search(r"Could not override '(experiment\.(?:grid|protocol_grids))'.*?Key '([^']+)' is not in struct",
                                 message)
                if grid:  # Hydra adds no key to a map of a structured config from the command line
                    message = (f"{grid[1]} on the command line can change only the values of keys the experiment "
                               f"file already lists there; to tune {grid[2]}, add it to the file's {grid[1]}")
                raise UserError(message) from None
            check_folder_names(job_overrides, set(cfg.hydra.job.config.override_dirname.exclude_keys))
            folders.add((Path(cfg.results_dir), Path(cfg.hydra.run.dir)))
    if any(flag.split("=", 1)[0] in {*HELP_FLAGS, "--info", "--cfg", "-c"} for flag in flags):
        return flags + overrides  # Hydra prints and exits: nothing is written, so no folder need exist
    from experiments.data import load_mnist
    from experiments.runner import check_inside, check_writable

    for results_dir, study_dir in sorted(folders):
        if not str(results_dir).strip():
            raise UserError("results_dir is empty: name a folder, e.g. results_dir=results")
        check_inside(study_dir, results_dir)  # a symlink inside results_dir may point out of it
    for root, download in sorted(data_roots):
        try:  # missing files, or a download that fails, end here, before Hydra writes the study folder
            load_mnist(root, download)
        except OSError as exc:
            raise UserError(f"data.root {root[:80]!r} cannot be read: {exc.strerror}") from None
    for results_dir, study_dir in sorted(folders):
        check_writable(results_dir)
        if study_dir.exists() and not os.access(study_dir, os.W_OK | os.X_OK):  # Hydra writes .hydra/ there first
            raise UserError(f"the study folder {study_dir} is not writable")
    return flags + overrides


def check_overrides_change_runs(overrides: list[str], cfg: DictConfig, runs: dict[str, dict]) -> None:
    """A setting given on the command line changes some run: not one that every variant (or the
    grid) sets for itself, nor one that no net or data of the experiment reads. Either would name
    the study folder after a value no run used."""
    from experiments.runner import measured_settings

    spec = cfg.experiment
    for override in overrides:
        key = override_key(override)
        if key.split(".", 1)[0] not in ("model", "data", "optimizer", "train"):
            continue
        if key in spec.grid:
            raise UserError(f"{override!r}: {spec.name} tunes {key} on its grid {list(spec.grid[key])}, so this value "
                            f"would change no run; change the grid instead (experiment.grid)")
        own = [OmegaConf.select(OmegaConf.create(partial), key) for partial in spec.variants.values()]
        if all(value is not None for value in own):
            raise UserError(f"{override!r}: every variant of {spec.name} sets its own {key} "
                            f"({', '.join(dict.fromkeys(map(str, own)))}), so this value would change no run")
        if not any(reads(flatten(measured_settings(run)), key) for run in runs.values()):
            raise UserError(f"{override!r}: no net, data or optimizer of {spec.name} reads {key}, so it would change no run")


def check_experiment_overrides_change_it(overrides: list[str], cfg: DictConfig) -> None:
    """An override of the experiment file's own keys changes it: Hydra merges a map given on the
    command line into the file's, so `experiment.grid={}` would leave the grid whole and only name the
    study folder."""
    for override in overrides:
        if not override.lstrip("+~").startswith("experiment."):
            continue
        without = compose(config_name="config", overrides=[o for o in overrides if o != override], return_hydra_config=True)
        if OmegaConf.to_container(without.experiment) == OmegaConf.to_container(cfg.experiment):
            raise UserError(f"{override!r} leaves the experiment as its file sets it (a map on the command line is "
                            f"merged into the file's, never empties it), so it would change no run")


def check_package(flags: list[str], cfg: DictConfig) -> None:
    """--package names a part of the config that --cfg prints (Hydra's own 'not found' has no line end)."""
    package = flag_value(flags, ("--package", "-p"))
    if package is None or package == "_global_":
        return
    printed = flag_value(flags, ("--cfg", "-c")) or "job"  # --help prints the job's config
    in_hydra = package.split(".", 1)[0] == "hydra"
    shown = {"job": not in_hydra, "hydra": in_hydra, "all": True}[printed]
    if not shown or OmegaConf.select(cfg, package, default=None) is None:
        raise UserError(f"--package {package!r}: --cfg {printed} prints no such part of the config; e.g. --package "
                        f"{'hydra.job' if printed == 'hydra' else 'model'}, or _global_ for all of it")


def check_folder_names(overrides: list[str], excluded: set[str]) -> None:
    """Overrides name the study folder, so none may carry a path into it (no '../../x')."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") not in excluded and ("/" in value or "\\" in value):
            raise UserError(f"{override!r}: values that name the results folder may not contain '/' or '\\'")


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def task(cfg: DictConfig) -> None:
    """Run what is missing, then analyse (main() validated every job of the command line first)."""
    from experiments import analysis
    from experiments.runner import run_study

    hydra_cfg = HydraConfig.get()
    study_dir = Path(hydra_cfg.runtime.output_dir)
    started = time.perf_counter()
    try:
        apply_protocol_grid(cfg, hydra_cfg.runtime.choices.protocol)
        device = run_study(cfg, study_dir, protocol=hydra_cfg.runtime.choices.protocol,
                           overrides=list(hydra_cfg.overrides.task))
        analysis.analyse(study_dir)
    except UserError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted: finished runs are kept; run the same command again to do the rest")
    print()
    print((study_dir / "summary.md").read_text())
    print(f"wall time {time.perf_counter() - started:.1f} s on {device}")
    print(f"wrote {study_dir}/ ({', '.join(analysis.OUTPUTS)}, runs/); "
          f"curves: tensorboard --logdir {shlex.quote(str(cfg.results_dir))} --host localhost")


def list_experiments(results_dir: Path = Path("results")) -> str:
    """Two lines per experiment: its name and title, then each protocol's last verdict and training
    time; then a line per study run with overrides (a sub-folder named after them)."""
    from experiments.report import PROTOCOLS, experiment_spec, judged, load_outcome, minutes, waits_for

    def shown(outcome: dict, name: str) -> str:
        verdict, _ = judged(outcome, name)
        return (f"{verdict} ({minutes(outcome['verdict'].get('train_seconds', 0.0))} of training, "
                f"n = {int(outcome['summary']['n'].min())})")

    lines = []
    for name in experiment_names():
        done, variations = [], []
        for protocol in PROTOCOLS:
            outcome = load_outcome(results_dir / name / protocol)
            if outcome is not None:
                done.append(f"{protocol}: {shown(outcome, name)}")
            elif hardware := waits_for(name, protocol):
                done.append(f"{protocol}: not run, waiting for {hardware}")
            folder = results_dir / name / protocol
            for study in sorted(folder.iterdir()) if folder.is_dir() else []:
                outcome = load_outcome(study) if study.name != "runs" else None
                if outcome is not None:
                    variations.append(f"{'':<24} {protocol} with {study.name}: {shown(outcome, name)}")
        lines += [f"{name:<24} {experiment_spec(name)['title']}", f"{'':<24} " + ("; ".join(done) or "not run yet"),
                  *variations]
    return "\n".join(lines)


def usage() -> str:
    return "\n".join([
        "usage: python -m experiments name=<experiment> [key=value ...]   train what is missing, then judge the claim",
        "       python -m experiments -m name=<experiment> key=a,b ...     a sweep: one study per value",
        "       python -m experiments name=<experiment> --help            its composed config; nothing runs",
        "       python -m experiments --list [results]                    each experiment and its last verdicts",
        f"experiments: {', '.join(experiment_names())}",
        "The settings and their defaults: README.md and src/experiments/config.py."])


def main() -> None:
    register_schema()
    args = set(sys.argv[1:])
    if args & HELP_FLAGS and args <= {*HELP_FLAGS, "-m", "--multirun"}:
        print(usage())
        return
    if "--list" in sys.argv[1:]:
        rest = sys.argv[2:] if sys.argv[1] == "--list" else None
        if rest is None or len(rest) > 1 or (rest and not Path(rest[0]).is_dir()):
            sys.exit("error: --list takes nothing or one results folder that exists: python -m experiments --list [results]")
        print(list_experiments(Path(rest[0]) if rest else Path("results")))
        return
    try:
        sys.argv[1:] = precheck(sys.argv[1:])
    except UserError as exc:
        sys.exit(f"error: {exc}")
    task()


if __name__ == "__main__":
    main()
