import math
import sys

import pandas as pd
import pytest
import torch

from experiments.data import make_splits
from experiments.metrics import needs_step_sizes
from experiments.runner import Member, training_groups
from experiments.train import mse_on_softmax, train_run, train_seeds
from helpers import runs_of


def run_cfg(mnist_root, **train):
    return {
        "model": {"arch": "mlp", "depth": 2, "width": 64, "activation": "relu", "init": "glorot_uniform", "dropout": 0.0, "residual": False, "pieces": 2, "batch_norm": False},
        "data": {"dataset": "mnist", "teeth": 16, "root": mnist_root, "train_size": 600, "val_size": 200, "test_size": 10000, "download": False},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant"},
        "train": {"loss": "cross_entropy", "batch_size": 50, "epochs": 2, "eval_batch_size": 10000, "eval_every": 1, "max_updates": None, "rotate_degrees": 0.0, "shift_pixels": 0.0, "clip_grad_norm": None, "cuda_graph": False, **train},
    }


@pytest.fixture(scope="module")
def splits(mnist_root):
    return make_splits({"dataset": "mnist", "root": mnist_root, "train_size": 600, "val_size": 200, "test_size": 10000, "download": False}, torch.device("cpu"))


def without_timing(rows):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def test_same_seed_gives_identical_metrics_on_cpu(mnist_root, splits):
    first = train_run(run_cfg(mnist_root), splits, seed=3)
    second = train_run(run_cfg(mnist_root), splits, seed=3)
    other = train_run(run_cfg(mnist_root), splits, seed=4)
    assert without_timing(first.rows) == without_timing(second.rows)
    assert without_timing(first.rows) != without_timing(other.rows)


def test_rows_cover_init_and_every_epoch_with_all_metrics(mnist_root, splits):
    result = train_run(run_cfg(mnist_root, epochs=3), splits, seed=0)
    assert result.status == "complete"
    assert [row["epoch"] for row in result.rows] == [0, 1, 2, 3]
    expected = {"updates", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_seconds",
                "seconds", "grad_norm_1", "grad_norm_2", "grad_norm_3", "train_eval_loss", "train_eval_acc"}
    assert set(result.rows[-1]) == expected | {"epoch"}
    # the trained model on its training images, in eval mode: once, at the end
    assert all(math.isnan(row["train_eval_acc"]) for row in result.rows[:-1]) and 0 < result.rows[-1]["train_eval_acc"] <= 1


def test_the_step_size_is_recorded_only_where_an_experiment_uses_it(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=1)
    assert "effective_lr" not in train_run(cfg, splits, seed=0).rows[-1]
    with_rates = train_run(cfg, splits, seed=0, step_sizes=True).rows
    assert [row["effective_lr"] for row in with_rates] == pytest.approx([0.1, 0.1])
    # the optimizers study draws and checks it; relu_vs_sigmoid neither
    assert needs_step_sizes(runs_of("name=optimizers")["adagrad_lr0.01"]["experiment"])
    assert not needs_step_sizes(runs_of("name=relu_vs_sigmoid")["relu"]["experiment"])


def test_training_accuracy_of_the_trained_model_has_dropout_off(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=3)
    cfg["model"] = {**cfg["model"], "dropout": 0.5}
    last = train_run(cfg, splits, seed=0).rows[-1]
    # with dropout on, the running figure is measured on thinned nets; the trained net does better
    assert last["train_eval_acc"] > last["train_acc"]


def test_training_learns_mnist(mnist_root, splits):
    result = train_run(run_cfg(mnist_root, epochs=5), splits, seed=0)
    assert result.rows[0]["test_acc"] < 0.3
    assert result.rows[-1]["test_acc"] > 0.75
    assert result.rows[-1]["train_loss"] < result.rows[1]["train_loss"]


def test_deep_sigmoid_gradients_vanish_towards_the_input(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=1)
    cfg["model"].update(depth=9, activation="sigmoid", width=100)
    sigmoid = train_run(cfg, splits, seed=0).rows[0]
    cfg["model"]["activation"] = "relu"
    relu = train_run(cfg, splits, seed=0).rows[0]
    assert sigmoid["grad_norm_1"] / sigmoid["grad_norm_10"] < 1e-3
    assert relu["grad_norm_1"] / relu["grad_norm_10"] > 1e-1


