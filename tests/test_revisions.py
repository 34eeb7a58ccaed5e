"""What a study ran and what changed after it had results: the settings table, and revisions
detected in a throw-away git repository."""

import dataclasses
import os
import subprocess

import pytest

from experiments import judge, revisions, settings, tables
from experiments.config import ModelConfig
from models import ARCHITECTURES, build_model

EXPERIMENT = """\
# @package _global_
optimizer:
  lr: {lr}
experiment:
  title: {title}
  verdict:
    checks:
      - {{better: a, worse: b, note: "{note}"}}
  revisions: {revisions}
"""


def commit(repo, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def experiment(lr=0.1, title="T", note="n", recorded="[]") -> dict[str, str]:
    return {"configs/name/x.yaml": EXPERIMENT.format(lr=lr, title=title, note=note, revisions=recorded)}


def test_a_settings_change_after_committed_results_is_a_revision(repo):
    commit(repo, experiment(lr=0.1), "experiment")
    commit(repo, experiment(lr=0.3), "tuned before any result: not a revision")
    commit(repo, {"results/x/lecture/verdict.json": "{}"}, "results")
    changed = commit(repo, experiment(lr=0.03), "rate changed after results")
    commit(repo, experiment(lr=0.03, title="Reworded", note="reworded"), "wording only: not a revision")
    found = revisions.revisions(repo, ["configs/name/x.yaml"], "results/x")
    assert [(c.commit, c.keys) for c in found] == [(changed, ["optimizer.lr"])]

    lines = revisions.revision_lines(repo, ["configs/name/x.yaml"], "results/x", [])
    assert len(lines) == 1 and "`optimizer.lr`" in lines[0] and "Reason not recorded" in lines[0]
    recorded = [{"commit": changed[:7], "date": "d", "what": "lr 0.3 -> 0.03", "why": "the validation split said so"}]
    lines = revisions.revision_lines(repo, ["configs/name/x.yaml"], "results/x", recorded)
    assert lines == [f"- {found[0].date}, commit {changed[:7]}: lr 0.3 -> 0.03 (changed `optimizer.lr`). "
                     "Why: the validation split said so"]


def test_recording_the_reason_is_not_itself_a_revision(repo):
    commit(repo, experiment(lr=0.1), "experiment")
    commit(repo, {"results/x/lecture/verdict.json": "{}"}, "results")
    commit(repo, experiment(lr=0.1, recorded='[{commit: abc, date: d, what: w, why: y}]'), "reason added")
    assert revisions.revisions(repo, ["configs/name/x.yaml"], "results/x") == []


def test_wording_is_no_setting():
    """Caveats, and the hardware a study waits for, change no run: editing them makes no study pending."""
    base = "experiment:\n  title: T\n  grid: {optimizer.lr: [0.1]}\n"
    worded = base + "  rerun_waits_for: {modern: a GPU}\n  protocol_caveats: {modern: [why]}\n  caveats: [c]\n"
    assert revisions.changed_keys(revisions.settings_of(base), revisions.settings_of(worded)) == []
    assert revisions.changed_keys(revisions.settings_of(base), revisions.settings_of(base + "  probes: [p]\n")) == [
        "experiment.probes"]


def test_runs_older_than_the_experiment_file_are_stale(repo):
    runs_at = commit(repo, experiment(lr=0.1), "experiment")
    assert revisions.stale_keys(repo, "configs/name/x.yaml", runs_at[:12]) == []
    commit(repo, experiment(lr=0.1, title="Reworded"), "wording")
    assert revisions.stale_keys(repo, "configs/name/x.yaml", runs_at[:12] + "-dirty") == []
    commit(repo, experiment(lr=0.2), "rate")
    assert revisions.stale_keys(repo, "configs/name/x.yaml", runs_at[:12]) == ["optimizer.lr"]
    assert revisions.stale_keys(repo, "configs/name/x.yaml", "unknown") is None


def test_runs_made_at_several_commits_are_stale_after_the_newest(repo):
    # seeds added later: the study's runs were made at two commits; a change after both reached none
    first = commit(repo, experiment(lr=0.1), "experiment")
    added = commit(repo, experiment(lr=0.1, title="Reworded"), "seeds added")
    assert revisions.newest_commit(repo, [added[:12], first[:12]]) == added[:12]
    assert revisions.newest_commit(repo, [first[:12] + "-dirty", added[:12] + "-dirty"]) == added[:12] + "-dirty"
    assert revisions.newest_commit(repo, []) is None and revisions.newest_commit(repo, ["unknown", first]) is None
    commit(repo, experiment(lr=0.2), "rate")
    assert revisions.stale_keys(repo, "configs/name/x.yaml", revisions.newest_commit(repo, [first, added])) == ["optimizer.lr"]


def test_without_git_history_the_report_says_so(tmp_path):
    assert revisions.revisions(tmp_path, ["configs/name/x.yaml"], "results/x") is None
    assert "git history unavailable" in revisions.revision_lines(tmp_path, ["configs/name/x.yaml"], "results/x", [])[0]


STUDY = {
    "protocol": "lecture", "seeds": [0, 1, 2, 3, 4],
    "lecture_settings": {"model": {"depth": 3, "activation": "sigmoid"}, "optimizer": {"lr": 0.1}},
    "settings": {"relu": {"model": {"depth": 9, "activation": "relu"}, "optimizer": {"lr": 0.1}},
                 "sigmoid": {"model": {"depth": 9, "activation": "sigmoid"}, "optimizer": {"lr": 0.1}}},
}


def test_settings_table_marks_departures_and_what_varies():
    rows = {key: (ref, value, mark) for key, (ref,), value, mark in settings.settings_rows(STUDY)}
    assert rows["model.depth"] == ("3", "9", "≠ lecture protocol")
    assert rows["model.activation"] == ("sigmoid", "relu · sigmoid", settings.VARIES)
    assert rows["optimizer.lr"] == ("0.1", "0.1", "")
    assert settings.study_label(STUDY) == "lecture protocol, changed: model.depth=9"
    # under another protocol the label names what departs from that protocol's own settings: the
    # modern protocol trains 20 epochs on 55k images, so a 10-epoch study says so, its 55k images not
    modern = {"protocol": "modern", "settings": {
        label: {**run, "data": {"train_size": 55000}, "train": {"epochs": 10}} for label, run in STUDY["settings"].items()}}
    assert settings.study_label(modern) == "modern protocol, changed: model.depth=9, train.epochs=10"
    assert "| seeds | – | 0, 1, 2, 3, 4 (n = 5) |  |" in tables.settings_markdown(STUDY)
    # its table shows both protocols' values, and marks each difference from either, as its heading does
    table = tables.settings_markdown({**modern, "seeds": [0], "lecture_settings": {
        "model": {"depth": 3}, "data": {"train_size": 10000}, "train": {"epochs": 20}}})
    assert table[0] == "| setting | lecture protocol | modern protocol | this study |  |"
    assert "| `data.train_size` | 10000 | 55000 | 55000 | ≠ lecture protocol |" in table
    assert "| `train.epochs` | 20 | 20 | 10 | ≠ lecture protocol; ≠ modern protocol |" in table
    assert "| `model.depth` | 3 | 3 | 9 | ≠ lecture protocol; ≠ modern protocol |" in table
    assert "| seeds | – | – | 0 (n = 1) |  |" in table


def test_settings_table_marks_a_key_no_net_of_the_study_reads():
    study = {"protocol": "lecture", "seeds": [0],
             "lecture_settings": {"model": {"arch": "mlp", "depth": 3, "activation": "sigmoid", "cell": "rnn"},
                                  "data": {"dataset": "mnist", "seq_len": 100}},
             "settings": {"lstm": {"model": {"arch": "rnn", "depth": 3, "activation": "tanh", "cell": "lstm"},
                                   "data": {"dataset": "adding", "seq_len": 30}},
                          "tanh": {"model": {"arch": "rnn", "depth": 3, "activation": "tanh", "cell": "rnn"},
                                   "data": {"dataset": "adding", "seq_len": 30}}}}
    rows = {key: (ref, value, mark) for key, (ref,), value, mark in settings.settings_rows(study)}
    assert rows["model.depth"] == ("3", "3", settings.UNREAD)  # a recurrent net has no hidden-layer count
    assert rows["model.activation"] == ("sigmoid", "tanh", "≠ lecture protocol")  # the plain cell reads it
    assert rows["data.seq_len"] == ("100", "30", "≠ lecture protocol")
    assert "model.depth" not in settings.study_label(study)


def test_settings_table_shows_what_a_net_builds_in_place_of_a_key():
    # a residual net has batch norm and ReLU built in: "model.batch_norm False, not read" would hide
    # a departure from the lecture protocol's plain sigmoid MLP
    study = {"protocol": "lecture", "seeds": [0],
             "lecture_settings": {"model": {"arch": "mlp", "activation": "sigmoid", "batch_norm": False}},
             "settings": {v: {"model": {"arch": "resmlp", "activation": "sigmoid", "batch_norm": False}}
                          for v in ("plain", "residual")}}
    rows = {key: (ref, value, mark) for key, (ref,), value, mark in settings.settings_rows(study)}
    built = "built into the resmlp nets (model.arch)"
    assert rows["model.batch_norm"] == ("False", "True", f"≠ lecture protocol; {built}")
    assert rows["model.activation"] == ("sigmoid", "relu", f"≠ lecture protocol; {built}")
    assert settings.study_label(study) == ("lecture protocol, changed: model.arch=resmlp, model.activation=relu (built in), "
                                           "model.batch_norm=True (built in)")
    # beside a plain MLP that reads the key, the value varies
    study["settings"]["mlp"] = {"model": {"arch": "mlp", "activation": "sigmoid", "batch_norm": False}}
    rows = {key: (ref, value, mark) for key, (ref,), value, mark in settings.settings_rows(study)}
    assert rows["model.batch_norm"] == ("False", "True · False",
                                        f"{settings.VARIES}; {built}; the others set it by the key")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_what_the_settings_table_calls_built_in_is_what_the_net_builds(arch):
    # batch norm layers and the activation class, where the table says the architecture fixes them
    from torch import nn

    net = build_model({**dataclasses.asdict(ModelConfig()), "arch": arch, "width": 8, "activation": "sigmoid",
                       "batch_norm": False, "depth": 8 if arch == "rescnn" else 3}, 784, 10)
    has_bn = any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net.modules())
    assert settings.BUILT_IN["model.batch_norm"].get(arch, False) == has_bn or settings.reads({"model.arch": arch}, "model.batch_norm")
    if settings.BUILT_IN["model.activation"].get(arch) == "relu":
        assert any(isinstance(m, nn.ReLU) for m in net.modules()) and not any(isinstance(m, nn.Sigmoid) for m in net.modules())


