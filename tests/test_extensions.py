"""Grids, check kinds, probes and the residual MLP: the pieces the later claims are built from."""

import math

import pandas as pd
import pytest
import torch

from experiments import judge, tuning
from experiments.config import grid_runs
from experiments.errors import UserError
from experiments.data import make_splits
from experiments.metrics import per_run
from experiments.probes import (NOISE_SIGMAS, PROBES, activation_scale, delete_blocks, loss_line, mc_dropout,
                                noisy_test, weight_norm)
from experiments.train import train_run
from models import ResidualMLP, build_model, mlp_parameter_count
from helpers import runs_of


def resolve(runs: pd.DataFrame, study: dict):
    """The grid resolved as the analysis resolves it: scored on each run's final numbers. Each run
    starts from a higher training loss (an epoch 0 before its rows), so it counts as having learned
    unless its test accuracy ends at or below 0.2."""
    start = runs.sort_values("epoch").drop_duplicates(["variant", "seed"]).assign(epoch=0, train_loss=9.0)
    return tuning.resolve_grid(runs, study, per_run(pd.concat([start, runs], ignore_index=True)))


def test_grid_crosses_every_variant_with_every_value():
    labels = grid_runs({"sgd": {}, "adam": {}}, {"optimizer.lr": [0.01, 0.1]})
    assert labels == {"sgd_lr0.01": ("sgd", {"optimizer.lr": 0.01}), "sgd_lr0.1": ("sgd", {"optimizer.lr": 0.1}),
                      "adam_lr0.01": ("adam", {"optimizer.lr": 0.01}), "adam_lr0.1": ("adam", {"optimizer.lr": 0.1})}
    runs = runs_of("name=optimizers")
    assert len(runs) == 9 * 10  # 9 optimizers, each on a 10-point rate grid
    assert runs["adadelta_lr0.1"]["optimizer"] == {"name": "adadelta", "lr": 0.1, "momentum": 0.0,
                                                       "nesterov": False, "weight_decay": 0.0, "schedule": "constant"}
    assert runs["nesterov_lr1.0"]["optimizer"]["nesterov"] is True


GRID_STUDY = {"experiment": {"variants": {"sgd": {"optimizer": {"lr": 0.1}}, "adam": {"optimizer": {"lr": 0.01}}},
                             "grid": {"optimizer.lr": [0.01, 0.1]}, "lecture": {},
                             "verdict": {"metric": "test_acc", "checks": []}},
              "seeds": [0, 1]}


def test_tuned_takes_the_best_validation_accuracy_and_default_the_configured_value():
    rows = []
    for label, val, test in (("sgd_lr0.01", 0.9, 0.1), ("sgd_lr0.1", 0.5, 0.99),  # test set must not decide
                             ("adam_lr0.01", 0.7, 0.7), ("adam_lr0.1", 0.8, 0.8)):
        for seed in (0, 1):
            rows.append({"variant": label, "seed": seed, "epoch": 1, "val_acc": val, "test_acc": test,
                         "train_acc": val, "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"})
    runs, study, grid_md = resolve(pd.DataFrame(rows), GRID_STUDY)
    chosen = runs.groupby("variant")["grid_run"].first().to_dict()
    assert chosen == {"sgd_tuned": "sgd_lr0.01", "sgd_default": "sgd_lr0.1",
                      "adam_tuned": "adam_lr0.1", "adam_default": "adam_lr0.01"}
    assert list(study["experiment"]["variants"]) == ["sgd_default", "adam_default", "sgd_tuned", "adam_tuned"]
    assert "| sgd | 0.900 (0.100) | 0.500 (0.990) | 0.01 | 0.4 (per seed: ahead in 2 of 2, from +0.4 to +0.4) | 0.1 |" in grid_md
    # a two-point grid has no inside: whichever point is best is an end of it
    assert "at the edge of the grid, so tuning may be incomplete for: sgd (sgd_lr0.01), adam (adam_lr0.1)." in grid_md
    assert study["grid_edges"] == {"sgd_tuned": "lr=0.01, the grid's lowest lr", "adam_tuned": "lr=0.1, the grid's highest lr"}


def test_a_protocol_grid_tunes_under_its_protocol_only():
    lecture, modern = runs_of("name=mse_vs_ce"), runs_of("name=mse_vs_ce", "protocol=modern")
    assert sorted(lecture) == ["cross_entropy", "mse"]
    assert sorted(modern) == [f"{v}_lr{lr}" for v in ("cross_entropy", "mse") for lr in (0.01, 0.03, 0.1, 0.3, 1.0)]
    assert modern["mse_lr0.3"]["optimizer"]["lr"] == 0.3 and modern["mse_lr0.3"]["train"]["loss"] == "mse"
    # a protocol's grid replaces the study's `grid` under that protocol only
    lecture_rates = {run["optimizer"]["lr"] for run in runs_of("name=deep_vs_fat").values()}
    modern_rates = {run["optimizer"]["lr"] for run in runs_of("name=deep_vs_fat", "protocol=modern").values()}
    assert lecture_rates == {0.0001, 0.0003, 0.001, 0.003, 0.01} and modern_rates == lecture_rates - {0.01}
    # a misspelt protocol's grid is an error, not a grid skipped without a word
    with pytest.raises(UserError, match="protocol_grids names no protocol 'lectrue'"):
        runs_of("name=deep_vs_fat", "+experiment.protocol_grids.lectrue={optimizer.lr: [0.1]}")


