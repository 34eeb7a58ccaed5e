import json

import numpy as np
import pandas as pd
import pytest

from experiments import analysis, judge, metrics, store, tables
from helpers import make_runs, toy_study, write_store

STUDY = toy_study()

@pytest.mark.parametrize("finals,protocol,verdict", [
    ({"a": [0.11, 0.12, 0.10, 0.11, 0.11], "b": [0.95, 0.96, 0.97, 0.96, 0.96]}, "lecture", "reproduced"),
    # right direction, but b is far from the lecture's 0.96: the size check fails
    ({"a": [0.11, 0.12, 0.10, 0.11, 0.11], "b": [0.60, 0.62, 0.61, 0.61, 0.61]}, "lecture", "partly"),
    # ... which only the lecture protocol is held to
    ({"a": [0.11, 0.12, 0.10, 0.11, 0.11], "b": [0.60, 0.62, 0.61, 0.61, 0.61]}, "modern", "reproduced"),
    # ... and only as the experiment file sets it: a run with its own settings is not the lecture's
    ({"a": [0.11, 0.12, 0.10, 0.11, 0.11], "b": [0.60, 0.62, 0.61, 0.61, 0.61]}, "lecture model.width=100", "reproduced"),
    ({"a": [0.50, 0.90, 0.10, 0.2, 0.9], "b": [0.60, 0.62, 0.61, 0.61, 0.6]}, "modern", "inconclusive"),
    ({"a": [0.96, 0.95, 0.97, 0.96, 0.96], "b": [0.11, 0.12, 0.10, 0.11, 0.11]}, "modern", "not reproduced"),
    ({"a": [0.11, 0.12], "b": [0.95, 0.96, 0.97, 0.96, 0.96]}, "lecture", "incomplete"),
])
def test_verdict_follows_the_rule(finals, protocol, verdict):
    runs = make_runs(finals)
    finals = metrics.per_run(runs)
    protocol, *overrides = protocol.split()
    # the overrides a command line gives besides the experiment and where its results go
    study = {**STUDY, "protocol": protocol, "overrides": ["name=toy", f"protocol={protocol}", "device=cpu", *overrides]}
    assert judge.decide(metrics.summarise(finals, study), finals, study)["verdict"] == verdict


def test_a_study_page_says_whether_its_runs_were_compared_with_the_lectures_numbers():
    assert tables.lecture_line(STUDY) == "Lecture: made up"
    assert "never compared with these runs" in tables.lecture_line({**STUDY, "protocol": "modern"})
    ad_hoc = {**STUDY, "overrides": ["name=toy", "++model.width=100", "seeds=[0]", "device=cpu"]}
    assert tables.lecture_line(ad_hoc) == ("Lecture (its numbers are the lecture protocol's as the experiment file sets "
                                           "it; these runs were given model.width=100 on the command line, so they are "
                                           "not compared with them): made up")


@pytest.mark.parametrize("override,ad_hoc", [
    ("model.width=100", True), ("+experiment.variants.c.model.depth=5", True), ("experiment.grid.optimizer.lr=[0.1]", True),
    # a whole group or node replaced, a grid removed, another score to tune on
    ("optimizer=adam", True), ("experiment.grid={}", True), ("~experiment.grid", True), ("experiment.tune_on=val_loss", True),
    # how a run is computed, evaluated or judged, not what it trains: the lecture's numbers still apply
    ("train.cuda_graph=true", False), ("train.vectorise=false", False), ("train.eval_every=5", False),
    ("experiment.verdict.tolerance=0.1", False), ("device=cuda", False), ("protocol=lecture", False)])
def test_an_ad_hoc_study_is_one_whose_runs_a_command_line_setting_changed(override, ad_hoc):
    study = {**STUDY, "overrides": ["name=toy", override]}
    assert store.setting_overrides(study) == ([override] if ad_hoc else [])
    assert (len(judge.checks_of(study["experiment"]["verdict"], study)) == 1) == ad_hoc  # no size checks


