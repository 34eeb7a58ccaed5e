"""Builders the tests share: a toy study and its results store, and experiment configs composed
as the entry point composes them. Functions only: no test reads another test module's state."""

import copy
import json

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from experiments import store
from experiments.config import CONFIG_DIR, apply_protocol_grid, register_schema
from experiments.runner import build_runs

_TOY_STUDY = {
    "experiment": {"name": "toy", "title": "Toy", "claim": "b beats a", "lecture_ref": "made up",
                   "variants": {"a": {}, "b": {}}, "lecture": {"a": 0.11, "b": 0.96},
                   "verdict": {"metric": "test_acc", "better": "b", "worse": "a", "tolerance": 0.05}},
    "seeds": [0, 1, 2, 3, 4], "protocol": "lecture", "overrides": [],
}


def make_runs(finals: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for variant, values in finals.items():
        for seed, value in enumerate(values):
            for epoch, acc in ((0, 0.1), (1, value)):
                rows.append({"variant": variant, "seed": seed, "epoch": epoch, "train_loss": 1.0 / (epoch + 1),
                             "train_acc": acc, "test_acc": acc, "seconds": 2.0 * epoch, "epoch_seconds": 2.0 * epoch, "status": "complete",
                             "grad_norm_1": 0.01, "grad_norm_2": 1.0})
    return pd.DataFrame(rows)


def toy_study(**changes) -> dict:
    """A fresh copy of a two-variant study ('b beats a', lecture numbers a 0.11, b 0.96)."""
    return {**copy.deepcopy(_TOY_STUDY), **changes}


def write_store(study_dir, finals, runs_in_group: int = 1, study: dict | None = None):
    (study_dir).mkdir(parents=True)
    (study_dir / store.STUDY_FILE).write_text(json.dumps(study or toy_study()))
    runs = make_runs(finals)
    for (variant, seed), rows in runs.groupby(["variant", "seed"]):
        path = store.run_dir(study_dir, variant, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.temp_dir_for(path)
        meta = {"variant": variant, "seed": int(seed), "status": "complete", "key": "k", "runs_in_group": runs_in_group}
        store.commit_run(tmp, path, rows.drop(columns=["variant", "seed", "status"]).to_dict("records"), meta)


def composed(*overrides: str):
    register_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        apply_protocol_grid(cfg, cfg.hydra.runtime.choices.protocol)  # as the entry point does
        return cfg


def runs_of(*overrides: str) -> dict[str, dict]:
    return build_runs(composed(*overrides))