def test_in_a_grid_study_a_plain_variant_name_means_its_tuned_value():
    rule = {"metric": "test_acc", "checks": [{"better": "sgd", "worse": "adam"},
                                             {"better": "sgd_default", "worse": "adam_tuned", "key": False}]}
    checks = judge.checks_of(rule, GRID_STUDY)
    assert [(c.better, c.worse) for c in checks] == [("sgd_tuned", "adam_tuned"), ("sgd_default", "adam_tuned")]
    plain = judge.checks_of(rule, {**GRID_STUDY, "experiment": {**GRID_STUDY["experiment"], "grid": {}}})
    assert (plain[0].better, plain[0].worse) == ("sgd", "adam")
    pooled = judge.checks_of({"metric": "test_acc", "checks": [{"better": "sgd", "worse": "adam", "pairs": [["sgd_default", "adam_default"]]}]},
                             GRID_STUDY)[0]
    assert pooled.pairs == (("sgd_default", "adam_default"),) and (pooled.better, pooled.worse) == ("sgd_tuned", "adam_tuned")


def finals(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "seed": s, "m": x} for v, xs in values.items() for s, x in enumerate(xs)])


@pytest.mark.parametrize("kind,lower,values,verdict", [
    ("beats", False, {"a": [0.9, 0.91, 0.92], "b": [0.5, 0.51, 0.52]}, "reproduced"),
    ("beats", True, {"a": [0.9, 0.91, 0.92], "b": [0.5, 0.51, 0.52]}, "not reproduced"),
    ("beats", True, {"a": [0.1, 0.11, 0.12], "b": [0.5, 0.51, 0.52]}, "reproduced"),
    ("not_worse", False, {"a": [0.530, 0.531, 0.532], "b": [0.53, 0.531, 0.533]}, "reproduced"),  # within the margin
    ("not_worse", False, {"a": [0.50, 0.52, 0.54], "b": [0.51, 0.53, 0.55]}, "inconclusive"),  # too noisy to tell
    ("not_worse", False, {"a": [0.10, 0.11, 0.12], "b": [0.5, 0.51, 0.52]}, "not reproduced"),
])
def test_check_kinds_through_the_analysis(kind, lower, values, verdict):
    study = {"experiment": {"variants": {"a": {}, "b": {}}, "lecture": {},
                            "verdict": {"metric": "m", "tolerance": None, "checks": [
                                {"better": "a", "worse": "b", "kind": kind, "lower_is_better": lower, "margin": 0.01}]}},
             "seeds": [0, 1, 2], "protocol": "lecture"}
    summary = pd.DataFrame([{"variant": v, "n": 3, "n_expected": 3, "mean": 0.0, "lecture": float("nan")} for v in "ab"])
    assert judge.decide(summary, finals(values), study)["verdict"] == verdict


def test_deep_and_shallow_nets_have_equal_parameters_within_one_percent():
    runs = runs_of("name=deep_vs_fat")
    for k in range(2, 8):
        deep, shallow = runs[f"deep_{k}_lr0.0003"]["model"], runs[f"shallow_{k}_lr0.0003"]["model"]
        assert deep["depth"] == k and shallow["depth"] == 1
        p_deep = mlp_parameter_count(784, k, deep["width"], 10)
        p_shallow = mlp_parameter_count(784, 1, shallow["width"], 10)
        assert abs(p_shallow - p_deep) / p_deep < 0.01


