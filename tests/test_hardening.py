"""Nothing written outside results_dir, every value checked before the first job: a regression test
for each way a hostile or careless command line got through, and a bounded fuzz test."""

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from experiments import store
from experiments import __main__ as entry
from experiments.errors import UserError

TINY = ["data.train_size=100", "data.test_size=100", "train.epochs=1", "seeds=[0]", "only=[relu]", "model.width=8"]




def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("args,expected", [
    (["protocol=../../configs/protocol/lecture"], "unknown protocol"),
    (["protocol=../name/relu_vs_sigmoid"], "unknown protocol"),
    (["--config-name=config", "experiment.title=../../../../x"], "Hydra flag '--config-name' is not supported"),
    (["--config-dir=/tmp"], "Hydra flag '--config-dir' is not supported"),
    (["-m", "experiment.title=../../x"], "may not contain '/'"),
    (["--cfg", "job", "experiment.title=../../x"], "may not contain '/'"),
    (["hydra.output_subdir=../../../../../evil"], "Hydra's own settings cannot be overridden"),
    (["hydra.run.dir=/x"], "Hydra's own settings cannot be overridden"),
    (["+hydra.job.chdir=true"], "Hydra's own settings cannot be overridden"),
    (["train.eval_every=0"], "train.eval_every"),
    (["train.eval_every=-1"], "train.eval_every"),
    (["optimizer.momentum=-1"], "optimizer.momentum must be in [0, 1)"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay must be a finite number >= 0"),
    (["optimizer.lr=inf"], "optimizer.lr must be a finite number > 0"),
    (["optimizer.lr=nan"], "optimizer.lr must be a finite number > 0"),
    (["train.max_updates=0"], "train.max_updates"),
    (["seeds=[0,0]"], "seeds lists a seed twice"),
    (["experiment.verdict.checks=[{better: relu, worse: sigmoid, kind: beets}]"], "kind"),
    (["experiment.verdict.checks=[{better: relu, worse: sigmoid, metric: tset_acc}]"], "unknown metrics ['tset_acc']"),
    (["experiment.verdict.checks=[{better: relu, worse: sigmoid, kind: not_worse, margin: -1}]"], "margin"),
    (["experiment.probes=[delete_blocks]"], "delete_blocks probe needs a net made of blocks"),
    (["experiment.title=é"], "quote a value"),
    (["--cfg", "results_dir=x"], "--cfg takes job, hydra or all"),
    (["hydra/launcher=nope"], "Could not find 'hydra/launcher/nope'"),
    (["hydra.launcher.foo=1"], "Could not override 'hydra.launcher.foo'"),
    (["-m", "hydra.launcher.foo=1"], "Could not override 'hydra.launcher.foo'"),
    (["experiment.title=${oc.env:HOME}"], "interpolations"),
    (["results_dir=${oc.env:HOME}"], "interpolations"),
    (["only=[]"], "only=[] picks no run"),
    (["seeds=[-1]"], "seeds must be in 0..2**31-1"),
    (["--info=bogus"], "--info takes one of"),
    (["--help", "protocol=nope"], "unknown protocol 'nope'"),
    (["-m", "--cfg", "job"], "--cfg and -m cannot be combined"),
    (["--cfg", "job", "--info"], "--cfg and --info cannot be combined"),
    (["optimizer.lr=0.1,0.2"], "make a sweep: add -m"),
    (["optimizer.lr=1e39"], "optimizer.lr must be a finite number > 0 and at most 1e+06"),
    (["optimizer.name=adam", "optimizer.momentum=0.9"], "no net, data or optimizer of relu_vs_sigmoid reads optimizer.momentum"),
    (["-m", "hydra/launcher=joblib", "hydra.launcher.temp_folder=/tmp/x"], "may not name a path"),
    (["+model.foo=1"], "without '+'"),
    (["++model.width=8"], "without '+'"),
    (["-m", "data.train_size=200,100", "train.batch_size=50,200"], "train.batch_size must be in 1..data.train_size=100"),
    (["experiment.verdict.tolerance=-0.1"], "verdict.tolerance must be"),
    (["experiment.lecture.relu=nan"], "value must be a finite number"),
    (["experiment.verdict.checks=[{better: relu, worse: relu}]"], "compared with itself"),
    (["-m", "optimizer.lr=interval(0,1)"], "interval() and glob() cannot be listed"),
    (["-m", "model.activation=glob(*)"], "interval() and glob() cannot be listed"),
    (["~protocol"], "cannot be deleted"),
    (["model=null"], "Config group override must be a string"),
    (["--resolve"], "--resolve only works with --cfg"),
    (["-p", "model"], "-p only works with --cfg"),
    (["seeds=[99999999999999999999]"], "seeds must be in 0..2**31-1"),
    (["data.root=/nonexistent/mnist", "data.download=false"], "MNIST files missing"),
    (["data.root=" + "x" * 5000, "data.download=false"], "cannot be read"),
])
def test_bad_input_is_one_line_before_anything_is_written(tmp_path, args, expected, exit_message):
    before = files_under(tmp_path)
    assert expected in exit_message("name=relu_vs_sigmoid", *args)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("args,shown", [
    (["--hydra-help", "name=relu_vs_sigmoid", "seeds=[0]"], "Hydra ("),
    (["--info", "name=relu_vs_sigmoid", "seeds=[0]"], "Config search path"),
    (["--help", "name=relu_vs_sigmoid", "seeds=[0]"], "Powered by Hydra"),
])
def test_print_flags_with_overrides_print_and_write_nothing(run_cli, tmp_path, args, shown):
    done = run_cli(*args)
    assert done.returncode == 0 and shown in done.stdout + done.stderr, done.stderr[-500:]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["-m", "--help"]])