def test_diverging_run_is_recorded_not_raised(mnist_root, splits):
    result = train_run(run_cfg(mnist_root, epochs=5) | {"optimizer": {"name": "sgd", "lr": 1e12, "momentum": 0.0,
                                                                     "nesterov": False, "weight_decay": 0.0, "schedule": "constant"}},
                       splits, seed=0)
    assert result.status == "diverged"
    assert result.diverged_epoch == len(result.rows) - 1 >= 1
    assert not math.isfinite(result.rows[-1]["train_loss"])


def test_mse_loss_is_squared_error_of_softmax_against_one_hot():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    targets = torch.tensor([0, 1])
    probs = logits.softmax(1)
    one_hot = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    full = torch.zeros(2, 10)
    full[:, :2] = logits
    full[:, 2:] = -1e9  # other classes get zero probability
    assert torch.isclose(mse_on_softmax(full[None], targets[None]), ((probs - one_hot) ** 2).sum() / 20)


@pytest.mark.parametrize("model", [
    {"depth": 3, "activation": "sigmoid"},
    {"arch": "resmlp", "depth": 5, "activation": "relu"},  # batch norm: running statistics per seed
])
def test_vectorised_seeds_give_the_numbers_of_the_plain_per_seed_path(mnist_root, splits, model):
    cfg = run_cfg(mnist_root, epochs=2)
    cfg["model"].update(model)
    cfg["optimizer"].update(name="adam", lr=0.001)  # optimizer state per seed too
    seeds = [0, 1, 2]
    stacked = train_seeds(cfg, splits, seeds, vectorise=True)
    for seed, vectorised in zip(seeds, stacked):
        plain = train_run(cfg, splits, seed)
        for row_plain, row_vec in zip(plain.rows, vectorised.rows, strict=True):
            for key in row_plain:
                # batched and single matmuls round differently; a deep batch-norm net's evaluation
                # turns that into a few flipped near-ties among 10k test images
                tolerance = {"abs": 2e-3} if key.endswith("_acc") else {"rel": 1e-3, "abs": 1e-5}
                if "seconds" not in key:
                    assert row_vec[key] == pytest.approx(row_plain[key], nan_ok=True, **tolerance), (seed, key)
        # the trained weights come back into each seed's own module (Adam turns float drift on
        # near-zero gradients into steps of either sign, so compare on average, not element-wise)
        for p_plain, p_vec in zip(plain.model.parameters(), vectorised.model.parameters()):
            assert (p_plain - p_vec).abs().mean() < 1e-3 * p_plain.abs().mean() + 1e-6


def assert_same_rows(plain, vectorised, label):
    for row_plain, row_vec in zip(plain.rows, vectorised.rows, strict=True):
        for key in row_plain:
            # batched and single matmuls round differently
            tolerance = {"abs": 2e-3} if key.endswith("_acc") else {"rel": 1e-3, "abs": 1e-5}
            if "seconds" not in key:
                assert row_vec[key] == pytest.approx(row_plain[key], nan_ok=True, **tolerance), (label, key)


@pytest.mark.parametrize("optimizer,lrs", [
    ({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3, "schedule": "cosine"}, [0.03, 0.1]),
    ({"name": "adam"}, [0.001, 0.01]),
    ({"name": "adamw", "weight_decay": 0.1}, [0.001, 0.01]),
    ({"name": "rmsprop", "momentum": 0.5}, [0.0003, 0.001]),
    ({"name": "adagrad"}, [0.01, 0.03]),
    ({"name": "adadelta"}, [1.0, 3.0]),  # rates above 1 too
])
def test_a_vectorised_rate_grid_gives_the_numbers_of_plain_runs_at_each_rate(mnist_root, splits, optimizer, lrs):
    cfg = run_cfg(mnist_root, epochs=2)
    cfg["optimizer"].update(optimizer)
    seeds, lrs = [0, 0, 1], [lrs[0], lrs[1], lrs[1]]  # a seed at two rates, a rate with two seeds
    stacked = train_seeds(cfg, splits, seeds, vectorise=True, step_sizes=True, lrs=lrs)
    for seed, lr, vectorised in zip(seeds, lrs, stacked):
        plain = train_run({**cfg, "optimizer": {**cfg["optimizer"], "lr": lr}}, splits, seed, step_sizes=True)
        assert_same_rows(plain, vectorised, (seed, lr))


def test_a_model_diverging_in_a_vectorised_grid_leaves_the_others_as_they_were_alone(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=4, eval_every=2)
    stacked = train_seeds(cfg, splits, [0, 0], vectorise=True, lrs=[0.1, 1e6])
    assert stacked[1].status == "diverged" and stacked[0].status == "complete"
    plain = train_run(cfg, splits, 0)  # lr 0.1: evaluated every 2nd epoch only, like its diverged neighbour's group
    assert math.isnan(plain.rows[3]["test_acc"])
    assert_same_rows(plain, stacked[0], "lr 0.1")