def test_residual_mlp_blocks_and_deletion():
    torch.manual_seed(0)
    cfg = {"arch": "resmlp", "depth": 7, "width": 16, "activation": "relu", "init": "he", "dropout": 0.0,
           "residual": True}
    net = build_model(cfg, 784, 10).eval()
    assert isinstance(net, ResidualMLP) and len(net.blocks) == 3 and len(net.weight_layers) == 8
    x = torch.rand(5, 784)
    full = net(x)
    net.skipped = {1}
    assert not torch.allclose(net(x), full)
    skipped_out = net(x)
    # a residual block whose branch outputs zero (its last batch norm scaled to 0) is the identity
    # on its non-negative input, i.e. the same as deleting it
    with torch.no_grad():
        net.blocks[1].branch[4].weight.zero_()
        net.blocks[1].branch[4].bias.zero_()
    net.skipped = set()
    assert torch.allclose(net(x), skipped_out, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        build_model(cfg | {"depth": 4}, 784, 10)


@pytest.fixture(scope="module")
def tiny(mnist_root):
    return make_splits({"dataset": "mnist", "root": mnist_root, "train_size": 500, "val_size": 0, "test_size": 10000, "download": False}, torch.device("cpu"))


def tiny_cfg(mnist_root, **model):
    return {"model": {"arch": "mlp", "depth": 2, "width": 64, "activation": "relu", "init": "he", "dropout": 0.0,
                      "residual": False, "pieces": 2, "batch_norm": False, **model},
            "data": {"dataset": "mnist", "teeth": 16, "root": mnist_root, "train_size": 500, "val_size": 0, "test_size": 10000, "download": False},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": "constant"},
            "train": {"loss": "cross_entropy", "batch_size": 50, "epochs": 3, "eval_batch_size": 10000,
                      "eval_every": 1, "max_updates": None, "rotate_degrees": 0.0, "shift_pixels": 0.0, "clip_grad_norm": None, "cuda_graph": False}}


def test_mc_dropout_probe_averages_thinned_networks(mnist_root, tiny):
    cfg = tiny_cfg(mnist_root, dropout=0.5)
    result = train_run(cfg, tiny, seed=0)
    table, scalars = mc_dropout(result.model, tiny, cfg, 0)
    assert table["k"].tolist() == list(range(1, 51))
    assert table["weight_scaling_acc"].nunique() == 1
    assert table["weight_scaling_acc"].iloc[0] == pytest.approx(result.rows[-1]["test_acc"])
    assert table["mc_acc"].iloc[-1] > table["mc_acc"].iloc[0] - 0.01  # averaging many beats one sample
    assert scalars["mc50_acc"] == table["mc_acc"].iloc[-1]
    assert scalars["mc50_minus_scaling_acc"] == pytest.approx(scalars["mc50_acc"] - scalars["weight_scaling_acc"])
    assert set(scalars) == set(PROBES["mc_dropout"].scalars)
    assert mc_dropout(result.model, tiny, tiny_cfg(mnist_root), 0)[0].empty  # no dropout, nothing to average


def test_loss_line_starts_at_init_and_ends_at_the_trained_weights(mnist_root, tiny):
    cfg = tiny_cfg(mnist_root)
    result = train_run(cfg, tiny, seed=0)
    table, _ = loss_line(result.model, tiny, cfg, 0)
    at = table.set_index("t")
    assert at.loc[1.0, "cross_entropy"] < at.loc[0.0, "cross_entropy"]
    assert at.loc[0.0, "cross_entropy"] == pytest.approx(result.rows[0]["train_loss"], rel=0.05)


def test_delete_blocks_probe(mnist_root, tiny):
    cfg = tiny_cfg(mnist_root, arch="resmlp", depth=5, residual=True)
    result = train_run(cfg, tiny, seed=0)
    table, scalars = delete_blocks(result.model, tiny, cfg, 0)
    assert table["block"].tolist() == [-1, 0, 1]
    assert table.loc[0, "test_acc"] == pytest.approx(result.rows[-1]["test_acc"])
    assert scalars["min_acc_one_block_deleted"] <= scalars["acc_one_block_deleted"]
    full, deleted = table.loc[0, "test_acc"], table.loc[1:, "test_acc"]
    assert scalars["drop_one_block"] == pytest.approx(full - deleted.mean())
    assert scalars["max_drop_one_block"] == pytest.approx(full - deleted.min())
    assert scalars["drop_one_block_but_worst"] == pytest.approx(full - deleted.sort_values().iloc[1:].mean())
    assert scalars["worst_block"] == int(deleted.idxmin()) - 1
    assert set(scalars) == set(PROBES["delete_blocks"].scalars)
    assert result.model.skipped == set()


def test_noisy_test_probe_adds_seeded_noise_and_reports_the_drop(mnist_root, tiny):
    cfg = tiny_cfg(mnist_root)
    result = train_run(cfg, tiny, seed=0)
    table, scalars = noisy_test(result.model, tiny, cfg, 0)
    assert table["sigma"].tolist() == list(NOISE_SIGMAS)
    at = table.set_index("sigma")["test_acc"]
    assert at[0.0] == pytest.approx(result.rows[-1]["test_acc"])  # sigma 0: the clean test set
    assert at[2.0] < at[0.0] - 0.2  # noise this strong costs a trained net much of its accuracy
    assert scalars == {"noisy_test_acc": at[1.0], "noise_drop": pytest.approx(at[0.0] - at[1.0])}
    assert noisy_test(result.model, tiny, cfg, 0)[1] == scalars  # the noise follows the seed
    assert noisy_test(result.model, tiny, cfg, 1)[1] != scalars
    assert set(scalars) == set(PROBES["noisy_test"].scalars)


def test_weight_norm_probe_counts_weight_matrices_only(mnist_root):
    model = build_model(tiny_cfg(mnist_root)["model"], 784, 10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.5 if p.dim() > 1 else 100.0)  # biases must not count
        next(p for p in model.parameters() if p.dim() > 1)[:10].zero_()  # 10 rows of the first layer: 7,840 zeros
    table, scalars = weight_norm(model, {}, {}, 0)
    n = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert scalars["weight_norm"] == pytest.approx(0.5 * (n - 7840) ** 0.5)
    assert scalars["small_weight_fraction"] == pytest.approx(7840 / n)
    with torch.no_grad():  # shrinking every weight alike prunes nothing
        for p in model.parameters():
            p.mul_(0.001)
    assert weight_norm(model, {}, {}, 0)[1]["small_weight_fraction"] == pytest.approx(7840 / n)
    assert table["fraction"].sum() == pytest.approx(1.0)
    assert set(scalars) == set(PROBES["weight_norm"].scalars)


def test_activation_scale_probe_measures_the_initial_net(mnist_root, tiny):
    def ratio(init):
        cfg = tiny_cfg(mnist_root, depth=9, width=200, init=init)
        table, scalars = activation_scale(build_model(cfg["model"], 784, 10), tiny, cfg, seed=0)
        assert table["layer"].tolist() == list(range(1, 10))
        assert scalars["log10_act_ratio"] == pytest.approx(math.log10(table["act_std"].iloc[-1] / table["act_std"].iloc[0]))
        return scalars["log10_act_ratio"]

    # N(0, 0.01^2) at fan-in 200 scales a ReLU layer's output by about 0.01 * sqrt(200 / 2) = 0.1
    assert ratio("small_normal") == pytest.approx(-8, abs=1)
    assert abs(ratio("he")) < 0.5  # He's gain keeps the scale
    cfg = tiny_cfg(mnist_root, depth=2, init="he")
    trained = train_run(cfg, tiny, seed=0).model
    # the measurement is of the initial weights: the same with or without training
    assert activation_scale(trained, tiny, cfg, 0)[0].equals(activation_scale(build_model(cfg["model"], 784, 10), tiny, cfg, 0)[0])


def test_derived_metrics_for_learning_rate_and_early_stopping():
    rows = []
    for seed, (status, accs, losses) in enumerate([("complete", [0.1, 0.8, 0.9, 0.85], [2.3, 1.0, 0.5, 0.4]),
                                                   ("complete", [0.1, 0.15, 0.12, 0.11], [2.3, 2.3, 2.29, 2.28]),
                                                   ("diverged", [0.1, 0.5, 0.6, 0.098], [2.3, 1.5, 9.0, float("nan")])]):
        for epoch, (acc, loss) in enumerate(zip(accs, losses)):
            # validation accuracy peaks at epoch 2 in every run
            rows.append({"variant": "v", "seed": seed, "epoch": epoch, "train_loss": loss, "train_acc": acc,
                         "test_acc": acc, "val_acc": [0.1, 0.5, 0.9, 0.7][epoch], "epoch_seconds": 1.0, "status": status})
    finals = per_run(pd.DataFrame(rows)).set_index("seed")
    assert finals["failed_to_learn"].tolist() == [0.0, 1.0, 1.0]  # learned; ended near chance; diverged
    assert finals.loc[0, "loss_drop"] == pytest.approx(2.3 - 0.4)
    assert finals["best_val_epoch"].tolist() == [2, 2, 2]
    assert finals["test_acc_at_best_val"].tolist() == [0.9, 0.12, 0.6]
    assert finals.loc[0, "early_stop_gain"] == pytest.approx(0.9 - 0.85)
    # the test curve's own fall from its peak: in seed 1 the peak (epoch 1) is not the best-validation epoch
    assert finals.loc[[0, 1], "test_drop_from_peak"].tolist() == pytest.approx([0.9 - 0.85, 0.15 - 0.11])


def test_a_tuned_value_at_the_grid_edge_is_flagged():
    study = {"experiment": {**GRID_STUDY["experiment"], "variants": {"sgd": {"optimizer": {"lr": 0.1}}},
                            "grid": {"optimizer.lr": [0.01, 0.1, 1.0]}}, "seeds": [0]}
    rows = [{"variant": label, "seed": 0, "epoch": 1, "val_acc": val, "test_acc": val, "train_acc": val,
             "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
            for label, val in (("sgd_lr0.01", 0.5), ("sgd_lr0.1", 0.6), ("sgd_lr1.0", 0.7))]
    _, resolved, grid_md = resolve(pd.DataFrame(rows), study)
    assert "edge of the grid, so tuning may be incomplete for: sgd (sgd_lr1.0)" in grid_md
    assert "| 0.1 |" in grid_md  # the lead: .2g, so that one validation image's lead is not shown as 0
    assert resolved["grid_edges"] == {"sgd_tuned": "lr=1, the grid's highest lr"}  # for the verdict's grid-edge caveat


def test_tied_grid_points_are_named_the_first_is_taken_and_a_tie_at_the_edge_is_flagged():
    # points that score alike tie, and means that differ by float rounding only tie too
    study = {"experiment": {**GRID_STUDY["experiment"], "variants": {"sgd": {"optimizer": {"lr": 0.1}}},
                            "grid": {"optimizer.lr": [0.01, 0.1, 1.0]}}, "seeds": [0]}

    def resolved(scores):
        rows = [{"variant": label, "seed": 0, "epoch": 1, "val_acc": val, "test_acc": val, "train_acc": val,
                 "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
                for label, val in zip(("sgd_lr0.01", "sgd_lr0.1", "sgd_lr1.0"), scores)]
        runs, study_resolved, grid_md = resolve(pd.DataFrame(rows), study)
        return runs.groupby("variant")["grid_run"].first()["sgd_tuned"], grid_md, study_resolved["grid_edges"]

    tuned, grid_md, edges = resolved((0.1, 0.2, 0.2 + 1e-15))
    assert tuned == "sgd_lr0.1"
    assert "| 0.1 | 0: 2 points tie for best, the first in grid order is taken | 0.1 |" in grid_md
    assert "(alone or tied) at the edge of the grid, so tuning may be incomplete for: sgd (sgd_lr1.0)" in grid_md
    assert edges == {"sgd_tuned": "lr=0.1, tied with lr=1, the grid's highest lr"}  # the point taken, and the edge it ties with
    _, _, edges = resolved((0.5, 0.5, 0.5))  # a net that learns, alike at every rate
    assert edges == {"sgd_tuned": "lr=0.01: every grid point scores alike on validation"}
    # a net at chance at every rate (test accuracy at or below 0.2: failed to learn) learned at no grid
    # point, wherever its argmax lies (depth_sigmoid's 9 layers: which digit each seed guesses)
    tuned, grid_md, edges = resolved((0.1, 0.11, 0.1))
    assert tuned == "sgd_lr0.1" and edges == {"sgd_tuned": "lr=0.1, though no grid point trains it (every run failed to learn)"}
    assert "| none: every run at every grid point failed to learn, so the choice is arbitrary |" in grid_md
    assert "No grid point trains sgd: every run failed to learn" in grid_md and "edge of the grid" not in grid_md
    # a regression net has no test accuracy, so failed_to_learn (1 for it) says nothing: not flagged
    rows = [{"variant": label, "seed": 0, "epoch": epoch, "val_acc": val, "test_acc": float("nan"), "train_acc": float("nan"),
             "train_loss": 2.0 - epoch, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
            for label, val in zip(("sgd_lr0.01", "sgd_lr0.1", "sgd_lr1.0"), (0.1, 0.11, 0.1)) for epoch in (0, 1)]
    _, study_resolved, grid_md = tuning.resolve_grid(pd.DataFrame(rows), study, per_run(pd.DataFrame(rows)))
    assert study_resolved["grid_edges"] == {} and "No grid point trains" not in grid_md
    tuned, grid_md, edges = resolved((0.1, 0.2 + 1 / 25_000, 0.2))  # one validation image of 5,000, over 5 seeds
    assert tuned == "sgd_lr0.1" and "| 0.1 | 4e-05 | 0.1 |" in grid_md and "edge of the grid" not in grid_md
    assert edges == {}


def test_the_lead_over_the_runner_up_says_in_how_many_seeds_the_chosen_point_is_ahead():
    study = {"experiment": {**GRID_STUDY["experiment"], "variants": {"sgd": {"optimizer": {"lr": 0.1}}},
                            "grid": {"optimizer.lr": [0.01, 0.1, 1.0]}}, "seeds": [0, 1, 2, 3]}
    # lr 0.1 has the best mean (0.7) but beats lr 1.0 (mean 0.65) in seeds 0 and 1 only, and ties in seed 2
    scores = {"sgd_lr0.01": [0.1, 0.1, 0.1, 0.1], "sgd_lr0.1": [0.9, 0.9, 0.5, 0.5], "sgd_lr1.0": [0.6, 0.6, 0.5, 0.9]}
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_acc": val, "test_acc": val, "train_acc": val,
             "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
            for label, vals in scores.items() for seed, val in enumerate(vals)]
    _, _, grid_md = resolve(pd.DataFrame(rows), study)
    assert "| 0.1 | 0.05 (per seed: ahead in 2, behind in 1, level in 1 of 4, from -0.4 to +0.3) | 0.1 |" in grid_md
    # a seed diverged (no finite score) at every other point: their means are minus infinity, and the lead is said so
    scores = {"sgd_lr0.01": [0.5, 0.6, 0.5, 0.6], "sgd_lr0.1": [float("nan"), 0.9, 0.9, 0.9],
              "sgd_lr1.0": [0.9, float("nan"), 0.9, 0.9]}
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_acc": val, "test_acc": val, "train_acc": val,
             "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
            for label, vals in scores.items() for seed, val in enumerate(vals)]
    _, _, grid_md = resolve(pd.DataFrame(rows), study)
    assert "| 0.01 | each other point has a diverged seed | 0.1 |" in grid_md


def test_a_grid_cell_says_how_many_of_its_seeds_diverged():
    study = {"experiment": {**GRID_STUDY["experiment"], "variants": {"sgd": {"optimizer": {"lr": 0.1}}},
                            "grid": {"optimizer.lr": [0.1, 1.0]}}, "seeds": [0, 1]}
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_acc": val, "test_acc": val, "train_acc": val,
             "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": status}
            for label, seed, val, status in (("sgd_lr0.1", 0, 0.9, "complete"), ("sgd_lr0.1", 1, 0.9, "complete"),
                                             ("sgd_lr1.0", 0, 0.96, "complete"), ("sgd_lr1.0", 1, 0.1, "diverged"))]
    _, _, grid_md = resolve(pd.DataFrame(rows), study)
    assert "| 0.900 (0.900) | 0.530 (0.530); 1 of 2 diverged |" in grid_md