def test_help_alone_prints_the_usage(monkeypatch, capsys, args):
    from conftest import call_entry_point

    assert call_entry_point(monkeypatch, ["experiments", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m experiments name=<experiment>") and "relu_vs_sigmoid" in out


def test_analysis_of_a_folder_without_a_study_is_one_error_line(tmp_path, capsys):
    from experiments import analysis

    assert analysis.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nope'} holds no study.json")


def test_analysis_of_a_committed_study_without_its_runs_says_how_to_store_them_and_changes_nothing(tmp_path, capsys):
    """A fresh clone has each study's tables but not its run folders: rebuilding the tables from no
    runs (or adopting the current rule first) would overwrite the committed results."""
    import shutil
    from experiments import analysis

    study_dir = tmp_path / "lecture"
    # what a fresh clone has of a study that kept no seeds.csv (as studies analysed before it existed
    # did): the committed files, not a local run's runs/, .hydra/ or lock
    shutil.copytree(Path(__file__).resolve().parents[1] / "results" / "cnn_vs_mlp" / "lecture", study_dir,
                    ignore=shutil.ignore_patterns("runs", ".hydra", ".lock", "*.log", "multirun.yaml", "seeds.csv"))
    seeds = ",".join(map(str, json.loads((study_dir / store.STUDY_FILE).read_text())["seeds"]))
    before = {path.name: path.read_bytes() for path in study_dir.iterdir() if path.is_file()}
    assert analysis.main([str(study_dir), "--current-rule"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {study_dir} holds no finished run of this study in runs/")
    assert err.rstrip().endswith(f"python -m experiments name=cnn_vs_mlp protocol=lecture 'seeds=[{seeds}]'")
    assert before == {path.name: path.read_bytes() for path in study_dir.iterdir() if path.is_file() and path.name != ".lock"}
    # a study under another results folder is re-run there, not into ./results
    elsewhere = tmp_path / "mine" / "cnn_vs_mlp" / "lecture"
    shutil.copytree(study_dir, elsewhere)
    assert analysis.main([str(elsewhere), "--current-rule"]) == 1
    assert capsys.readouterr().err.rstrip().endswith(f"'seeds=[{seeds}]' results_dir={(tmp_path / 'mine').resolve()}")


def test_a_quoted_name_is_the_name(exit_message):
    assert "seeds must be in" in exit_message('name="relu_vs_sigmoid"', "protocol='modern'", "seeds=[-1]")


@pytest.mark.parametrize("results_dir", ["", "linked"])
def test_no_study_folder_outside_results_dir_even_through_a_symlink(tmp_path, monkeypatch, mnist_root, results_dir):
    outside = tmp_path / "outside"
    outside.mkdir()
    if results_dir:
        (tmp_path / results_dir).mkdir()
        (tmp_path / results_dir / "relu_vs_sigmoid").symlink_to(outside)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_ROOT", mnist_root)
    monkeypatch.setattr(sys, "argv", ["experiments", "name=relu_vs_sigmoid", *TINY, f"results_dir={results_dir}"])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert str(exited.value.code).startswith(("error: results_dir is empty", "error: refusing to write"))
    assert not any(outside.iterdir()) and not Path("/relu_vs_sigmoid").exists()


@pytest.mark.parametrize("damage", ["not json", "{}", "[]"])
def test_analysis_of_a_damaged_study_is_one_error_line(tmp_path, capsys, damage):
    from experiments import analysis

    (tmp_path / "study.json").write_text(damage)
    assert analysis.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot analyse {tmp_path}") and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--list", "/nonexistent"], ["--list", "--list"], ["name=relu_vs_sigmoid", "--list"]])
def test_list_takes_nothing_or_one_existing_folder(monkeypatch, args):
    monkeypatch.setattr(sys, "argv", ["experiments", *args])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    assert str(exited.value.code).startswith("error: --list takes nothing or one results folder")


def test_unknown_experiment_with_a_flag_is_one_line(exit_message):
    assert "unknown experiment 'nope'" in exit_message("-m", "name=nope")


def test_a_bad_value_late_in_a_sweep_stops_it_before_job_zero(tmp_path, exit_message):
    message = exit_message("-m", "name=relu_vs_sigmoid", "train.eval_every=1,0")
    assert "train.eval_every" in message and not (tmp_path / "results").exists()


def test_study_lock_does_not_follow_or_truncate_a_symlink(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    study = tmp_path / "study"
    study.mkdir()
    (study / ".lock").symlink_to(target)
    with pytest.raises(UserError, match="cannot lock the study folder"):
        with store.locked(study):
            pass
    assert target.read_text() == "keep me"


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match="No space left on device"):
        store.write_atomic(tmp_path / "summary.md", "table")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_carry_host_and_process_and_stale_ones_of_this_host_go(tmp_path):
    path = tmp_path / "runs" / "relu" / "seed0"
    tmp = store.temp_dir_for(path)
    assert tmp.name.startswith(f".seed0.tmp-{store.HOST}-{os.getpid()}-")
    dead = path.parent / f".seed0.tmp-{store.HOST}-999999999-abcd1234"
    other_host = path.parent / ".seed0.tmp-othernode-1-abcd1234"
    dead.mkdir()
    other_host.mkdir()
    store.temp_dir_for(path)
    assert not dead.exists() and other_host.exists() and tmp.exists()  # our own live folder stays


def test_a_read_only_study_folder_is_one_line(monkeypatch, tmp_path, exit_message):
    study = tmp_path / "results" / "relu_vs_sigmoid" / "lecture"
    study.mkdir(parents=True)
    study.chmod(0o500)
    real_access = os.access  # root may write anywhere: ask as an ordinary user would
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and bool(Path(path).stat().st_mode & 0o200))
    try:
        assert "is not writable" in exit_message("name=relu_vs_sigmoid")
    finally:
        study.chmod(0o700)


