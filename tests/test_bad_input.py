"""Bad input ends in one clear line and a non-zero exit status, and leaves nothing counted."""

import errno
import json
import re
import shutil
import sys

import pandas as pd
import pytest
import torch

from experiments import __main__ as entry
from experiments import config
from experiments import store
from experiments.data import make_splits
from experiments.errors import UserError
from experiments.runner import Member, Where, train_group




@pytest.mark.parametrize("override,expected", [
    ("optimizer.lr=-0.1", "optimizer.lr must be a finite number > 0"),
    ("optimizer.nesterov=true", "optimizer.nesterov=true needs optimizer.momentum > 0"),
    ("model.depth=0", "model.depth must be in 1..1000"),
    ("model.depth=99999999", "model.depth must be in 1..1000"),
    ("model.width=10000000", "model.width must be in 1..65536"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1)"),
    ("train.batch_size=20000", "train.batch_size must be in 1..data.train_size=10000"),
    ("data.train_size=70000", "data.train_size must be in 1..60000"),
    ("data.test_size=0", "data.test_size must be in 1..10000"),
    ("device=tpu", "device"),
    ("optimizer.name=adamm", "Invalid value 'adamm', expected one of [sgd, adam"),
    ("optimizer.schedule=step", "Invalid value 'step', expected one of [constant, cosine]"),
    ("seeds=[]", "seeds is empty"),
    ("only=[tanh]", "only= names unknown variants"),
    ("experiment.title=../../../../elsewhere", "may not contain '/'"),
    ("model.widht=3", "widht"),
    ("model.arch=rescnn", "model.depth of a rescnn must be 6n + 2 >= 8"),
    ("model.arch=transformer", "unknown model.arch 'transformer'"),
    ("model.conv_dropout=1.5", "model.conv_dropout must be in [0, 1)"),
    ("train.rotate_degrees=-5", "train.rotate_degrees must be in [0, 180]"),
    ("train.loss=squared_error", "train.loss squared_error goes with a regression"),
    ("model.arch=rnn", "model.arch rnn and data.dataset adding go together"),
    ("model.init=identity", "model.init identity is not for this net"),
    ("train.clip_grad_norm=0", "train.clip_grad_norm must be a finite number > 0"),
    ("model.recurrent_gain=2", "model.recurrent_gain scales a recurrent net's recurrent weights: it needs model.arch rnn"),
    ("data.teeth=0", "data.teeth must be >= 1"),
    ("experiment.grid={optimizer.lr:[0.1]}", "to tune optimizer.lr, add it to the file's experiment.grid"),
])
def test_bad_value_is_one_line(override, expected, exit_message):
    assert expected in exit_message("name=relu_vs_sigmoid", override)


@pytest.mark.parametrize("args", [["name=nope"], ["name=relu_vs_sigmoid", "model.widht=3"],
                                  ["name=relu_vs_sigmoid", "train.epochs=abc"], ["--config-dir=x"],
                                  ["name=relu_vs_sigmoid", "name=depth_sigmoid"],
                                  ["name=relu_vs_sigmoid", "train.cuda_graph=true", "device=cpu"]])