def test_cosine_schedule_decays_the_rate_to_zero(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=2)
    cfg["optimizer"]["schedule"] = "cosine"
    rates = [row["effective_lr"] for row in train_run(cfg, splits, seed=0, step_sizes=True).rows]
    assert rates == pytest.approx([0.1, 0.05, 0.0], abs=1e-9)


def test_an_update_cap_cuts_the_last_epoch_short_and_counts_updates(mnist_root, splits):
    full = train_run(run_cfg(mnist_root, epochs=3), splits, seed=0)  # 12 updates an epoch
    capped = train_run(run_cfg(mnist_root, epochs=3, max_updates=17), splits, seed=0)
    assert [row["updates"] for row in full.rows] == [0, 12, 24, 36]
    assert [row["updates"] for row in capped.rows] == [0, 12, 17]  # stops in epoch 2, after 5 of its 12
    assert without_timing(capped.rows[:2]) == without_timing(full.rows[:2])
    assert capped.rows[-1]["test_acc"] != full.rows[2]["test_acc"]  # the short epoch is evaluated, not skipped
    assert capped.rows[-1]["train_loss"] != full.rows[2]["train_loss"]


def test_cosine_schedule_ends_where_the_update_cap_ends_training(mnist_root, splits):
    cfg = run_cfg(mnist_root, epochs=10, max_updates=24)
    cfg["optimizer"]["schedule"] = "cosine"
    assert [row["effective_lr"] for row in train_run(cfg, splits, seed=0, step_sizes=True).rows] == pytest.approx([0.1, 0.05, 0.0], abs=1e-9)


def test_the_schema_names_exactly_the_optimizers_the_loop_builds():
    from experiments.config import OptimizerName
    from experiments.config import OPTIMIZER_SETTINGS

    assert {name.value for name in OptimizerName} == set(OPTIMIZER_SETTINGS)


def test_augmentation_moves_each_image_by_its_own_draw_and_nothing_at_zero(splits):
    from experiments.augment import augment

    x = splits["train"].x[:4].expand(2, 4, 784).clone()  # two seeds, four images
    unchanged = augment(x, [torch.Generator().manual_seed(s) for s in (0, 1)], 0.0, 0.0)
    assert torch.allclose(unchanged, x, atol=1e-5)
    same_image = splits["train"].x[:1].expand(1, 3, 784)  # one image three times: three different results
    moved = augment(same_image, [torch.Generator().manual_seed(0)], 15.0, 2.0)
    assert not torch.allclose(moved[0, 0], moved[0, 1]) and not torch.allclose(moved[0, 1], moved[0, 2])
    # a digit rotated by at most 15 degrees and shifted by at most 2 pixels keeps most of its ink
    assert torch.allclose(moved.sum(-1), same_image.sum(-1), rtol=0.1)
    # the draws follow the generator: the same seed, the same batch
    again = augment(same_image, [torch.Generator().manual_seed(0)], 15.0, 2.0)
    assert torch.equal(moved, again)


def test_augmented_training_is_seeded_and_the_same_plain_or_vectorised(mnist_root, splits):
    cfg = run_cfg(mnist_root, rotate_degrees=15.0, shift_pixels=2.0)
    plain = [without_timing(train_run(cfg, splits, seed).rows) for seed in (0, 1)]
    stacked = [without_timing(r.rows) for r in train_seeds(cfg, splits, [0, 1], vectorise=True)]
    for a, b in zip(plain, stacked):
        assert [row["train_loss"] for row in a] == pytest.approx([row["train_loss"] for row in b], rel=1e-4)
    assert plain[0] != without_timing(train_run(run_cfg(mnist_root), splits, 0).rows)


def test_augmentation_leaves_the_seeds_data_order_alone(mnist_root, splits, monkeypatch):
    import experiments.train as train_module

    orders = {}
    real_randperm = torch.randperm

    def recording(n, generator=None, **kwargs):
        order = real_randperm(n, generator=generator, **kwargs)
        orders.setdefault(key, []).append(order)
        return order

    monkeypatch.setattr(train_module.torch, "randperm", recording)
    for key, cfg in (("plain", run_cfg(mnist_root)), ("augmented", run_cfg(mnist_root, rotate_degrees=15.0))):
        train_run(cfg, splits, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(orders["plain"], orders["augmented"]))