def test_a_runs_clipped_share_weighs_each_epoch_by_its_updates():
    # an update cap cuts the last epoch to 5 of 10 updates: all 10 of the first clipped, none of the
    # last 5, so 10 of 15 (an unweighted mean of the epochs' shares would say a half)
    runs = pd.DataFrame({"variant": "a", "seed": 0, "epoch": [0, 1, 2], "updates": [0, 10, 15],
                         "clipped_share": [np.nan, 1.0, 0.0], "train_loss": [2.3, 1.0, 0.9], "train_acc": 0.5,
                         "test_acc": 0.5, "test_loss": 1.0, "epoch_seconds": 1.0, "seconds": 1.0})
    assert metrics.per_run(runs)["clipped_share"].iloc[0] == pytest.approx(10 / 15)


def test_summary_numbers():
    runs = make_runs({"a": [0.1, 0.2, 0.3], "b": [0.9, 0.9, 0.9]})
    summary = metrics.summarise(metrics.per_run(runs), STUDY).set_index("variant")
    assert summary.loc["a", "mean"] == pytest.approx(0.2)
    assert summary.loc["a", "std"] == pytest.approx(0.1)
    assert summary.loc["a", "ci95"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2)
    assert summary.loc["b", "ci95"] == 0
    assert summary.loc["a", "n"] == 3 and summary.loc["a", "grad_ratio_init"] == pytest.approx(0.01)


def test_the_summary_file_keeps_every_digit_of_a_parameter_count(tmp_path):
    runs = make_runs({"a": [0.1, 0.2], "b": [0.9, 0.9]}).assign(parameters=1_199_882)
    summary = metrics.summarise(metrics.per_run(runs), STUDY)
    summary.to_csv(tmp_path / "summary.csv", index=False, float_format="%.6g")  # as analysis writes it
    assert pd.read_csv(tmp_path / "summary.csv")["parameters"].tolist() == [1_199_882, 1_199_882]


def test_gradient_ratio_uses_each_runs_own_last_layer():
    runs = make_runs({"a": [0.1, 0.2, 0.3], "b": [0.9, 0.9, 0.9]})
    runs["grad_norm_3"] = runs["variant"].map({"a": 0.001, "b": float("nan")})  # a is one layer deeper
    summary = metrics.summarise(metrics.per_run(runs), STUDY).set_index("variant")
    assert summary.loc["a", "grad_ratio_init"] == pytest.approx(10.0)
    assert summary.loc["b", "grad_ratio_init"] == pytest.approx(0.01)


FIVE = {"a": [0.11, 0.12, 0.10, 0.11, 0.11], "b": [0.95, 0.96, 0.97, 0.96, 0.96]}


def test_analysis_from_store_is_deterministic_and_ignores_unfinished_runs(tmp_path):
    study_dir = tmp_path / "toy" / "lecture"
    write_store(study_dir, FIVE)
    # a half-written run (no meta.json) and a run marked running must not count
    (study_dir / "runs" / "b" / ".seed8.tmp-1").mkdir()
    (study_dir / "runs" / "b" / "seed9").mkdir()
    (study_dir / "runs" / "b" / "seed9" / "meta.json").write_text(json.dumps({"status": "running", "variant": "b", "seed": 9}))
    _, verdict = analysis.analyse(study_dir)
    assert verdict["verdict"] == "reproduced"
    first = {name: (study_dir / name).read_bytes() for name in analysis.OUTPUTS}
    analysis.analyse(study_dir)
    assert first == {name: (study_dir / name).read_bytes() for name in analysis.OUTPUTS}
    markdown = first["summary.md"].decode()
    assert "| b | 0.96 | 0.960 ± 0.009 |" in markdown and "**Verdict: reproduced**" in markdown


@pytest.mark.parametrize("runs_in_group", [1, 3])
def test_seconds_per_run_are_each_runs_share_of_a_vectorised_group(tmp_path, runs_in_group):
    study_dir = tmp_path / "toy" / "lecture"
    write_store(study_dir, FIVE, runs_in_group)
    summary, _ = analysis.analyse(study_dir)  # make_runs logs 2 s for its one epoch
    assert summary.set_index("variant")["seconds_per_run"].tolist() == [2.0 / runs_in_group] * 2
    assert summary.set_index("variant")["seconds_per_epoch"].tolist() == [2.0 / runs_in_group] * 2