def test_a_command_that_does_not_compose_fails_before_torch_is_imported(args):
    """torch's import is most of a command's start-up (about 2 s on 2 cores): a typo need not wait for it."""
    import subprocess

    code = ("import sys; from experiments.__main__ import precheck\n"
            "try: precheck(sys.argv[1:])\n"
            "except Exception as exc: print(type(exc).__name__, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["UserError", "False"], done.stdout + done.stderr


@pytest.mark.parametrize("args,expected", [
    (["name=relu_vs_sigmoid", "name=depth_sigmoid"], "name is given 2 times (name=relu_vs_sigmoid, name=depth_sigmoid)"),
    (["name=relu_vs_sigmoid", "optimizer.lr=0.1", "optimizer.lr=0.3"], "optimizer.lr is given 2 times"),
    (["name=relu_vs_sigmoid", "train.cuda_graph=yes"], "write train.cuda_graph=true or train.cuda_graph=false"),
    (["name=relu_vs_sigmoid", "model.batch_norm=1"], "write model.batch_norm=true or"),
    (["name=relu_vs_sigmoid", "train.cuda_graph=true", "device=cpu"], "it needs device=cuda"),
    (["name=relu_vs_sigmoid", "--cfg", "job", "--package", "nope"], "--cfg job prints no such part"),
    (["name=relu_vs_sigmoid", "--cfg", "job", "--package=hydra.job"], "--cfg job prints no such part"),
    (["name=relu_vs_sigmoid", "--cfg", "hydra", "-p", "model"], "--cfg hydra prints no such part"),
])
def test_a_command_line_hydra_would_misread_is_one_line(args, expected, exit_message):
    """Hydra keeps the last of two values silently, names a folder after `yes` as well as `true`, and
    prints a missing --package without a line end."""
    assert expected in exit_message(*args)


@pytest.mark.parametrize("package", ["model", "_global_", "optimizer.lr"])
def test_a_package_that_exists_is_accepted(package):
    assert "--package" in entry.precheck(["name=relu_vs_sigmoid", "--cfg", "job", "--package", package])


def test_a_slurm_sweep_without_slurm_is_one_line(monkeypatch, exit_message):
    monkeypatch.setattr(entry.shutil, "which", lambda command: None)
    assert "this machine has no srun" in exit_message("-m", "hydra/launcher=slurm", "name=relu_vs_sigmoid")
    assert "this machine has no srun" in exit_message("-m", "hydra/launcher='slurm'", "name=relu_vs_sigmoid")
    assert "hydra/launcher=submitit_slurm submits SLURM jobs, but this machine has no srun" \
        in exit_message("-m", "hydra/launcher=submitit_slurm", "name=relu_vs_sigmoid")  # the launcher the user named


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_a_slurm_sweep_for_gpu_nodes_passes_on_a_login_node_without_one(launcher, monkeypatch, tmp_path, mnist_root):
    """The jobs run on the cluster's nodes, so the node that submits them needs no CUDA."""
    monkeypatch.setenv("MNIST_ROOT", mnist_root)
    monkeypatch.setattr(entry.shutil, "which", lambda command: "/usr/bin/srun")
    args = ["-m", f"hydra/launcher={launcher}", "device=cuda", "train.cuda_graph=true", "name=relu_vs_sigmoid",
            "seeds=[0],[1]", f"results_dir={tmp_path / 'results'}"]
    assert "device=cuda" in entry.precheck(args)


def test_experiment_file_without_its_package_line_says_so(monkeypatch, tmp_path, exit_message):
    configs = tmp_path / "configs"
    shutil.copytree(config.CONFIG_DIR, configs)
    (configs / "name" / "headless.yaml").write_text("model:\n  depth: 2\nexperiment:\n  title: t\n")
    monkeypatch.setattr(config, "CONFIG_DIR", configs)
    monkeypatch.setattr(entry, "CONFIG_DIR", configs)
    message = exit_message("name=headless")
    assert "Key 'name' not in 'Config'" in message and "'# @package _global_'" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(exit_message):
    assert "no CUDA device" in exit_message("name=relu_vs_sigmoid", "device=cuda")


def test_results_folder_not_writable(monkeypatch, tmp_path, mnist_root):
    monkeypatch.setenv("MNIST_ROOT", mnist_root)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(sys, "argv", ["experiments", "name=relu_vs_sigmoid", f"results_dir={blocker}/results"])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert "is not writable" in str(exited.value.code)


def test_missing_mnist_offline_through_the_cli(run_cli, tmp_path):
    empty = tmp_path / "no_mnist"
    done = run_cli("name=relu_vs_sigmoid", f"data.root={empty}", "data.download=false")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"{empty}/MNIST/raw" in done.stderr


def test_disk_full_while_writing_leaves_no_run(monkeypatch, tmp_path, mnist_root):
    cfg = {"model": {"arch": "mlp", "depth": 1, "width": 8, "activation": "relu", "init": "he", "dropout": 0.0, "residual": False, "pieces": 2, "batch_norm": False},
           "data": {"dataset": "mnist", "teeth": 16, "root": mnist_root, "train_size": 100, "val_size": 0, "test_size": 10000, "download": False},
           "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "constant"},
           "train": {"loss": "cross_entropy", "batch_size": 50, "epochs": 1, "eval_batch_size": 10000, "eval_every": 1, "max_updates": None, "rotate_degrees": 0.0, "shift_pixels": 0.0, "clip_grad_norm": None, "cuda_graph": False}}
    splits = make_splits(cfg["data"], torch.device("cpu"))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    path = store.run_dir(tmp_path, "relu", 0)
    with pytest.raises(UserError, match="No space left on device"):
        train_group(Where(tmp_path, "toy", "commit", torch.device("cpu"), [], False), [Member("relu", cfg, 0)], splits, False)
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_diverging_variant_is_recorded_and_the_sweep_goes_on(run_in_process, tmp_path):
    done = run_in_process("name=relu_vs_sigmoid", "data.train_size=200", "model.width=16", "train.epochs=3",
                          "seeds=[0,1]", "optimizer.lr=1e6")
    assert done.returncode == 0, done.stderr
    assert "diverged (non-finite loss) at epoch" in done.stdout
    study = next((tmp_path / "results" / "relu_vs_sigmoid" / "lecture").iterdir())
    metas = [json.loads(p.read_text()) for p in study.glob("runs/*/seed*/meta.json")]
    assert len(metas) == 4 and any(m["status"] == "diverged" for m in metas)
    summary = pd.read_csv(study / "summary.csv")
    assert summary["n"].tolist() == [2, 2] and summary["n_diverged"].sum() >= 1


def test_an_image_net_on_function_data_is_one_line_before_any_training(exit_message):
    message = exit_message("name=universality", "model.arch=cnn")
    assert "model.arch cnn reads images: it needs data.dataset mnist" in message


def test_a_recurrent_study_rejects_a_bad_cell_or_length(exit_message):
    # (each variant sets its own length, so a bad one comes in through a variant)
    assert "data.seq_len must be in 2..10000" in exit_message("name=rnn_long_memory", "experiment.variants.tanh_10={data:{seq_len:1}}")
    assert "model.init identity (the IRNN) is for model.cell rnn" in exit_message("name=rnn_long_memory", "model.cell=lstm",
                                                                                  "only=[irnn_10]")


def test_a_regression_tuned_on_accuracy_is_one_line(exit_message):
    assert "set experiment.tune_on=val_loss" in exit_message("name=universality", "experiment.tune_on=val_acc")


def test_an_empty_grid_is_one_line(exit_message):
    assert "experiment.grid gives no values for optimizer.lr" in exit_message("name=dropout", "experiment.grid={optimizer.lr:[]}")
    # Hydra merges a map into the file's: {} would leave the grid whole and only name the folder
    assert "would change no run" in exit_message("name=dropout", "experiment.grid={}")


@pytest.mark.parametrize("override,expected", [
    ("model.conv_dropout=1.5", "error: model.conv_dropout must be in [0, 1) (got 1.5)"),
    ("model.pool=0", "error: model.pool must be >= 1 (1: no pooling; got 0)"),
])
def test_a_bad_cnn_setting_names_itself_and_nothing_else(exit_message, override, expected):
    assert exit_message("name=cnn_vs_mlp", override).strip().endswith(expected.removeprefix("error: "))
    assert exit_message("name=cnn_vs_mlp", override).count("must be") == 1


def test_a_classification_claim_on_regression_data_is_one_line(exit_message):
    message = exit_message("name=relu_vs_sigmoid", "data.dataset=smooth", "train.loss=squared_error")
    assert "judges test_acc, which a regression (data.dataset smooth) does not have" in message


@pytest.mark.parametrize("override,expected", [
    ("data.seq_len=0", "every variant of rnn_long_memory sets its own data.seq_len (10, 30, 100)"),
    ("model.depth=5", "no net, data or optimizer of rnn_long_memory reads model.depth"),
    ("model.dropout=0.5", "no net, data or optimizer of rnn_long_memory reads model.dropout"),
    ("optimizer.momentum=0.9", "no net, data or optimizer of rnn_long_memory reads optimizer.momentum"),
    ("optimizer.lr=0.1", "rnn_long_memory tunes optimizer.lr on its grid"),
])
def test_a_setting_that_would_change_no_run_is_refused(exit_message, override, expected):
    assert expected in exit_message("name=rnn_long_memory", override)


def test_an_error_of_a_variant_names_it_even_when_only_picks_others(exit_message):
    message = exit_message("name=rnn_long_memory", "only=[lstm_10]", "model.cell=gru")
    assert re.search(r"variant 'irnn_10_lr[0-9.]+' of rnn_long_memory: model.init identity", message)


def test_function_data_need_no_mnist_files():
    entry.precheck(["name=universality", "data.root=/nonexistent/datasets", "data.download=false"])
    with pytest.raises(UserError, match="MNIST files missing"):
        entry.precheck(["name=relu_vs_sigmoid", "data.root=/nonexistent/datasets", "data.download=false"])