def adding_cfg(**train):
    return {
        "model": {"arch": "rnn", "cell": "rnn", "depth": 1, "width": 16, "activation": "tanh", "init": "torch_default",
                  "recurrent_gain": 1.0},
        "data": {"dataset": "adding", "seq_len": 12, "train_size": 200, "val_size": 100, "test_size": 100},
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant"},
        "train": {"loss": "squared_error", "batch_size": 50, "epochs": 2, "eval_batch_size": 10000, "eval_every": 1,
                  "max_updates": None, "rotate_degrees": 0.0, "shift_pixels": 0.0, "clip_grad_norm": None, "cuda_graph": False, **train},
    }


def test_clipping_bounds_each_seeds_whole_gradient_plain_or_vectorised():
    splits = make_splits(adding_cfg()["data"], torch.device("cpu"))
    plain = [without_timing(train_run(adding_cfg(clip_grad_norm=0.01), splits, seed).rows) for seed in (0, 1)]
    stacked = [without_timing(r.rows) for r in train_seeds(adding_cfg(clip_grad_norm=0.01), splits, [0, 1], vectorise=True)]
    for a, b in zip(plain, stacked):
        assert [row["train_loss"] for row in a] == pytest.approx([row["train_loss"] for row in b], rel=1e-4)
    # a tiny clip norm keeps the first updates tiny: the training loss moves less than unclipped
    unclipped = without_timing(train_run(adding_cfg(), splits, 0).rows)
    moved = lambda rows: abs(rows[1]["train_loss"] - rows[0]["train_loss"])  # noqa: E731
    assert moved(plain[0]) < moved(unclipped)


def test_the_share_of_clipped_updates_is_counted_plain_or_vectorised():
    # a clip the gradient never reaches changes nothing: the share of updates it cut tells
    splits = make_splits(adding_cfg()["data"], torch.device("cpu"))
    for clip, lr, share in ((1e-6, 0.5, 1.0), (1e3, 0.01, 0.0)):  # (at rate 0.5 the unclipped net explodes)
        cfg = adding_cfg(clip_grad_norm=clip)
        cfg["optimizer"]["lr"] = lr
        plain = [train_run(cfg, splits, seed).rows for seed in (0, 1)]
        stacked = [r.rows for r in train_seeds(cfg, splits, [0, 1], vectorise=True)]
        for rows in (*plain, *stacked):
            assert math.isnan(rows[0]["clipped_share"]) and [row["clipped_share"] for row in rows[1:]] == [share, share]
    # a clip the norm never reaches: every other number as without one (the rows' offsets hold)
    unclipped = adding_cfg()
    unclipped["optimizer"]["lr"] = 0.01
    without = without_timing(train_run(unclipped, splits, 0).rows)
    never = [{k: v for k, v in row.items() if k != "clipped_share"} for row in without_timing(plain[0])]
    assert "clipped_share" not in without[1] and pd.DataFrame(never).equals(pd.DataFrame(without))  # NaN == NaN
    # in between, each seed's own steps: the two paths count the same ones
    middle = [train_run(adding_cfg(clip_grad_norm=0.3), splits, seed).rows for seed in (0, 1)]
    stacked = [r.rows for r in train_seeds(adding_cfg(clip_grad_norm=0.3), splits, [0, 1], vectorise=True)]
    shares = [[row["clipped_share"] for row in rows[1:]] for rows in middle]
    assert shares == [[row["clipped_share"] for row in rows[1:]] for rows in stacked]
    assert any(0 < share < 1 for seed in shares for share in seed)  # not only the extremes again


def test_a_vectorised_group_is_every_seed_and_rate_of_a_variant(mnist_root):
    def run(lr, width=64, vectorise=None):
        cfg = run_cfg(mnist_root, vectorise=vectorise)
        cfg["model"]["width"], cfg["optimizer"]["lr"] = width, lr
        return cfg

    members = [Member(f"{name}_lr{lr}", run(lr, width), seed)
               for name, width in (("narrow", 16), ("wide", 64)) for lr in (0.03, 0.1) for seed in (0, 1)]
    on_cuda = training_groups(members, torch.device("cuda"))
    assert [(len(group), vectorised) for group, vectorised in on_cuda] == [(4, True), (4, True)]
    assert {m.label for m in on_cuda[0][0]} == {"narrow_lr0.03", "narrow_lr0.1"}
    assert [(len(group), vectorised) for group, vectorised in training_groups(members, torch.device("cpu"))] == [(1, False)] * 8
    # train.vectorise=true asks for it on any device; a lone run is plain on CUDA too
    asked = [Member("a", run(0.1, vectorise=True), 0), Member("a", run(0.3, vectorise=True), 1)]
    assert [(len(g), v) for g, v in training_groups(asked, torch.device("cpu"))] == [(2, True)]
    assert training_groups(members[:1], torch.device("cuda")) == [(members[:1], False)]