def test_every_point_of_a_two_point_grid_and_each_key_of_a_two_key_grid_has_ends():
    grid = {"optimizer.lr": [0.003, 0.001], "optimizer.name": ["sgd", "adam", "rmsprop"]}
    assert tuning._ends({"optimizer.lr": 0.003, "optimizer.name": "adam"}, grid) == ["the grid's highest lr"]
    assert tuning._ends({"optimizer.lr": 0.001, "optimizer.name": "rmsprop"}, grid) == [
        "the grid's lowest lr", "the grid's last name"]
    assert tuning._ends({"optimizer.lr": 0.1}, {"optimizer.lr": [0.1]}) == []  # one value: no grid to widen


def test_a_variant_whose_own_value_is_off_the_grid_waits_for_no_default_run():
    study = {"experiment": {**GRID_STUDY["experiment"], "grid": {"optimizer.lr": [0.05]}}, "seeds": [0]}
    rows = [{"variant": label, "seed": 0, "epoch": 1, "val_acc": 0.5, "test_acc": 0.5, "train_acc": 0.5,
             "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0, "status": "complete"}
            for label in ("sgd_lr0.05", "adam_lr0.05")]
    runs, resolved, grid_md = resolve(pd.DataFrame(rows), study)
    assert list(resolved["experiment"]["variants"]) == ["sgd_tuned", "adam_tuned"]  # nothing left to wait for
    assert "Own value not on the grid, so no `_default` run: sgd, adam." in grid_md


FUNCTION_DATA = {"dataset": "sawtooth", "teeth": 4, "seq_len": 100, "train_size": 400, "val_size": 100, "test_size": 401}


def function_cfg(**model):
    return {"model": {"arch": "mlp", "depth": 1, "width": 64, "activation": "relu", "init": "he", "dropout": 0.0,
                      "residual": False, "pieces": 2, "batch_norm": False, "conv_dropout": 0.0,
                      "kernels": [3, 3], "channels": [32, 64], "pool": 2, "cell": "rnn", "recurrent_gain": 1.0, **model},
            "data": {**FUNCTION_DATA, "root": "unused", "download": False},
            "optimizer": {"name": "adam", "lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                          "schedule": "constant"},
            "train": {"loss": "squared_error", "batch_size": 50, "epochs": 40, "eval_batch_size": 10000,
                      "eval_every": 40, "max_updates": None, "rotate_degrees": 0.0, "shift_pixels": 0.0, "clip_grad_norm": None, "cuda_graph": False}}


def test_function_data_is_a_fixed_sample_and_an_even_test_grid():
    splits = make_splits(FUNCTION_DATA, torch.device("cpu"))
    assert splits["train"].shape == (1, 1) and splits["train"].y.dtype == torch.float32
    assert torch.equal(splits["train"].x, make_splits(FUNCTION_DATA, torch.device("cpu"))["train"].x)  # data, not seed
    assert ((splits["train"].x >= -1) & (splits["train"].x <= 1)).all()
    grid, values = splits["test"].x[:, 0], splits["test"].y
    assert torch.allclose(grid, torch.linspace(-1, 1, 401))
    # the triangle wave: 0 at both ends, 4 teeth of height 1
    assert values[0] == 0 and abs(values[-1]) < 1e-5 and values.max() == pytest.approx(1)
    peaks = (values[1:-1] >= values[:-2]) & (values[1:-1] > values[2:])
    assert int(peaks.sum()) == 4 and (values[1:-1][peaks] > 0.99).all()


def test_a_regression_run_learns_the_function_and_has_no_accuracy():
    splits = make_splits(FUNCTION_DATA, torch.device("cpu"))
    result = train_run(function_cfg(), splits, seed=0)
    first, last = result.rows[0], result.rows[-1]
    assert last["test_loss"] < first["test_loss"] / 2
    assert math.isnan(last["test_acc"]) and math.isnan(last["train_acc"])
    table, scalars = PROBES["function_fit"].measure(result.model, splits, function_cfg(), 0)
    # the worst error on the test grid is at least the root mean squared error there
    assert scalars["max_abs_error"] >= math.sqrt(last["test_loss"]) - 1e-6
    assert len(table) == 801 and table["target"].max() == pytest.approx(1.0)


def test_a_grid_tuned_on_validation_loss_takes_the_lowest():
    study = {**GRID_STUDY, "experiment": {**GRID_STUDY["experiment"], "tune_on": "val_loss"}}
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_loss": val, "test_loss": test, "val_acc": math.nan,
             "test_acc": math.nan, "train_acc": math.nan, "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0,
             "status": "complete"}
            for label, val, test in (("sgd_lr0.01", 0.2, 0.9), ("sgd_lr0.1", 0.5, 0.01),
                                     ("adam_lr0.01", 0.7, 0.7), ("adam_lr0.1", 0.1, 0.1)) for seed in (0, 1)]
    runs, _, grid_md = resolve(pd.DataFrame(rows), study)
    chosen = runs.groupby("variant")["grid_run"].first().to_dict()
    assert chosen["sgd_tuned"] == "sgd_lr0.01" and chosen["adam_tuned"] == "adam_lr0.1"
    assert "lowest validation loss" in grid_md and "| sgd | 0.2 (0.9) | 0.5 (0.01) |" in grid_md