def test_offline_download_to_a_missing_root_creates_nothing(run_cli, tmp_path):
    root = tmp_path / "nowhere" / "deeper"
    done = run_cli("name=relu_vs_sigmoid", *TINY, f"data.root={root}")
    assert done.returncode == 1 and "could not be downloaded" in done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_tensorboard_hint_quotes_a_path_with_spaces(run_in_process, tmp_path):
    results = tmp_path / "my results"
    done = run_in_process("name=relu_vs_sigmoid", *TINY, results_dir=results)
    assert done.returncode == 0, done.stderr
    assert f"tensorboard --logdir '{results}'" in done.stdout


# The fuzz test: values a user might type, in the keys a user types, after a Hydra flag or not.
NASTY = st.one_of(
    st.sampled_from(["..", "../..", "/", "/etc", "../../../../tmp/x", "", " ", "~", "a/b", "${oc.env:HOME}",
                     "1e309", "-1e309", "nan", "inf", "-inf", "0", "-1", "99999999999999999999", "[0,0]", "[]",
                     "null", "true", "é", "'é'", "\"..\""]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8),
)
KEYS = ["experiment.title", "protocol", "name", "model.depth", "model.width", "optimizer.lr", "train.epochs",
        "train.eval_every", "train.max_updates", "data.train_size", "seeds", "only", "model.dropout", "hydra.run.dir",
        "hydra.output_subdir"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=NASTY, flag=st.sampled_from([[], ["-m"], ["--cfg", "job"]]),
       twice=st.booleans())
def test_fuzzed_command_lines_end_in_one_error_line_or_stay_inside_results_dir(tmp_path, monkeypatch, key, value,
                                                                                flag, twice):
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # its own folder each time: Hypothesis may replay an example
    outside_before = files_under(tmp_path) - files_under(work)
    args = [*flag, "name=relu_vs_sigmoid", f"{key}={value}", *([f"{key}={value}"] if twice else [])]
    monkeypatch.setattr(sys, "argv", ["experiments", *args, f"results_dir={work / 'results'}"])
    # precheck alone: either one error line, or a command Hydra would run (the tiny runs above show
    # that such a command writes only inside results_dir)
    try:
        entry.precheck(sys.argv[1:])
    except UserError as exc:
        assert "\n" not in str(exc)
        assert files_under(work) == set()
    else:
        composed_dir = work / "results"
        assert all(p.is_relative_to(composed_dir) for p in files_under(work))
    assert files_under(tmp_path) - files_under(work) == outside_before


def test_accepted_fuzz_shapes_really_run_inside_results_dir(run_cli, tmp_path):
    """The shapes of command line the fuzz test lets through, run for real."""
    for args in (["-m", "experiment.title=é_'x'"], ["--cfg", "job"], ["model.width=8", "train.max_updates=1"]):
        done = run_cli("name=relu_vs_sigmoid", *TINY, *args, results_dir=tmp_path / "r")
        assert done.returncode in (0, 1), done.stderr
        assert done.returncode == 0 or done.stderr.strip().count("\n") == 0, done.stderr
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "r")]
    assert outside == []
