"""Every experiment file: its variants differ exactly as the claim says, and it runs end to end."""

import json

import pandas as pd
import pytest
from omegaconf import OmegaConf
from experiments.config import experiment_names
from experiments.runner import grid_defaults
from helpers import composed, runs_of


def test_lecture_protocol_is_the_claims_md_demo():
    run = runs_of("name=mse_vs_ce")["cross_entropy"]
    # (kernels, channels, pool and conv_dropout shape model.arch cnn only, cell and recurrent_gain model.arch rnn)
    assert run["model"] == {"arch": "mlp", "depth": 3, "width": 500, "activation": "sigmoid",
                              "init": "glorot_uniform", "dropout": 0.0, "residual": False, "pieces": 2, "batch_norm": False,
                              "kernels": [3, 3], "channels": [32, 64], "pool": 2, "conv_dropout": 0.0, "cell": "rnn",
                              "recurrent_gain": 1.0}
    assert run["data"]["train_size"] == 10000 and run["data"]["val_size"] == 0 and run["data"]["dataset"] == "mnist"
    assert run["train"]["rotate_degrees"] == 0 and run["train"]["shift_pixels"] == 0 and run["train"]["loss"] == "cross_entropy"
    assert run["optimizer"]["name"] == "sgd" and run["optimizer"]["lr"] == 0.1
    assert run["train"]["batch_size"] == 100 and run["train"]["epochs"] == 20


def test_modern_protocol_uses_the_full_training_set_and_a_validation_split():
    run = runs_of("name=relu_vs_sigmoid", "protocol=modern")["relu_lr0.1"]
    assert run["data"]["train_size"] + run["data"]["val_size"] == 60000 and run["data"]["val_size"] > 0
    assert run["model"]["init"] == "torch_default"


@pytest.mark.parametrize("name,changed", [
    ("relu_vs_sigmoid", {"sigmoid": ("model", "activation", "sigmoid"), "relu": ("model", "activation", "relu")}),
    ("depth_sigmoid", {"3_layers": ("model", "depth", 3), "9_layers": ("model", "depth", 9)}),
    ("mse_vs_ce", {"mse": ("train", "loss", "mse"), "cross_entropy": ("train", "loss", "cross_entropy")}),
    ("minibatch_vs_fullbatch", {"minibatch_100": ("train", "batch_size", 100), "full_batch": ("train", "batch_size", 10000)}),
    ("learning_rate", {"lr_0.0001": ("optimizer", "lr", 0.0001), "lr_0.1": ("optimizer", "lr", 0.1), "lr_10": ("optimizer", "lr", 10.0)}),
    ("weight_decay", {"sgd_weight_decay0.0": ("optimizer", "weight_decay", 0.0),
                      "sgd_weight_decay0.1": ("optimizer", "weight_decay", 0.1)}),
])
def test_variants_change_what_the_claim_compares(name, changed):
    runs = runs_of(f"name={name}")
    assert set(changed) <= set(runs)
    for variant, (group, key, value) in changed.items():
        assert runs[variant][group][key] == value
    # apart from the compared key, the lecture's pair of variants are the same experiment
    (group, key, _), *_ = changed.values()
    stripped = [{g: {k: v for k, v in runs[variant][g].items() if (g, k) != (group, key)}
                 for g in ("model", "data", "optimizer", "train")} for variant in changed]
    assert all(s == stripped[0] for s in stripped)


def test_full_batch_follows_the_training_set_size():
    assert runs_of("name=minibatch_vs_fullbatch", "data.train_size=600")["full_batch"]["train"]["batch_size"] == 600


@pytest.mark.parametrize("name", experiment_names())
def test_each_experiment_runs_at_a_tiny_size(run_in_process, tmp_path, name):
    spec = composed(f"name={name}")
    # a grid experiment at its variants' own values only: each still has its _default and _tuned
    grid: dict[str, set] = {}
    for values in grid_defaults(spec).values():
        for key, value in values.items():
            grid.setdefault(key, set()).add(value)
    # a setting every variant sets for itself cannot be given (it would change no run); those runs
    # keep their own sizes, and the update cap keeps them short
    small = ["data.train_size=200", "data.test_size=100", "model.width=8", "train.epochs=1", "data.val_size=100"]
    small = [o for o in small if not all(OmegaConf.select(OmegaConf.create(partial), o.split("=")[0]) is not None
                                         for partial in spec.experiment.variants.values())]
    done = run_in_process(f"name={name}", *small, "train.max_updates=20",
                   "seeds=[0,1]", *(["experiment.grid={" + ",".join(f"{k}:{sorted(v)}" for k, v in grid.items()) + "}"] if grid else []))
    assert done.returncode == 0, done.stderr
    (study,) = (tmp_path / "results" / name / "lecture").iterdir()
    summary = pd.read_csv(study / "summary.csv")
    assert (summary["n"] == 2).all()
    verdict = json.loads((study / "verdict.json").read_text())
    assert verdict["verdict"] in {"reproduced", "partly", "not reproduced", "inconclusive"}
    # every check found its variants and its metric among the runs' measurements
    assert verdict["checks"] and all(check["difference"] is not None for check in verdict["checks"]), verdict["reason"]
    for figure in json.loads((study / "study.json").read_text())["experiment"]["figures"]:
        assert (study / f"{figure}.png").stat().st_size > 10000, figure


@pytest.mark.parametrize("protocol,train_size", [("lecture", 10000), ("modern", 55000)])
def test_equal_updates_variants_make_200_updates_under_either_protocol(protocol, train_size):
    runs = runs_of("name=minibatch_vs_fullbatch", f"protocol={protocol}")
    point = "_lr0.1" if protocol == "modern" else ""  # the modern protocol tunes the rate on a grid
    full, mini = runs[f"full_batch_200_updates{point}"]["train"], runs[f"minibatch_200_updates{point}"]["train"]
    assert full["batch_size"] == train_size and full["epochs"] == 200 and full["max_updates"] is None
    assert mini["batch_size"] == 100 and mini["max_updates"] == 200 and mini["epochs"] * train_size >= 200 * 100