def test_a_grid_tuned_on_log10_validation_loss_is_not_swayed_by_one_stalled_seed():
    # sgd at 0.01: one seed fits to 1e-4, one stalls at 1.0 (mean loss 0.5, mean log10 -2);
    # sgd at 0.1: both at 0.1 (mean 0.1, log10 -1). The mean loss takes 0.1, the mean log10 loss 0.01.
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_loss": val, "test_loss": val, "val_acc": math.nan,
             "test_acc": math.nan, "train_acc": math.nan, "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0,
             "status": "complete"}
            for label, vals in (("sgd_lr0.01", (1e-4, 1.0)), ("sgd_lr0.1", (0.1, 0.1)),
                                ("adam_lr0.01", (0.5, 0.5)), ("adam_lr0.1", (0.2, 0.2))) for seed, val in enumerate(vals)]
    chosen = {}
    for tune_on in ("val_loss", "log10_val_loss"):
        study = {**GRID_STUDY, "experiment": {**GRID_STUDY["experiment"], "tune_on": tune_on}}
        runs, _, grid_md = resolve(pd.DataFrame(rows), study)
        chosen[tune_on] = runs.groupby("variant")["grid_run"].first().to_dict()["sgd_tuned"]
    assert chosen == {"val_loss": "sgd_lr0.1", "log10_val_loss": "sgd_lr0.01"}
    assert "lowest validation log10 loss" in grid_md and "| sgd | -2 (-2) | -1 (-1) |" in grid_md