@pytest.mark.parametrize("vectorise,lrs,eval_every,clip", [(False, None, 1, None), (True, [0.1, 0.03], 1, 1.0),
                                                         (False, None, 2, 1.0)])
def test_one_host_read_per_epoch(mnist_root, splits, monkeypatch, vectorise, lrs, eval_every, clip):
    """Every number an epoch's rows need is gathered on the device and read once: on a GPU each
    read waits for the device to finish, so a read per metric would stall it several times an epoch.
    Counted: the suite's own reads."""
    reads = []
    for name in ("tolist", "item", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            if sys._getframe(1).f_globals.get("__name__", "").startswith(("experiments", "models")):
                reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    # eval_every 2: epoch 1 is not evaluated; a clip's count of clipped updates is read with the rest
    cfg = run_cfg(mnist_root, epochs=3, eval_every=eval_every, clip_grad_norm=clip)
    cfg["optimizer"]["name"] = "adagrad"  # its step sizes are read too (step_sizes)
    train_seeds(cfg, splits, [0, 0] if vectorise else [0], vectorise=vectorise, step_sizes=True, lrs=lrs)
    assert reads == ["tolist"] * (3 + 1)  # epochs 1-3 and the untrained nets (epoch 0)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="the capture itself needs a GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("name,optimizer,train,model,vectorise,lrs", [
    ("sgd_clipped", {}, {"clip_grad_norm": 1.0}, {}, False, None),
    # a short last batch (600 = 8 x 70 + 40), run eagerly between captured steps; a cosine schedule
    ("momentum_cosine_short_batch", {"momentum": 0.9, "schedule": "cosine"}, {"batch_size": 70}, {}, False, None),
    # a grid of rates as one stack, Adam's bias correction, an update cap, dropout (on the CPU), clipping
    ("adam_grid", {"name": "adam"}, {"max_updates": 20, "clip_grad_norm": 1.0}, {"dropout": 0.2}, True, [0.01, 0.001]),
])
def test_the_captured_step_path_gives_the_loops_numbers(mnist_root, device, name, optimizer, train, model, vectorise, lrs):
    """train.cuda_graph's path (StaticStep, a capturable optimizer, running sums kept across
    epochs, every step's norms measured and every 10th added) against the plain loop, epoch by
    epoch. On a CPU it runs eagerly: the bookkeeping. On a GPU the step is captured and replayed
    (without dropout there: a captured mask is drawn differently, the same only in distribution)."""
    splits = make_splits(run_cfg(mnist_root)["data"], torch.device(device))
    if device == "cuda":
        model = {**model, "dropout": 0.0}

    def rows(cuda_graph):
        cfg = run_cfg(mnist_root, epochs=3, cuda_graph=cuda_graph, **train)
        cfg["optimizer"].update(optimizer)
        cfg["model"].update(model)
        seeds = [0, 1] if vectorise else [0]
        return [without_timing(r.rows) for r in train_seeds(cfg, splits, seeds, vectorise, lrs=lrs, step_sizes=True)]

    for plain, static in zip(rows(False), rows(True)):
        assert [row.keys() for row in plain] == [row.keys() for row in static]
        for plain_row, static_row in zip(plain, static):
            for key, value in plain_row.items():
                assert static_row[key] == pytest.approx(value, rel=1e-4 if device == "cuda" else 1e-5,
                                                        abs=1e-6 if device == "cuda" else 1e-7,
                                                        nan_ok=True), (name, key, plain_row["epoch"])


def test_a_cuda_graph_is_refused_without_cuda_or_with_augmentation(exit_message):
    if not torch.cuda.is_available():
        assert "train.cuda_graph=true captures training steps in CUDA graphs: it needs device=cuda" in exit_message(
            "name=relu_vs_sigmoid", "train.cuda_graph=true")
    # device=auto: on a CPU it is the augmentation that is refused first (device=cpu is refused before
    # anything else is checked)
    assert "train.cuda_graph cannot capture augmentation" in exit_message("name=augmentation", "train.cuda_graph=true")