def test_runs_stored_under_the_old_name_of_the_group_size_keep_their_share(tmp_path):
    study_dir = tmp_path / "toy" / "lecture"
    write_store(study_dir, FIVE, 3)
    for path in study_dir.glob("runs/*/seed*/meta.json"):  # as runs were stored before 2026-11-25
        meta = json.loads(path.read_text())
        meta["vectorised_seeds"] = meta.pop("runs_in_group")
        path.write_text(json.dumps(meta))
    summary, _ = analysis.analyse(study_dir)
    assert summary.set_index("variant")["seconds_per_run"].tolist() == [2.0 / 3] * 2


def test_missing_seed_is_reported_incomplete(tmp_path):
    study_dir = tmp_path / "toy" / "lecture"
    write_store(study_dir, FIVE)
    import shutil
    shutil.rmtree(store.run_dir(study_dir, "a", 1))
    _, verdict = analysis.analyse(study_dir)
    assert (verdict["verdict"], verdict["reason"]) == ("incomplete", "missing runs (a: 4 of 5 seeds)")
    assert verdict["runs"] == 9


def curves(by_variant: dict[str, list[float]], metric: str = "train_acc") -> pd.DataFrame:
    """Two seeds per variant, the given value of `metric` at epochs 0, 1, 2, ..."""
    return pd.DataFrame([{"variant": variant, "seed": seed, "epoch": epoch, metric: value}
                         for variant, values in by_variant.items() for seed in (0, 1)
                         for epoch, value in enumerate(values)])


@pytest.mark.parametrize("a,b,caveat", [
    ([0.1, 0.80, 0.90, 0.93, 0.96], [0.1, 0.95, 0.98, 0.99, 0.99], True),  # b's lead: 0.08 at epoch 2, 0.03 at 4
    ([0.1, 0.80, 0.90, 0.93, 0.97], [0.1, 0.95, 0.98, 0.99, 0.99], True),
    ([0.1, 0.80, 0.90, 0.92, 0.94], [0.1, 0.95, 0.98, 0.99, 0.99], False),  # 0.08 -> 0.05: still more than half
    ([0.1, 0.80, 0.90, 0.95, 0.99], [0.1, 0.95, 0.98, 0.99, 0.99], False),  # the gap closed: the check fails instead
])
def test_budget_caveat_when_a_lead_is_closing(a, b, caveat):
    study = {"experiment": {**STUDY["experiment"], "verdict": {
        "metric": "train_error", "checks": [{"better": "b", "worse": "a", "lower_is_better": True}]}}}
    notes = judge.closing_gaps(curves({"a": a, "b": b}), study)
    assert bool(notes) == caveat
    if caveat:
        assert notes[0].startswith("b's lead over a in train_error shrank from 0.08 at epoch 2")
        assert "*Budget caveat*" in "\n".join(tables.verdict_lines({"verdict": "partly", "reason": "r", "closing_gaps": notes}))


def test_grid_edge_caveat_shown_where_computed_and_said_missing_where_not():
    checks = [{"text": "a vs b", "key": True}]
    def shown(verdict, grid):
        return "\n".join(tables.verdict_lines({"verdict": "partly", "headline": "h", "checks": checks, **verdict}, grid))

    edge = "a vs b on m holds, and b does best at an end of its grid (lr=1)"
    assert "*Grid-edge caveat* (computed from the grid): a vs b on m holds, and b" in shown(
        {"grid_edges": [{"key": True, "text": edge}]}, True)
    assert "(computed from the grid): (not a key check) a vs b" in shown({"grid_edges": [{"key": False, "text": edge}]}, True)
    assert "Grid-edge" not in shown({"grid_edges": []}, True)  # computed: no decision an edge may have made
    assert "*Grid-edge caveat*: not computed" in shown({}, True)  # judged before the caveat existed
    assert "Grid-edge" not in shown({}, False)  # no grid, nothing to say


