"""`python -m experiments name=<experiment> [key=value ...]` — the Hydra entry point.

Before Hydra runs, the command line is composed once (each swept value in turn) so that an
unknown experiment, a mistyped key or a bad value ends in one line, not a Hydra report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config import CONFIG_DIR, experiment_names, register_schema
from experiments.errors import UserError, one_line
from experiments.runner import build_runs, check_writable, resolve_device, run_study

# Hydra's own flags (--help, --cfg job, --info, ...) are left to Hydra; -m only picks multirun.
PASS_THROUGH_FLAGS = ("-m", "--multirun")


def override_sets(args: list[str]) -> list[list[str]]:
    """The command line with each sweep at its first value, then once per other swept value."""
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise UserError(one_line(exc)) from None
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    first = [options[0] for options in choices]
    sets = [first]
    for i, options in enumerate(choices):
        sets += [first[:i] + [option] + first[i + 1:] for option in options[1:]]
    return sets


def precheck(args: list[str]) -> None:
    if any(a.startswith("-") and a not in PASS_THROUGH_FLAGS for a in args):
        return
    overrides = [a for a in args if a not in PASS_THROUGH_FLAGS]
    names = experiment_names()
    sets = override_sets(overrides)
    chosen = {o.split("=", 1)[1] for s in sets for o in s if o.split("=", 1)[0] == "name"}
    if not chosen:
        raise UserError(f"say which experiment to run: name=<one of {', '.join(names)}>")
    for name in sorted(chosen):
        if name not in names:
            raise UserError(f"unknown experiment {name!r}; choose one of: {', '.join(names)}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for overrides_now in sets:
            job_overrides = [o for o in overrides_now if not o.lstrip("+~").startswith("hydra")]
            try:
                cfg = compose(config_name="config", overrides=job_overrides, return_hydra_config=True)
                HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve as in a real run
                build_runs(cfg)
                resolve_device(cfg.device.value)
            except (HydraException, OmegaConfBaseException) as exc:
                message = one_line(exc)
                if "In 'name/" in message and "not in 'Config'" in message:
                    message += " (an experiment file must start with the line '# @package _global_')"
                raise UserError(message) from None
            check_folder_names(job_overrides, set(cfg.hydra.job.config.override_dirname.exclude_keys))
            check_writable(Path(cfg.results_dir))


def check_folder_names(overrides: list[str], excluded: set[str]) -> None:
    """Overrides name the study folder, so none may carry a path into it (no '../../x')."""
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") not in excluded and ("/" in value or "\\" in value):
            raise UserError(f"{override!r}: values that name the results folder may not contain '/' or '\\'")


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def task(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        run_study(cfg, Path(hydra_cfg.runtime.output_dir), protocol=hydra_cfg.runtime.choices.protocol,
                  overrides=list(hydra_cfg.overrides.task))
    except UserError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted: finished runs are kept; run the same command again to do the rest")


def main() -> None:
    register_schema()
    try:
        precheck(sys.argv[1:])
    except UserError as exc:
        sys.exit(f"error: {exc}")
    task()


if __name__ == "__main__":
    main()
