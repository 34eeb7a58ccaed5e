"""What a study ran: its settings beside the lecture protocol's (and its own protocol's), each departure marked.

A study stores the resolved settings of every run in study.json (`settings`, by run label) and the
lecture protocol's (`lecture_settings`); this module turns them into the rows of the report's
settings table (tables.settings_markdown) and the study's label."""

from __future__ import annotations

import functools
import math
from collections import defaultdict

from omegaconf import OmegaConf

from experiments.config import CONFIG_DIR, OPTIMIZER_SETTINGS, Config, grid_runs, protocol_settings

# the report's names for the table's marks (and departs(), below)
VARIES = "varies (what the claim compares, or the tuning grid)"
UNREAD = "not read by this study's nets, data or optimizer"

# keys only some architectures (models/__init__.build_model; a test holds the two together) or data sets read
READ_BY_ARCH = {"model.depth": {"mlp", "maxout", "resmlp", "rescnn"}, "model.activation": {"mlp", "cnn", "rnn"},
                "model.dropout": {"mlp", "maxout", "cnn"}, "model.residual": {"resmlp", "rescnn"},
                "model.pieces": {"maxout"}, "model.batch_norm": {"mlp"}, "model.kernels": {"cnn"},
                "model.channels": {"cnn"}, "model.pool": {"cnn"}, "model.conv_dropout": {"cnn"}, "model.cell": {"rnn"},
                "model.recurrent_gain": {"rnn"}}
READ_BY_DATA = {"data.teeth": {"sawtooth"}, "data.seq_len": {"adding"}}
# what an architecture builds in place of a key it does not read (models/resmlp.py, rescnn.py,
# maxout.py): the settings table shows it, as a residual net's batch norm departs from the lecture
# protocol even though no run sets model.batch_norm
BUILT_IN = {"model.batch_norm": {"resmlp": True, "rescnn": True},
            "model.activation": {"resmlp": "relu", "rescnn": "relu", "maxout": "maxout"}}

# optimizer keys only some optimizers read
READ_BY_OPTIMIZER = {f"optimizer.{key}": {name for name, keys in OPTIMIZER_SETTINGS.items() if key in keys}
                     for key in {key for keys in OPTIMIZER_SETTINGS.values() for key in keys}}


def built_in(archs: list[str], everywhere: bool) -> str:
    """The settings table's mark for a value an architecture builds in."""
    return f"built into the {' and '.join(archs)} nets (model.arch){'' if everywhere else '; the others set it by the key'}"


def reads(run: dict[str, object], key: str) -> bool:
    """Whether a run (flattened settings) is changed by `key` at all."""
    arch = run.get("model.arch", "mlp")
    if key == "model.activation" and arch == "rnn":  # the gated cells fix their own nonlinearities
        return run.get("model.cell", "rnn") == "rnn"
    if key in READ_BY_ARCH:
        return arch in READ_BY_ARCH[key]
    if key in READ_BY_OPTIMIZER:
        return run.get("optimizer.name", "sgd") in READ_BY_OPTIMIZER[key]
    return key not in READ_BY_DATA or run.get("data.dataset", "mnist") in READ_BY_DATA[key]


def flatten(settings: dict) -> dict[str, object]:
    return {f"{group}.{key}": value for group, values in settings.items() for key, value in values.items()}


def shown(value) -> str:
    return "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def in_order(values) -> list:
    """Numbers smallest first (a study's widths read as a range); other values as the runs list them."""
    values = list(values)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(values) if numbers else values


def departs(protocol: str) -> str:
    return f"≠ {protocol} protocol"