@pytest.mark.parametrize("b,margin,caveat", [
    ([0.1, 0.80, 0.90, 0.93, 0.96], 0.01, True),   # b trails: 0.08 at epoch 2, 0.03 at 4, beyond the margin
    ([0.1, 0.80, 0.90, 0.93, 0.96], 0.05, False),  # the deficit left is within the margin: nothing to close
    ([0.1, 0.80, 0.90, 0.92, 0.94], 0.01, False),  # 0.08 -> 0.05: still more than half
    ([0.1, 0.99, 0.99, 0.99, 0.99], 0.01, False),  # b leads: no deficit
])
def test_budget_caveat_when_a_not_worse_deficit_beyond_its_margin_is_closing(b, margin, caveat):
    a = [0.1, 0.95, 0.98, 0.99, 0.99]
    for metric, lower_is_better in (("train_acc", False), ("train_error", True)):  # the same deficit, read either way
        study = {"experiment": {**STUDY["experiment"], "verdict": {"metric": metric, "checks": [
            {"better": "b", "worse": "a", "kind": "not_worse", "margin": margin, "lower_is_better": lower_is_better}]}}}
        notes = judge.closing_gaps(curves({"a": a, "b": b}), study)
        assert bool(notes) == caveat
        if caveat:
            assert notes[0] == (f"b's deficit to a in {metric} shrank from 0.08 at epoch 2 to 0.03 at epoch 4, still "
                                "above the margin 0.01: a longer budget may close it")


def test_budget_notes_are_kept_without_the_curves_only_for_checks_both_rules_make_alike():
    """Judged again from seeds.csv the curves are gone: a note stays only where the new rule makes the
    same check (a 'not worse' check with the same margin, which decides whether there is a note)."""
    def study(*checks):
        return {"experiment": {**STUDY["experiment"], "verdict": {"metric": "train_acc", "checks": list(checks)}}}

    lead = {"better": "b", "worse": "a"}
    deficit = {"better": "c", "worse": "a", "kind": "not_worse", "margin": 0.01}
    notes = ["b's lead over a in train_acc shrank from 0.08 at epoch 2 to 0.03 at epoch 4: a longer budget may close it",
             "c's deficit to a in train_acc shrank from 0.08 at epoch 2 to 0.03 at epoch 4, still above the margin 0.01: "
             "a longer budget may close it"]
    stored, runs = study(lead, deficit), {"b": "b_lr0.1", "a": "a_lr0.1"}

    def kept(adopted, runs_now=runs):
        return judge.kept_gap_notes(notes, stored, adopted, runs, runs_now)

    assert kept(stored) == notes
    assert kept(study(lead, {**deficit, "margin": 0.05})) == notes[:1]
    assert kept(study({**lead, "margin": 0.02}, deficit)) == notes  # no margin in a lead's note
    assert kept(study({**lead, "lower_is_better": True}, deficit)) == notes[1:]
    assert kept(study({"better": "d", "worse": "a"})) == []
    # tuned again on another score, b took another grid point: its old curves say nothing of the new one
    assert kept(stored, {**runs, "b": "b_lr0.3"}) == notes[1:]


def test_no_budget_caveat_for_metrics_measured_once():
    closing = curves({"a": [0.1, 0.80, 0.90, 0.93, 0.95], "b": [0.1, 0.95, 0.98, 0.99, 0.99]})
    study = {"experiment": {**STUDY["experiment"], "verdict": {
        "metric": "train_acc", "checks": [{"better": "b", "worse": "a", "metric": "mean_train_loss"}]}}}
    assert judge.closing_gaps(closing, study) == []


def test_no_budget_caveat_on_training_accuracy_measured_in_eval_mode_at_the_end_only():
    # dropout's check reads the trained model in eval mode (train_eval_acc, last epoch only); the
    # per-epoch train_acc ran with dropout on: another quantity, whose lead may shrink while the checked one is 0
    closing = curves({"a": [0.1, 0.80, 0.90, 0.93, 0.96], "b": [0.1, 0.95, 0.98, 0.99, 0.99]})
    study = {"experiment": {**STUDY["experiment"], "verdict": {
        "metric": "train_error", "checks": [{"better": "b", "worse": "a", "lower_is_better": True}]}}}
    assert judge.closing_gaps(closing, study)
    assert judge.closing_gaps(closing.assign(train_eval_acc=1.0), study) == []