def test_a_grid_point_where_a_seed_diverged_never_wins_on_its_survivors():
    # sgd at 0.1: one seed diverged (NaN loss), the other fit best of all; a mean over the survivor
    # would take it
    rows = [{"variant": label, "seed": seed, "epoch": 1, "val_loss": val, "test_loss": val, "val_acc": math.nan,
             "test_acc": math.nan, "train_acc": math.nan, "train_loss": 1.0, "seconds": 1.0, "epoch_seconds": 1.0,
             "status": "complete"}
            for label, vals in (("sgd_lr0.01", (0.1, 0.1)), ("sgd_lr0.1", (1e-4, math.nan)),
                                ("adam_lr0.01", (0.5, 0.5)), ("adam_lr0.1", (0.2, 0.2))) for seed, val in enumerate(vals)]
    for tune_on in ("val_loss", "log10_val_loss"):
        study = {**GRID_STUDY, "experiment": {**GRID_STUDY["experiment"], "tune_on": tune_on}}
        runs, _, grid_md = resolve(pd.DataFrame(rows), study)
        assert runs.groupby("variant")["grid_run"].first().to_dict()["sgd_tuned"] == "sgd_lr0.01"
        assert "| sgd | " in grid_md and "not finite (no finite score in 1 of 2 seeds)" in grid_md