def settings_rows(study: dict, references: dict[str, dict[str, object]] | None = None
                  ) -> list[tuple[str, list[str], str, str]]:
    """(key, each reference's value, this study's value, mark) for every setting of the study; the
    references (flattened, by protocol) are the lecture protocol's settings as the study recorded
    them unless given. A value every run shares is marked where it differs from a reference; one that
    varies, where no run has the reference's value."""
    runs = {label: flatten(run) for label, run in study["settings"].items()}
    built = {label: {key: by_arch[run.get("model.arch", "mlp")] for key, by_arch in BUILT_IN.items()
                     if run.get("model.arch", "mlp") in by_arch} for label, run in runs.items()}
    references = references or {"lecture": flatten(study["lecture_settings"])}
    first = next(iter(references.values()))
    keys = list(first) + sorted({k for run in runs.values() for k in run} - set(first))
    rows = []
    for key in keys:
        reading = {label: run for label, run in runs.items() if reads(run, key) or key in built[label]}
        values = {label: built[label].get(key, run.get(key)) for label, run in (reading or runs).items()}
        distinct = list(dict.fromkeys(shown(v) for v in in_order(values.values())))
        referenced = [shown(reference.get(key)) for reference in references.values()]
        builders = sorted({runs[label]["model.arch"] for label in reading if key in built[label]})
        by_net = built_in(builders, all(key in built[label] for label in reading)) if builders else ""
        if not reading:
            rows.append((key, referenced, " · ".join(distinct), UNREAD))
        elif len(distinct) == 1:
            value = next(iter(values.values()))
            rows.append((key, referenced, distinct[0], "; ".join([
                *(departs(protocol) for protocol, reference in references.items() if value != reference.get(key)),
                *([by_net] if by_net else [])])))
        else:  # no run at a reference's value departs from it, varying or not (dropout's 1024 · 8 units)
            rows.append((key, referenced, " · ".join(distinct), "; ".join([
                VARIES, *(departs(protocol) for protocol, reference in references.items()
                          if all(value != reference.get(key) for value in values.values())),
                *([by_net] if by_net else [])])))
    return rows


def own_protocol(study: dict) -> dict[str, object]:
    """The study's protocol's settings (flattened): the lecture protocol's as recorded with the runs,
    another protocol's as its file now reads (paths and devices, which runs do not record, left out)."""
    if study["protocol"] == "lecture":
        return flatten(study["lecture_settings"])
    recorded = {key for run in study["settings"].values() for key in flatten(run)}
    return {key: value for key, value in flatten(protocol_settings(study["protocol"])).items() if key in recorded}


def departures(study: dict) -> list[str]:
    """'key=value' for each setting that differs from the study's own protocol in every run ('key=a · b'
    where it varies; a tuning grid's varying key is left to the grid table), less the chunks a run is evaluated
    in (train.eval_batch_size: it changes no number; the settings table marks it). How often it is
    evaluated stays: a check on a curve reads it."""
    grid = study.get("experiment", {}).get("grid") or {}  # a study made by hand (tests) may have no block
    return [f"{key}={value}" + (" (built in)" if "built into" in mark and "the others" not in mark else "")
            for key, _, value, mark in settings_rows(study, {study["protocol"]: own_protocol(study)})
            if departs(study["protocol"]) in mark and key != "train.eval_batch_size"
            and not (key in grid and mark.startswith(VARIES))]


def study_label(study: dict) -> str:
    """'lecture protocol', 'lecture protocol, changed: model.activation=relu, ...', and so for the
    modern protocol: each setting that differs from the protocol's own in every run (departures)."""
    if "settings" not in study:
        return f"{study['protocol']} protocol"
    changed = departures(study)
    return f"{study['protocol']} protocol" + (f", changed: {', '.join(changed)}" if changed else "")


# what a run's training does not depend on: its validation images (MNIST's are the last of the 60k,
# never training images) and how often and in what chunks it is evaluated; its length counts in updates
NOT_TRAINING = {"data.val_size", "train.eval_every", "train.eval_batch_size", "train.epochs", "train.max_updates"}


@functools.cache
def schema_defaults() -> dict[str, object]:
    return flatten({group: values for group, values in OmegaConf.to_container(
        OmegaConf.structured(Config), enum_to_str=True).items() if group in ("model", "data", "optimizer", "train")})