def test_the_analysis_and_report_modules_run_as_commands(tmp_path):
    """`python -m experiments.analysis <study>` and `python -m experiments.report <results>`, as the README gives them."""
    import subprocess
    import sys

    study = tmp_path / "results" / "toy" / "lecture"
    write_store(study, {"a": [0.1, 0.12, 0.11, 0.1, 0.11], "b": [0.9, 0.91, 0.92, 0.9, 0.91]})
    done = subprocess.run([sys.executable, "-m", "experiments.analysis", str(study)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "**Verdict: " in done.stdout, done.stderr[-500:]
    assert (study / "summary.md").read_text() in done.stdout
    missing = subprocess.run([sys.executable, "-m", "experiments.analysis", str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
    report = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "results")], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0 and (tmp_path / "results" / "REPORT.md").exists(), report.stderr[-500:]
    from experiments import report as report_module
    for module in (analysis, report_module):  # a newcomer's --help is usage, not a missing folder named --help
        assert module.main(["--help"]) == 0


def test_the_checked_metrics_figure_leaves_out_a_non_finite_seed_and_says_so(tmp_path, monkeypatch):
    import warnings

    from experiments import plots

    runs = make_runs({"a": [0.1, 0.2, 0.3], "b": [0.9, 0.9, 0.9]})
    runs.loc[(runs["variant"] == "a") & (runs["seed"] == 0), "test_acc"] = float("-inf")
    shown = []
    monkeypatch.setattr(plots, "finish", lambda fig, axes, title, **kw: shown.append(
        [tick.get_text() for tick in axes[0].get_xticklabels()]) or b"png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a bar of height -inf warns
        plots.plot_checked_metrics(runs, STUDY | {"experiment": {**STUDY["experiment"],
                                                                  "verdict": {"metric": "test_acc", "checks": [
                                                                      {"better": "b", "worse": "a", "metric": ""}]}}},
                                   tmp_path)
    assert shown == [["a (1 not finite)", "b"]]


def test_the_checked_metrics_figure_of_a_grid_study_shows_every_variant_a_check_names(tmp_path, monkeypatch):
    from experiments import plots

    runs = make_runs({name: [0.5, 0.6] for name in ("a_tuned", "b_tuned", "c_tuned", "d_tuned", "e_tuned")})
    shown = []
    monkeypatch.setattr(plots, "finish", lambda fig, axes, title, **kw: shown.append(
        [tick.get_text() for tick in axes[0].get_xticklabels()]) or b"png")
    experiment = {**STUDY["experiment"], "variants": {name: {} for name in ("a_tuned", "b_tuned", "c_tuned", "d_tuned", "e_tuned")},
                  "grid": {"optimizer.lr": [0.1, 1.0]},
                  "verdict": {"metric": "test_acc", "checks": [{"better": "a", "worse": "b", "metric": "", "pairs": [["c", "d"]]}]}}
    plots.plot_checked_metrics(runs, STUDY | {"experiment": experiment}, tmp_path)
    assert shown == [["a_tuned", "b_tuned", "c_tuned", "d_tuned"]]  # e is named by no check


def test_the_checked_metrics_figure_draws_a_checks_bar_with_its_margin(tmp_path, monkeypatch):
    from experiments import plots

    runs = make_runs({"a": [0.1, 0.2, 0.3], "b": [0.9, 0.9, 0.9]})
    lines = []
    monkeypatch.setattr(plots, "finish", lambda fig, axes, title, **kw: lines.extend(
        (line.get_label(), line.get_ydata()[0]) for line in axes[0].get_lines() if line.get_label().startswith("b vs")) or b"png")
    check = {"better": "b", "worse": None, "metric": "", "key": True, "kind": "beats", "margin": 0.002,
             "lower_is_better": False}
    checks = [{**check, "value": 0.5}, {**check, "value": 0.2, "kind": "not_worse", "margin": 0.02, "lower_is_better": True,
                                        "key": False}]
    plots.plot_checked_metrics(runs, STUDY | {"experiment": {**STUDY["experiment"], "verdict": {"metric": "test_acc",
                                                                                                 "checks": checks}}}, tmp_path)
    assert lines == [("b vs 0.5 (key check): bar at 0.502", pytest.approx(0.502)),
                     ("b vs 0.2 (side check): bar at 0.22", pytest.approx(0.22))]


def test_the_comparison_table_leaves_out_columns_no_variant_has():
    from experiments.tables import table_markdown

    row = {"variant": "a", "lecture": float("nan"), "mean": -2.0, "ci95": 0.1, "min": -2.1, "max": -1.9, "n": 5,
           "n_expected": 5, "n_diverged": 0, "train_acc": float("nan"), "test_acc": float("nan"), "parameters": 13,
           "updates": 3000, "grad_ratio_init": 0.5, "grad_ratio_train": 0.4, "seconds_per_epoch": 0.01, "seconds_per_run": 3.0}
    regression = table_markdown(pd.DataFrame([row]), "log10_test_loss")[0]
    assert "train_acc" not in regression and "test_acc" not in regression and "parameters" in regression
    classification = table_markdown(pd.DataFrame([row | {"train_acc": 0.9, "test_acc": 0.8}]), "log10_test_loss")[0]
    assert "| train_acc | test_acc |" in classification


def test_a_table_of_means_all_below_a_hundredth_shows_two_significant_digits():
    from experiments.tables import metric_digits, table_markdown

    row = {"variant": "a", "lecture": float("nan"), "mean": 0.0034, "ci95": 0.002, "min": 0.0012, "max": 0.0051, "n": 5,
           "n_expected": 5, "n_diverged": 0, "train_acc": 0.9966, "test_acc": 0.97, "parameters": 13, "updates": 3000,
           "grad_ratio_init": 0.5, "grad_ratio_train": 0.4, "seconds_per_epoch": 0.01, "seconds_per_run": 3.0}
    table = "\n".join(table_markdown(pd.DataFrame([row, row | {"variant": "b", "mean": 0.0005, "ci95": 0.0003}]), "train_error"))
    assert "| 0.0034 ± 0.0020 | 0.0012 – 0.0051 |" in table and "| 0.0005 ± 0.0003 |" in table
    assert metric_digits([0.26, 0.0005]) == 3 and metric_digits([-3.1]) == 3 and metric_digits([0.0, float("nan")]) == 3
    assert metric_digits([2e-05]) == 6  # at most 6: 0.000020


def test_summary_md_shows_the_numbers_of_summary_csv_as_the_report_does(tmp_path):
    study_dir = tmp_path / "toy" / "lecture"
    float32_accuracy = float(np.float32(0.1135))  # 0.11349999..., 0.1135 in the CSV: they round apart
    write_store(study_dir, {"a": [float32_accuracy] * 5, "b": [1.0] * 5})  # b: a column of 1.0s reads back as ints
    analysis.analyse(study_dir)
    table = tables.table_markdown(pd.read_csv(study_dir / "summary.csv"), "test_acc")
    assert "\n".join(table) in (study_dir / "summary.md").read_text()
    assert "| 0.114 ± 0.000 | 0.114 – 0.114 |" in (study_dir / "summary.md").read_text()
    assert "| 1.000 ± 0.000 | 1.000 – 1.000 |" in (study_dir / "summary.md").read_text()


def test_summary_md_heading_names_the_settings_a_study_changed_from_its_protocol(tmp_path):
    """A quick run with `train.epochs=1` must not be titled as the lecture protocol's study."""
    study_dir = tmp_path / "toy" / "lecture"
    study = {**toy_study(), "lecture_settings": {"train": {"epochs": 20}},
             "settings": {"a": {"train": {"epochs": 1}}, "b": {"train": {"epochs": 1}}}}
    write_store(study_dir, FIVE, study=study)
    analysis.analyse(study_dir)
    assert "(lecture protocol, changed: train.epochs=1)\n" in (study_dir / "summary.md").read_text()


@pytest.mark.parametrize("protocol", ["lecture", "modern"])
def test_the_lecture_line_says_whether_its_numbers_are_compared(tmp_path, protocol):
    study_dir = tmp_path / "toy" / protocol
    write_store(study_dir, FIVE, study=toy_study(protocol=protocol))
    analysis.analyse(study_dir)
    shown = (study_dir / "summary.md").read_text()
    assert ("never compared with these runs" in shown) == (protocol == "modern")
    assert tables.TIMING_NOTE in shown  # timings of runs that shared the cores are slower: said under every table