def test_squared_error_goes_with_function_data_only():
    from experiments.config import check_run
    from experiments.errors import UserError

    mismatched = function_cfg()
    mismatched["data"]["dataset"] = "mnist"
    mismatched["data"]["train_size"] = 400
    with pytest.raises(UserError, match="squared_error"):
        check_run(mismatched)


def conv_net(kernels, channels):
    return build_model({"arch": "cnn", "kernels": kernels, "channels": channels, "pool": 2, "width": 16,
                        "activation": "relu", "init": "he", "conv_dropout": 0.0, "dropout": 0.0}, 784, 10)


def test_conv_geometry_reads_parameters_and_receptive_field_off_the_real_layers(tiny):
    c = 16
    _, five = PROBES["conv_geometry"].measure(conv_net([3, 5], [c, c]), tiny, {}, 0)
    table, two = PROBES["conv_geometry"].measure(conv_net([3, 3, 3], [c, c, c]), tiny, {}, 0)
    assert five["receptive_field"] == two["receptive_field"] == 7
    assert (five["block_parameters"], two["block_parameters"]) == (25 * c * c + c, 18 * c * c + 2 * c)
    assert list(table["receptive_field"]) == [3, 5, 7]


def test_block_at_256_counts_the_lectures_bottleneck_numbers(tiny):
    _, bottleneck = PROBES["block_at_256"].measure(conv_net([3, 1, 3, 1], [16, 4, 4, 16]), tiny, {}, 0)
    table, plain = PROBES["block_at_256"].measure(conv_net([3, 3, 3], [16, 16, 16]), tiny, {}, 0)
    assert (bottleneck["block_weights_at_256"], plain["block_weights_at_256"]) == (69_632, 1_179_648)
    assert len(table) == 5 and (table["seconds"] > 0).all()
    assert math.isfinite(plain["log10_block_seconds_at_256"])


def recurrent_run(**model):
    return {"model": {"arch": "rnn", "cell": "rnn", "depth": 1, "width": 16, "activation": "tanh", "init": "torch_default",
                      "recurrent_gain": 1.0,
                      **model},
            "data": {"dataset": "adding", "seq_len": 30, "train_size": 100, "val_size": 0, "test_size": 100},
            "train": {"loss": "squared_error"}}


def test_the_gradient_through_time_vanishes_for_a_tanh_rnn_and_is_kept_by_the_irnn():
    from experiments.probes import gradient_through_time

    run = recurrent_run()
    splits = make_splits(run["data"], torch.device("cpu"))
    torch.manual_seed(0)
    tanh_net = build_model(run["model"], *splits["train"].shape)
    table, scalars = gradient_through_time(tanh_net, splits, run, seed=0)
    assert scalars["log10_memory_gradient_initial"] < -3  # 30 steps back, more than three decades lost
    assert set(table["steps_back"]) == set(range(30)) and set(table["when"]) == {"initial", "trained"}
    assert set(table["sequences"]) == {100}  # all of a small training set, which the figure's title says
    irnn = recurrent_run(activation="relu", init="identity")
    _, kept = gradient_through_time(build_model(irnn["model"], 2, 1), splits, irnn, seed=0)
    assert abs(kept["log10_memory_gradient_initial"]) < 1  # the identity carries it back
    # the same tanh net with its recurrent weights x 4 (spectral radius about 2.3): the gradient grows instead
    exploding = recurrent_run(recurrent_gain=4.0)
    torch.manual_seed(0)
    grown = build_model(exploding["model"], *splits["train"].shape)
    assert torch.equal(grown.recurrent.weight, 4 * tanh_net.recurrent.weight)  # the gain scales the same draw
    _, scalars = gradient_through_time(grown, splits, exploding, seed=0)
    assert scalars["log10_memory_gradient_initial"] > 1