class RecordingDict(dict):
    """A config dict that notes every key read from it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_settings_table_knows_which_model_keys_each_architecture_reads(arch):
    # a key the builder reads but the table calls unread (or the reverse) would mislabel a study's setting
    model = RecordingDict({**dataclasses.asdict(ModelConfig()), "arch": arch, "width": 8,
                           "depth": 8 if arch == "rescnn" else 3})  # depths each architecture builds
    build_model(model, 784, 10)
    run = {"model.arch": arch}
    assert {key for key in model if key != "arch" and settings.reads(run, f"model.{key}")} == model.read - {"arch"}


@pytest.mark.parametrize("name,identical", [("dropout", True), ("relu_vs_sigmoid", False), ("deep_vs_fat", False)])
def test_an_experiment_that_fixes_every_protocol_setting_is_not_run_twice(name, identical):
    assert settings.protocols_identical(name) == identical


def test_a_changed_rule_re_judges_the_stored_runs_without_a_re_run(tmp_path):
    import json

    from experiments import analysis
    from experiments.errors import UserError

    study = {"experiment": {**judge.current_rule("relu_vs_sigmoid"), "name": "relu_vs_sigmoid",
                            "variants": {"sigmoid": {"model": {"activation": "sigmoid"}},
                                         "relu": {"model": {"activation": "relu"}}}, "grid": {}, "probes": []},
             "protocol": "lecture", "seeds": [0, 1]}
    assert not judge.rule_changed(study)
    study["experiment"]["verdict"] = {"metric": "test_acc", "tolerance": 0.05, "checks": [{"better": "relu", "worse": "sigmoid"}]}
    assert judge.rule_changed(study)  # the file now asks for a margin
    (tmp_path / "study.json").write_text(json.dumps(study))
    analysis.adopt_current_rule(tmp_path)
    adopted = json.loads((tmp_path / "study.json").read_text())
    assert not judge.rule_changed(adopted)
    # the adopted checks carry the schema's defaults, as a study's stored checks do
    assert adopted["experiment"]["verdict"]["checks"][0] | {"kind": "beats", "key": True, "versus": [], "pairs": []} \
        == adopted["experiment"]["verdict"]["checks"][0]

    # tuning on another validation score re-judges a grid study too
    grid_study = {**adopted, "experiment": {**adopted["experiment"], "grid": {"optimizer.lr": [0.1, 1.0]}, "tune_on": "val_loss"}}
    assert judge.rule_changed(grid_study) and not judge.rule_changed({**grid_study, "experiment": {
        **grid_study["experiment"], "tune_on": "val_acc"}})

    study["experiment"]["variants"]["tanh"] = {}
    (tmp_path / "study.json").write_text(json.dumps(study))
    with pytest.raises(UserError, match="variants changed since these runs"):
        analysis.adopt_current_rule(tmp_path)


@pytest.mark.parametrize("protocol,grid", [("lecture", {}), ("modern", {"optimizer.lr": [0.03, 0.1, 0.3, 1.0, 3.0]})])
def test_a_rule_is_adopted_by_a_study_whose_protocol_names_its_own_grid(tmp_path, protocol, grid):
    # depth_sigmoid tunes the rate under the modern protocol only (protocol_grids): each study's grid
    # is the one its protocol got, not the file's base grid
    import json

    from experiments import analysis

    study = {"experiment": {**judge.current_rule("depth_sigmoid"), "name": "depth_sigmoid",
                            "variants": {"3_layers": {"model": {"depth": 3}}, "9_layers": {"model": {"depth": 9}}},
                            "grid": grid, "probes": []},
             "protocol": protocol, "seeds": [0]}
    (tmp_path / "study.json").write_text(json.dumps(study))
    analysis.adopt_current_rule(tmp_path)
    assert json.loads((tmp_path / "study.json").read_text())["experiment"]["grid"] == grid


def test_seeds_added_after_the_engines_verdict_are_flagged(repo):
    import json

    def results(seeds, verdict):
        return {"results/x/lecture/study.json": json.dumps({"seeds": seeds}),
                "results/x/lecture/verdict.json": json.dumps(verdict)}

    commit(repo, results([0, 1, 2], {"verdict": "partly"}), "judged by the old rule: not the engine's")
    assert revisions.seeds_changed(repo, "results/x/lecture", [0, 1, 2, 3, 4]) is None
    commit(repo, results([0, 1, 2, 3, 4], {"verdict": "not reproduced", "checks": []}), "the engine's verdict")
    # re-analysed under a changed rule: the seeds are added after this verdict, so the line names it
    judged_at = commit(repo, results([0, 1, 2, 3, 4], {"verdict": "inconclusive", "checks": [1]}), "re-analysed")
    assert revisions.seeds_changed(repo, "results/x/lecture", [0, 1, 2, 3, 4]) is None
    # a sweep committed half-way judged nothing: not the verdict the added seeds followed
    commit(repo, results([0, 1, 2, 3, 4, 5], {"verdict": "incomplete", "checks": []}), "a sweep half-way")
    added_at = commit(repo, results([0, 1, 2, 3, 4, 5, 6, 7], {"verdict": "reproduced", "checks": []}), "seeds added")
    commit(repo, results([0, 1, 2, 3, 4, 5, 6, 7], {"verdict": "reproduced", "checks": [2]}), "re-analysed again")
    line = revisions.seeds_changed(repo, "results/x/lecture", [0, 1, 2, 3, 4, 5, 6, 7])

    def day(commit_):
        return subprocess.run(["git", "log", "-1", "--format=%cs", commit_], cwd=repo, capture_output=True, text=True).stdout.strip()

    assert line.startswith(f"{day(added_at)}, commit {added_at[:7]}: seeds 0, 1, 2, 3, 4, 5, 6, 7 (n = 8) replaced seeds "
                           f"0, 1, 2, 3, 4 (n = 5), on which the verdict engine's last verdict was **inconclusive** "
                           f"({day(judged_at)}, commit {judged_at[:7]}). "), line
    assert "second look" in line
    assert revisions.seeds_changed(repo, "results/y/lecture", [0]) is None  # no history: nothing to say


def test_change_lines_from_three_sources_are_listed_oldest_first(repo):
    made = []
    for when in ("2026-11-20T10:00:00", "2026-11-22T10:00:00"):
        (repo / "f").write_text(when)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", when], cwd=repo, check=True,
                       env={**os.environ, "GIT_COMMITTER_DATE": f"{when}+00:00", "GIT_AUTHOR_DATE": f"{when}+00:00"})
        made.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip())
    newer = f"- 2026-11-22, commit {made[1][:7]}: a revision"
    older = f"- Lecture protocol, 2026-11-20, commit {made[0][:7]}: seeds added"
    by_hand = "- 2026-11-21, commit 0000000: recorded by hand, a commit git does not know"
    unavailable = "- *git history unavailable: revisions after results existed cannot be checked here.*"
    assert revisions.in_time_order(repo, [newer, by_hand, older, unavailable]) == [unavailable, older, by_hand, newer]


def test_a_fresh_clone_re_judges_a_study_from_its_seeds_table_as_from_its_runs(tmp_path):
    """Run folders are not committed; seeds.csv (every run's final numbers) is, so a changed rule can
    judge a study again without a re-run: the same tuning, table and checks as from the runs."""
    import json
    import shutil

    from experiments import analysis, store
    from experiments.errors import UserError

    file_rule = judge.current_rule("relu_vs_sigmoid")
    study = {"experiment": {**file_rule, "name": "relu_vs_sigmoid", "lecture_ref": "the lecture",
                            "variants": {"sigmoid": {"model": {"activation": "sigmoid"}},
                                         "relu": {"model": {"activation": "relu"}}},
                            "grid": {"optimizer.lr": [0.03, 0.1, 0.3, 1.0, 3.0]}, "probes": [],  # the file's
                            # stored with an older rule: no margin on the key check
                            "verdict": {**file_rule["verdict"], "checks": [{"better": "relu", "worse": "sigmoid"}]}},
             "protocol": "modern", "seeds": [0, 1, 2, 3, 4], "overrides": ["name=relu_vs_sigmoid", "protocol=modern"],
             "grid_defaults": {"sigmoid": {"optimizer.lr": 0.1}, "relu": {"optimizer.lr": 0.1}}}
    folder = tmp_path / "relu_vs_sigmoid" / "modern"
    folder.mkdir(parents=True)
    (folder / store.STUDY_FILE).write_text(json.dumps(study))
    level = {"sigmoid": 0.11, "relu": 0.9}
    for lr, bonus in ((0.03, 0.0), (0.1, 0.03), (0.3, 0.01), (1.0, 0.0), (3.0, -0.01)):  # 0.1 best on validation
        for variant in level:
            for seed in range(5):
                value = level[variant] + bonus + 0.003 * seed + 1.2345678e-7 * (seed + 1)  # digits past %.6g
                rows = [{"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "train_acc": acc, "val_acc": acc - 0.001,
                         "test_acc": acc, "seconds": 2.0 * epoch, "epoch_seconds": 2.0 * epoch}
                        for epoch, acc in ((0, 0.1), (1, value))]
                path = store.run_dir(folder, f"{variant}_lr{lr}", seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                store.commit_run(store.temp_dir_for(path), path, rows, {"variant": f"{variant}_lr{lr}", "seed": seed,
                                                                        "status": "complete", "key": "k", "seconds": 4.0})
    from_runs = analysis.analyse(folder, current_rule=True)[1]
    files = {name: (folder / name).read_text() for name in ("summary.csv", "summary.md", "grid.md", "verdict.json")}
    assert len(__import__("pandas").read_csv(folder / "seeds.csv")) == 50  # every grid point's run
    assert from_runs["checks"][0]["margin"] == 0.1  # the file's rule, adopted
    shutil.rmtree(folder / "runs")
    from_seeds = analysis.analyse(folder, current_rule=True)[1]
    assert from_seeds == from_runs
    assert {name: (folder / name).read_text() for name in files} == files
    # a seeds.csv without a column the rule checks is refused, and the stored rule stays with its verdict
    (folder / store.STUDY_FILE).write_text(json.dumps(study))
    seeds = __import__("pandas").read_csv(folder / "seeds.csv")
    seeds.drop(columns=["test_acc"]).to_csv(folder / "seeds.csv", index=False)
    with pytest.raises(UserError, match="seeds.csv lacks test_acc"):
        analysis.analyse(folder, current_rule=True)
    assert json.loads((folder / store.STUDY_FILE).read_text()) == study
    (folder / "seeds.csv").unlink()
    with pytest.raises(UserError, match="no finished run of this study in runs/ .* nor a seeds.csv"):
        analysis.analyse(folder, current_rule=True)


def test_a_rule_is_adopted_where_a_variant_names_a_setting(tmp_path):
    """minibatch_vs_fullbatch's full batch is `batch_size: ${data.train_size}`: stored resolved, it is
    compared with the file resolved by the settings the runs had."""
    import json

    from experiments import analysis

    variants = {"minibatch_100": {"train": {"batch_size": 100}}, "full_batch": {"train": {"batch_size": 10000}},
                "minibatch_200_updates": {"train": {"batch_size": 100, "max_updates": 200}},
                "full_batch_200_updates": {"train": {"batch_size": 10000, "epochs": 200, "eval_every": 10}}}
    study = {"experiment": {**judge.current_rule("minibatch_vs_fullbatch"), "name": "minibatch_vs_fullbatch",
                            "variants": variants, "grid": {}, "probes": []},
             "protocol": "lecture", "seeds": [0], "settings": {"minibatch_100": {"data": {"train_size": 10000}}}}
    (tmp_path / "study.json").write_text(json.dumps(study))
    assert analysis.current_rule_study(tmp_path)["experiment"]["variants"] == variants
