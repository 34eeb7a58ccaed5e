"""The real entry point, `python -m experiments`, as a user runs it."""

import json

import pandas as pd

TINY = ["data.train_size=300", "model.width=32", "train.epochs=2", "train.batch_size=50", "seeds=[0,1]"]


def test_tiny_end_to_end_run_writes_every_output(run_cli, tmp_path):
    done = run_cli("name=relu_vs_sigmoid", *TINY, "device=cpu")
    assert done.returncode == 0, done.stderr
    studies = list((tmp_path / "results" / "relu_vs_sigmoid" / "lecture").iterdir())
    assert len(studies) == 1
    study = studies[0]
    for name in ("summary.csv", "summary.md", "curves.png", "verdict.json", "study.json"):
        assert (study / name).stat().st_size > 0, name
    for variant in ("sigmoid", "relu"):
        for seed in (0, 1):
            run = study / "runs" / variant / f"seed{seed}"
            metrics = pd.read_csv(run / "metrics.csv")
            assert metrics["epoch"].tolist() == [0, 1, 2]
            meta = json.loads((run / "meta.json").read_text())
            assert meta["status"] == "complete" and meta["seed"] == seed
            assert meta["config"]["model"]["activation"] == variant and meta["config"]["model"]["depth"] == 9
            assert {"torch", "device", "git_commit", "seconds", "key"} <= set(meta)
            assert list(run.glob("events.out.tfevents.*"))
    # what a run measures is recorded; where results go (results_dir, a local path), the device and the seeds are not
    assert json.loads((study / "study.json").read_text())["overrides"] == sorted(["name=relu_vs_sigmoid", *TINY[:-1]])
    summary = pd.read_csv(study / "summary.csv")
    assert summary["variant"].tolist() == ["sigmoid", "relu"] and summary["n"].tolist() == [2, 2]
    assert json.loads((study / "verdict.json").read_text())["verdict"] in {"reproduced", "partly", "not reproduced", "inconclusive"}
    assert "| sigmoid | 0.11 |" in done.stdout and "epoch   2/2" in done.stdout

    # a second run finds every seed complete and trains nothing
    again = run_cli("name=relu_vs_sigmoid", *TINY)
    assert again.returncode == 0 and again.stdout.count("already complete") == 4
    assert "epoch" not in again.stdout.split("already complete")[-1].split("##")[0]


def test_multirun_sweep_writes_one_study_per_job(run_cli, tmp_path):
    done = run_cli("-m", "name=relu_vs_sigmoid", "model.width=16,24", "only=[relu]", *[a for a in TINY if "width" not in a])
    assert done.returncode == 0, done.stderr
    studies = sorted(p.name for p in (tmp_path / "results" / "relu_vs_sigmoid" / "lecture").iterdir())
    assert len(studies) == 2 and "model.width=16" in studies[0] and "model.width=24" in studies[1]


def one_line_error(done) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_unknown_experiment_lists_the_valid_ones(run_cli):
    line = one_line_error(run_cli("name=relu_vs_sigmiod"))
    assert "unknown experiment 'relu_vs_sigmiod'" in line and "relu_vs_sigmoid" in line


def test_mistyped_key_is_named(run_cli):
    line = one_line_error(run_cli("name=relu_vs_sigmoid", "model.widht=10"))
    assert "widht" in line


def test_wrong_type_and_bad_values_are_rejected(run_cli):
    assert "model.width" in one_line_error(run_cli("name=relu_vs_sigmoid", "model.width=wide"))
    assert "optimizer.lr must be a finite number > 0" in one_line_error(run_cli("name=relu_vs_sigmoid", "optimizer.lr=-1"))
    assert "relux" in one_line_error(run_cli("name=relu_vs_sigmoid", "model.activation=relux"))
    # a bad value hidden in the second half of a sweep is caught before anything trains
    assert "model.depth must be in 1..1000" in one_line_error(run_cli("-m", "name=relu_vs_sigmoid", "model.depth=3,0"))


def test_missing_experiment_name(run_cli):
    assert "name=<one of" in one_line_error(run_cli())


def test_vectorised_seeds_through_the_cli_match_the_plain_run(run_in_process, tmp_path):
    # vectorise=false: on a CUDA machine the default (auto) would vectorise the plain run too
    plain = run_in_process("name=relu_vs_sigmoid", *TINY, "train.vectorise=false", results_dir=tmp_path / "plain")
    vectorised = run_in_process("name=relu_vs_sigmoid", *TINY, "train.vectorise=true", results_dir=tmp_path / "vectorised")
    assert plain.returncode == 0 and vectorised.returncode == 0, vectorised.stderr
    tables = {}
    for name in ("plain", "vectorised"):
        (study,) = (tmp_path / name / "relu_vs_sigmoid" / "lecture").iterdir()
        meta = json.loads((study / "runs" / "relu" / "seed1" / "meta.json").read_text())
        assert meta["runs_in_group"] == (2 if name == "vectorised" else 1)
        tables[name] = pd.read_csv(study / "summary.csv").set_index("variant")
    assert (tables["vectorised"]["mean"] - tables["plain"]["mean"]).abs().max() < 2e-3