def test_the_recurrent_scale_line_passes_through_the_trained_net_and_restores_it():
    from experiments.probes import recurrent_scale

    run = recurrent_run()
    splits = make_splits(run["data"], torch.device("cpu"))
    torch.manual_seed(0)
    net = build_model(run["model"], *splits["train"].shape)
    before = net.recurrent.weight.clone()
    table, _ = recurrent_scale(net, splits, run, seed=0)
    assert torch.equal(net.recurrent.weight, before)
    x, y = splits["train"].x, splits["train"].y
    with torch.no_grad():
        at_one = (net(x).squeeze(-1) - y).square().mean().item()
    assert table.set_index("scale").loc[1.0, "train_loss"] == pytest.approx(at_one, rel=1e-5)
    assert table["scale"].min() == 0 and table["scale"].max() == 2 and set(table["sequences"]) == {100}


def test_a_recurrent_variants_family_is_its_name_before_the_sequence_length():
    from experiments.plots import family

    # the exploding tanh RNN gets its own line in the figures, not the default tanh RNN's
    assert [family(v) for v in ("lstm_100_tuned", "tanh_30", "tanh_gain4_100_tuned", "tanh_gain4+clip_30")] == \
        ["lstm", "tanh", "tanh_gain4", "tanh_gain4+clip"]


def test_the_readme_names_every_probe_and_figure():
    """An experiment file picks probes and figures by name: the README's lists of them must be whole."""
    from pathlib import Path

    from experiments.plots import FIGURES
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    probes = readme.split("- `experiment.probes`:", 1)[1].split("\n- ", 1)[0]
    figures = readme.split("- `experiment.figures`:", 1)[1].split("\n## ", 1)[0]
    assert [name for name in PROBES if f"`{name}`" not in probes] == []
    assert [name for name in {*FIGURES, *PROBES} if f"`{name}`" not in figures] == []


def test_a_decision_a_near_tie_of_the_tuning_would_change_is_named():
    """A tuned point ahead of the runner-up in at most half the seeds is one the validation split did
    not choose: the checks are judged again with the runner-up's runs, and a change is a caveat."""
    from experiments.analysis import judge_seeds

    study = {"experiment": {"variants": {"a": {}, "b": {}}, "grid": {"optimizer.lr": [0.01, 0.1]}, "lecture": {},
                            "verdict": {"metric": "test_acc", "checks": [{"better": "a", "worse": "b"}]}},
             "seeds": [0, 1, 2, 3, 4]}
    a_val = {"a_lr0.1": [0.95, 0.95, 0.80, 0.80, 0.80], "a_lr0.01": [0.80, 0.80, 0.81, 0.81, 0.81]}  # ahead in 2 of 5
    a_test = {"a_lr0.1": [0.90, 0.91, 0.92, 0.90, 0.91], "a_lr0.01": [0.50, 0.52, 0.48, 0.51, 0.49]}
    b_test = [0.50, 0.51, 0.49, 0.50, 0.50]

    def finals(a_val):
        rows = [{"variant": label, "seed": seed, "val_acc": a_val[label][seed], "test_acc": a_test[label][seed]}
                for label in a_val for seed in range(5)]
        rows += [{"variant": f"b_lr{lr}", "seed": seed, "val_acc": 0.5 + lr, "test_acc": b_test[seed]}
                 for lr in (0.01, 0.1) for seed in range(5)]
        return pd.DataFrame(rows).assign(status="complete", failed_to_learn=0.0, seconds=1.0, epoch_seconds=1.0,
                                         seconds_per_epoch=1.0, train_acc=1.0)

    _, verdict, _, _ = judge_seeds(finals(a_val), study)
    assert verdict["verdict"] == "reproduced"
    (note,) = verdict["near_ties"]
    assert note["key_changes"] == 1 and note["verdict"] == "inconclusive"
    assert note["text"].startswith("a_tuned took lr=0.1, ahead of lr=0.01 on validation in only 2 of 5 seeds; judged at "
                                   "lr=0.01, 'a_tuned beats b_tuned on test_acc' would be open (now holds), and the "
                                   "verdict would be inconclusive (now reproduced)")
    # a runner-up that lacks a seed the tuned point ran is not judged in its place
    short = finals(a_val)
    _, verdict, _, _ = judge_seeds(short[~((short["variant"] == "a_lr0.01") & (short["seed"] == 4))], study)
    assert verdict["verdict"] == "reproduced" and verdict["near_ties"] == []
    # ahead in 3 of 5 seeds: a majority, so validation did choose it
    _, verdict, _, _ = judge_seeds(finals({**a_val, "a_lr0.01": [0.80, 0.80, 0.81, 0.81, 0.79]}), study)
    assert verdict["near_ties"] == []