def training_identity(run: dict) -> tuple:
    """What decides a run's training (its resolved settings, flattened): two runs with the same
    identity and seed are the same run, whatever study made it. Settings a run does not read and
    those it lacks (recorded before the key existed) count at their defaults."""
    flat = {**schema_defaults(), **flatten(run)}
    # the generated data sets (function, adding) draw the test set after the validation set: there the split counts
    ignored = NOT_TRAINING - ({"data.val_size"} if flat["data.dataset"] != "mnist" else set())
    kept = {key: str(value) for key, value in flat.items() if key not in ignored and reads(flat, key)}
    updates = flat["train.epochs"] * math.ceil(flat["data.train_size"] / flat["train.batch_size"])
    kept["updates"] = str(updates if flat["train.max_updates"] is None else min(updates, flat["train.max_updates"]))
    return tuple(sorted(kept.items()))


def shared_groups(studies: dict[tuple[str, str], dict]) -> dict[tuple, list]:
    """Each set of variants of different claims that train the same runs (the same training
    identity, seeds in common), by study.json's settings, as ((name, protocol, variant), ...): the
    grid points (one per member) and seeds they share at. Studies recorded without settings are
    left out."""
    made = defaultdict(list)
    for (name, protocol), study in studies.items():
        labels = grid_runs(study["experiment"]["variants"], study["experiment"].get("grid", {}))
        for label, run in study.get("settings", {}).items():
            base, point = labels.get(label, (label, {}))
            made[training_identity(run)].append((name, protocol, base, tuple(point.items()), frozenset(study["seeds"])))
    points = defaultdict(list)  # the same variants, shared at these grid points with these seeds
    for members in made.values():
        # the members that ran some seed another claim's member ran too, and those seeds
        members = [m for m in members if any(m[4] & o[4] for o in members if o[0] != m[0])]
        common = frozenset().union(*(m[4] & o[4] for m in members for o in members if o[0] != m[0]))
        if members:
            points[tuple((name, protocol, base) for name, protocol, base, *_ in members)].append(
                ([point for *_, point, _ in members], common, all(seeds == common for *_, seeds in members)))
    return points


def shared_runs(studies: dict[tuple[str, str], dict]) -> list[str]:
    """A line for each set of variants of different claims that train the same runs: their results
    are one measurement, not independent confirmations. A grid variant shared at every grid point
    is named once. Studies recorded without settings are left out (the caller names them)."""
    lines = []
    for members, shared in shared_groups(studies).items():
        grids = [studies[(name, protocol)]["experiment"].get("grid") or {} for name, protocol, _ in members]
        every = all(len(shared) == math.prod(map(len, grid.values())) for grid in grids if grid)
        grid_points = [next((point for point in member_points if point), ()) for member_points, _, _ in shared]
        where = ("" if not any(grids) else " (every grid point)" if every else " (grid points " + "; ".join(
            ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in point) for point in grid_points) + ")")
        seeds = sorted(set().union(*(common for _, common, _ in shared)))
        lines.append(" = ".join(f"{name}'s {base} ({protocol})" for name, protocol, base in members) + where
                     + ("" if all(alike for *_, alike in shared) else f" (seeds {', '.join(map(str, seeds))} in common)"))
    return lines


def sharing(studies: dict[tuple[str, str], dict]) -> dict[tuple[str, str], list[str]]:
    """For each study that trains runs another claim's study trains too, those claims."""
    partners = defaultdict(set)
    for members in shared_groups(studies):
        for name, protocol, _ in members:
            partners[(name, protocol)] |= {other for other, _, _ in members if other != name}
    return {study: sorted(names) for study, names in partners.items()}


def protocols_identical(name: str) -> bool:
    """True when the experiment file itself sets every key in which the protocols differ, and gives
    no protocol its own grid, so `protocol=modern` runs exactly the lecture-protocol study again."""
    lecture, modern = flatten(protocol_settings("lecture")), flatten(protocol_settings("modern"))
    differing = [key for key in lecture if lecture[key] != modern.get(key)]
    own = OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml")
    return (all(OmegaConf.select(own, key) is not None for key in differing)
            and not OmegaConf.select(own, "experiment.protocol_grids"))
