"""Sweeps through Hydra's launchers, and resuming after a killed run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from experiments import store

TINY = ["name=relu_vs_sigmoid", "data.train_size=300", "model.width=16", "train.epochs=1", "seeds=[0,1]"]


def studies(results):
    return sorted((results / "relu_vs_sigmoid" / "lecture").iterdir())


def test_joblib_sweep_with_two_workers_shares_one_study(run_cli, tmp_path):
    # the two jobs train different variants into the same study; the table must hold both
    done = run_cli("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "only=[relu],[sigmoid]", *TINY)
    assert done.returncode == 0, done.stderr
    (study,) = studies(tmp_path / "results")
    summary = pd.read_csv(study / "summary.csv")
    assert summary["variant"].tolist() == ["sigmoid", "relu"] and summary["n"].tolist() == [2, 2]
    assert len(list(study.glob("runs/*/seed*/meta.json"))) == 4


def test_submitit_local_executor(run_cli, tmp_path):
    done = run_cli("-m", "hydra/launcher=submitit_local", "only=[relu]", "model.depth=2,3", *TINY)
    assert done.returncode == 0, done.stderr
    found = studies(tmp_path / "results")
    assert [("model.depth=2" in s.name, "model.depth=3" in s.name) for s in found] == [(True, False), (False, True)]
    for study in found:
        assert pd.read_csv(study / "summary.csv").set_index("variant").loc["relu", "n"] == 2


def table(results) -> pd.DataFrame:
    (study,) = studies(results)
    summary = pd.read_csv(study / "summary.csv")
    return summary.drop(columns=["seconds_per_run", "seconds_per_epoch"])  # timings differ run to run


def start(mnist_root, results, args):
    env = dict(os.environ, MNIST_ROOT=mnist_root)
    # Ctrl-C reaches the command even when the tests run as a background job, which inherits an
    # ignored SIGINT (Python then never raises KeyboardInterrupt, and the sweep would finish)
    return subprocess.Popen([sys.executable, "-m", "experiments", *args, f"results_dir={results}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_runs(results, count, proc, timeout=300):  # generous: a loaded machine runs slowly
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(list(results.glob("**/runs/*/seed*/meta.json"))) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {count} finished runs: {proc.poll()}")


def test_killed_sweep_resumes_to_the_same_table(run_cli, mnist_root, tmp_path):
    # runs long enough (a few seconds each) that a loaded machine still interrupts the sweep mid-way
    args = ["name=relu_vs_sigmoid", "data.train_size=3000", "model.width=64", "train.epochs=30", "seeds=[0,1,2]"]
    whole = run_cli(*args, results_dir=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    results = tmp_path / "interrupted"
    proc = start(mnist_root, results, args)
    wait_for_runs(results, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and err.strip().splitlines() == [
        "interrupted: finished runs are kept; run the same command again to do the rest"]
    done_after_sigint = len(list(results.glob("**/runs/*/seed*/meta.json")))
    assert 1 <= done_after_sigint < 6

    proc = start(mnist_root, results, args)
    wait_for_runs(results, done_after_sigint + 1, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()

    resumed = run_cli(*args, results_dir=results)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("already complete") >= done_after_sigint + 1
    pd.testing.assert_frame_equal(table(results), table(tmp_path / "whole"))
    (study,) = studies(results)
    assert not list(study.glob("runs/*/.seed*"))  # no half-written run left behind
    assert json.loads((study / "study.json").read_text())["seeds"] == [0, 1, 2]


def test_keys_added_at_their_old_behaviour_keep_finished_runs_valid():
    # runs made before data.test_size and train.max_updates existed must still count as done
    older = {"model": {"arch": "mlp", "depth": 3}, "data": {"train_size": 100}, "optimizer": {"lr": 0.1},
             "train": {"epochs": 2}}
    newer = {**older, "data": {"train_size": 100, "test_size": 10000},
             "train": {"epochs": 2, "max_updates": None}}
    assert store.run_key(newer, seed=0) == store.run_key(older, seed=0)
    capped = {**newer, "train": {"epochs": 2, "max_updates": 5}}
    assert store.run_key(capped, seed=0) != store.run_key(older, seed=0)
    fewer_test_images = {**newer, "data": {"train_size": 100, "test_size": 500}}
    assert store.run_key(fewer_test_images, seed=0) != store.run_key(older, seed=0)



SHARED = ["data.train_size=300", "model.width=16", "train.epochs=1", "seeds=[0,1]"]  # sigmoid = 9_layers here


def test_a_run_another_study_trained_is_copied_not_trained_again(run_in_process, tmp_path, monkeypatch):
    from experiments import runner

    assert run_in_process("name=relu_vs_sigmoid", "only=[sigmoid]", *SHARED).returncode == 0
    (source,) = studies(tmp_path / "results")
    done = run_in_process("name=depth_sigmoid", *SHARED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("copied from relu_vs_sigmoid/lecture/") == 2
    assert "9_layers | seed 0 | epoch" not in done.stdout and "3_layers | seed 0 | epoch" in done.stdout
    (study,) = (tmp_path / "results" / "depth_sigmoid" / "lecture").iterdir()
    for seed in (0, 1):
        trained, copy = source / "runs" / "sigmoid" / f"seed{seed}", study / "runs" / "9_layers" / f"seed{seed}"
        assert (copy / "metrics.csv").read_bytes() == (trained / "metrics.csv").read_bytes()
        assert list(copy.glob("events.out.tfevents.*"))
        was, meta = store.read_meta(trained), store.read_meta(copy)
        assert meta["copied_from"] == str(trained.relative_to(tmp_path / "results"))
        assert meta["variant"] == "9_layers" and meta["experiment"] == "depth_sigmoid" and meta["key"] == was["key"]
        assert meta["seconds"] == was["seconds"] and meta["trained_at_commit"] == was["git_commit"]
    verdict = json.loads((study / "verdict.json").read_text())
    assert verdict["runs"] == 4 and verdict["copied_runs"] == 2
    seconds = round(sum(store.read_meta(p)["seconds"] for p in (source / "runs" / "sigmoid").iterdir()), 1)
    assert verdict["copied_seconds"] == {str(source.relative_to(tmp_path / "results")): seconds}

    # a copy is never a source: its own source may have gone, and the totals would count the run nowhere
    shutil.rmtree(source / "runs")
    again = run_in_process("name=relu_vs_sigmoid", "only=[sigmoid]", *SHARED)
    assert again.returncode == 0 and "copied from" not in again.stdout and "sigmoid | seed 1 | epoch" in again.stdout

    # force=true trains afresh: a run finished before the command started is not copied
    monkeypatch.setattr(runner, "COMMAND_STARTED", time.time())
    forced = run_in_process("name=depth_sigmoid", "force=true", *SHARED)
    assert forced.returncode == 0 and "copied from" not in forced.stdout and "9_layers | seed 1 | epoch" in forced.stdout
    assert "copied_from" not in store.read_meta(study / "runs" / "9_layers" / "seed0")


def test_a_forced_sweep_copies_what_its_earlier_jobs_trained_and_never_a_run_of_its_own(run_in_process, tmp_path,
                                                                                       monkeypatch):
    from experiments import runner

    monkeypatch.setattr(runner, "COMMAND_STARTED", time.time())
    done = run_in_process("-m", "name=relu_vs_sigmoid,depth_sigmoid", "force=true", *SHARED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("copied from relu_vs_sigmoid/lecture/") == 2 and "9_layers | seed 0 | epoch" not in done.stdout
    # two jobs of one study (seeds split between them), results_dir relative: the second finds seed 0
    # in the study's own folder, which is no other study's run to copy
    shared = [a for a in SHARED if not a.startswith("seeds")]
    done = run_in_process("-m", "name=relu_vs_sigmoid", "only=[relu]", "seeds=[0],[0,1]", "force=true", *shared,
                          results_dir=Path("elsewhere"))
    assert done.returncode == 0 and "copied from" not in done.stdout and done.stdout.count("relu | seed 0 | epoch   1/1") == 2


def test_a_run_without_the_step_sizes_a_study_reads_is_trained_not_copied(run_in_process, tmp_path):
    assert run_in_process("name=relu_vs_sigmoid", "only=[sigmoid]", *SHARED).returncode == 0
    done = run_in_process("name=relu_vs_sigmoid", "only=[sigmoid]", "experiment.figures=[curves,effective_lr]", *SHARED)
    assert done.returncode == 0, done.stderr
    assert "copied from" not in done.stdout and "sigmoid | seed 0 | epoch" in done.stdout


def test_a_study_that_compares_run_times_trains_its_own_runs(run_in_process):
    # minibatch_vs_fullbatch's minibatch_100 is depth_sigmoid's 3_layers here; its checks compare s / epoch
    assert run_in_process("name=depth_sigmoid", "only=[3_layers]", *SHARED).returncode == 0
    done = run_in_process("name=minibatch_vs_fullbatch", "only=[minibatch_100]", *SHARED)
    assert done.returncode == 0, done.stderr
    assert "compare run times: no run is copied" in done.stdout and "| copied from" not in done.stdout
    assert "minibatch_100 | seed 1 | epoch" in done.stdout


def test_a_source_that_changed_or_went_while_it_was_read_is_not_copied(tmp_path):
    source, path = tmp_path / "a" / "runs" / "x" / "seed0", tmp_path / "b" / "runs" / "x" / "seed0"
    source.mkdir(parents=True)
    (source / "metrics.csv").write_text("epoch,train_loss\n0,2.3\n")
    (source / "meta.json").write_text(json.dumps({"key": "k", "status": "complete"}))
    assert not store.copy_run(source, path, {"key": "another"})  # re-run under other settings meanwhile
    shutil.rmtree(source)
    assert not store.copy_run(source, path, {"key": "k"})  # gone
    assert not path.exists() and not list(path.parent.iterdir())  # no folder, no temporary left behind


def test_only_studies_that_compare_no_run_times_copy_runs():
    from experiments.config import CONFIG_DIR
    from experiments.metrics import reads_timings

    def spec(name):
        return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "name" / f"{name}.yaml"))["experiment"]

    assert reads_timings(spec("minibatch_vs_fullbatch")) and reads_timings(spec("bottleneck"))
    assert not reads_timings(spec("relu_vs_sigmoid")) and not reads_timings(spec("optimizers"))
