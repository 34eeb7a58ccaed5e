"""The report, built from a small hand-made results store."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments import analysis, caveats, judge, report, revisions, settings, store
from experiments.errors import UserError
from experiments.config import CONFIG_DIR, experiment_names
from helpers import toy_study, write_store


def study_for(name: str, variants: tuple[str, str], lecture: tuple[float, float]) -> dict:
    spec = toy_study()
    spec["experiment"] |= {**judge.current_rule(name), "name": name, "variants": {v: {} for v in variants}}
    assert spec["experiment"]["lecture"] == dict(zip(variants, lecture))
    return spec


def make_results(tmp_path, monkeypatch):
    results = tmp_path / "results"
    # relu_vs_sigmoid: complete, reproduced; mse_vs_ce: one seed missing
    write_store(results / "relu_vs_sigmoid" / "lecture", {"sigmoid": [0.11, 0.12, 0.10, 0.11, 0.11],
                                                          "relu": [0.95, 0.96, 0.97, 0.96, 0.96]},
                study=study_for("relu_vs_sigmoid", ("sigmoid", "relu"), (0.11, 0.96)))
    write_store(results / "mse_vs_ce" / "lecture", {"mse": [0.11, 0.12, 0.10, 0.11, 0.11],
                                                    "cross_entropy": [0.83, 0.84, 0.85, 0.84, 0.84]},
                study=study_for("mse_vs_ce", ("mse", "cross_entropy"), (0.11, 0.84)))
    shutil.rmtree(store.run_dir(results / "mse_vs_ce" / "lecture", "mse", 2))
    for study in results.glob("*/lecture"):
        analysis.analyse(study)
        shutil.rmtree(study / "runs")  # the report must not need the (uncommitted) runs
    # a study judged by the rule before the verdict engine (no checks in its verdict.json)
    old = results / "depth_sigmoid" / "modern"
    shutil.copytree(results / "relu_vs_sigmoid" / "lecture", old)
    verdict = json.loads((old / "verdict.json").read_text())
    (old / "verdict.json").write_text(json.dumps({k: v for k, v in verdict.items() if k not in ("checks", "headline")}))
    return results


def test_report_has_every_claim_the_right_verdicts_and_is_deterministic(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    assert report.main([str(results)]) == 0
    first = (results / "REPORT.md").read_text()
    report.main([str(results)])
    assert (results / "REPORT.md").read_text() == first

    for name in experiment_names():
        assert f"### {name}" in first
    # one line per claim: the headline pair, then each protocol's verdict
    assert ("| [relu_vs_sigmoid](#relu_vs_sigmoid) | sigmoid 0.11 · relu 0.96 | test_acc: relu 0.960 ± 0.009 vs "
            "sigmoid 0.110 ± 0.009 (needs an advantage above 0.1) | **reproduced** (n = 5) | not run |") in first
    assert first.count("\n| [relu_vs_sigmoid](#relu_vs_sigmoid) |") == 1  # one summary row
    assert "| [mse_vs_ce](#mse_vs_ce) | mse 0.11 · cross_entropy 0.84 |" in first
    assert "**incomplete** (n = 4) |" in first and "missing runs (mse: 4 of 5 seeds)" in first
    assert "| [depth_sigmoid](#depth_sigmoid) | 3_layers 0.84 · 9_layers 0.11 | – | not run | **pending re-run** (n = 5) |" in first
    assert "judged by the previous rule" in first
    # the study's own page says so too, made again from its committed files
    page = (results / "depth_sigmoid" / "modern" / "summary.md").read_text()
    assert "**Verdict: pending re-run** — these runs were judged by the previous rule" in page
    assert (results / "relu_vs_sigmoid" / "lecture" / "summary.md").read_text().count("**Verdict: reproduced**") == 1
    assert "- relu vs sigmoid, test_acc (higher is better), n = 5/5: advantage +0.85" in first
    assert "## Changes to what every study shares" in first
    # a shared rule's change shows again in the section of each study whose checks it moved
    vgg = first[first.index("### vgg_3x3"):first.index("###", first.index("### vgg_3x3") + 4)]
    assert "commit efe327f, a rule every study shares (`configs/revisions.yaml`)" in vgg
    assert "efe327f" not in first[first.index("### relu_vs_sigmoid"):first.index("###", first.index("### relu_vs_sigmoid") + 4)]
    assert "**Modern protocol: not run** — `python -m experiments name=relu_vs_sigmoid protocol=modern`" in first
    assert "![relu_vs_sigmoid, lecture protocol: curves](relu_vs_sigmoid/lecture/curves.png)" in first
    assert "Reproduce: `python -m experiments name=relu_vs_sigmoid` — 10 runs" in first
    assert "Full reproduction: not recorded yet" in first
    assert "| `test_acc` | accuracy on the test set after the last epoch | [relu_vs_sigmoid](#relu_vs_sigmoid) |" in first
    # sections follow CLAIMS.md's order
    assert first.index("## B. Loss") < first.index("## C. Optimisation")
    # every claim of CLAIMS.md has a summary row; one without an experiment file is "not run"
    for named in yaml.safe_load((CONFIG_DIR / "claims.yaml").read_text()).values():
        for name in set(named) - set(experiment_names()):
            assert re.search(rf"^\| {name} \| – \| not covered yet: .* \| not run \| not run \|$", first, re.M), name
            assert f"### {name}\n\n**Not run:**" in first


def test_a_study_run_at_several_commits_is_pending_after_a_change_since_the_newest():
    # resnet_vs_plain's first lecture runs were made at two commits; its grid widened after both (acb94b5)
    outcome = report.load_outcome(report.REPO / "results" / "resnet_vs_plain" / "lecture")
    # runs made at the checked-out commit come after every change (whatever state the committed runs are in)
    outcome["verdict"]["git_commits"] = ["610e0fa024b1", revisions.git(report.REPO, "rev-parse", "HEAD").strip()]
    assert report.judged(outcome, "resnet_vs_plain")[0] != report.PENDING
    for commits in (["610e0fa024b1", "f4b8bef43be6"], ["unknown", "610e0fa024b1"]):  # the second: git cannot order them
        outcome["verdict"]["git_commits"] = commits
        shown, why = report.judged(outcome, "resnet_vs_plain")
        assert shown == report.PENDING and "`experiment.grid.optimizer.lr`" in why


def test_a_changed_rule_is_pending_re_analysis_only_where_the_per_run_table_can_re_judge_it(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    study_dir = results / "relu_vs_sigmoid" / "lecture"
    study = json.loads((study_dir / "study.json").read_text())
    # the stored rule checks another metric than the file does now: the file's test_acc check is new
    study["experiment"]["verdict"]["checks"] = [{"better": "relu", "worse": "sigmoid", "metric": "train_acc"}]
    (study_dir / "study.json").write_text(json.dumps(study))
    verdict = json.loads((study_dir / "verdict.json").read_text())  # as if its analysis had judged that rule
    (study_dir / "verdict.json").write_text(json.dumps({**verdict, "study_digest": store.study_digest(json.dumps(study))}))
    outcome = report.load_outcome(study_dir)
    assert report.judged(outcome, "relu_vs_sigmoid")[0] == report.PENDING_ANALYSIS  # seeds.csv has test_acc
    seeds = pd.read_csv(study_dir / store.SEEDS_FILE)
    seeds.drop(columns="test_acc").to_csv(study_dir / store.SEEDS_FILE, index=False)
    shown, why = report.judged(report.load_outcome(study_dir), "relu_vs_sigmoid")
    assert shown == report.PENDING and "seeds.csv lacks test_acc" in why
    (study_dir / store.SEEDS_FILE).unlink()
    assert report.judged(report.load_outcome(study_dir), "relu_vs_sigmoid")[0] == report.PENDING


def test_a_verdict_judged_with_checks_the_engine_no_longer_draws_is_pending_re_analysis(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    study_dir = results / "relu_vs_sigmoid" / "lecture"
    assert report.judged(report.load_outcome(study_dir), "relu_vs_sigmoid") == ("reproduced", "")
    # judged with the lecture's size checks, as before a command-line setting exempted a study from them
    study = json.loads((study_dir / "study.json").read_text())
    study["overrides"] = [*study.get("overrides", []), "model.width=100"]
    (study_dir / "study.json").write_text(json.dumps(study))
    verdict = json.loads((study_dir / "verdict.json").read_text())
    (study_dir / "verdict.json").write_text(json.dumps({**verdict, "study_digest": store.study_digest(json.dumps(study))}))
    shown, why = report.judged(report.load_outcome(study_dir), "relu_vs_sigmoid")
    assert shown == report.PENDING_ANALYSIS and "other checks than the verdict engine now draws" in why
    # judged afresh, the same study shows its verdict
    fresh = results / "relu_vs_sigmoid" / "lecture" / "model.width=100"
    write_store(fresh, {"sigmoid": [0.11, 0.12, 0.10, 0.11, 0.11], "relu": [0.95, 0.96, 0.97, 0.96, 0.96]}, study=study)
    analysis.analyse(fresh)
    assert report.judged(report.load_outcome(fresh), "relu_vs_sigmoid") == ("reproduced", "")


def test_caveats_show_under_their_protocol_with_numbers_from_the_committed_table(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    real = report.experiment_spec

    def with_caveats(name):
        spec = real(name)
        if name == "relu_vs_sigmoid":
            spec |= {"caveats": ["shared: relu {lecture:relu.test_acc}, modern {modern:relu.test_acc}"],
                     "protocol_caveats": {"lecture": ["sigmoid at {sigmoid.mean} ± {sigmoid.ci95}, {sigmoid.n} seeds"]}}
        return spec

    monkeypatch.setattr(report, "experiment_spec", with_caveats)
    text = report.build_report(results)
    section = text[text.index("### relu_vs_sigmoid"):text.index("\n### ", text.index("### relu_vs_sigmoid"))]
    lecture = section[section.index("#### Lecture protocol"):section.index("**Modern protocol: not run**")]
    assert "*Caveat* (stated with the study): sigmoid at 0.110 ± 0.009, 5 seeds" in lecture
    # the shared ones before either protocol's section, which a reader of one may not read past
    assert "Caveats (stated with the study; they apply to every protocol below):\n\n- shared: relu 0.960, modern (not run)" \
        in section[:section.index("#### Lecture protocol")]
    # a claim with no run at all shows no shared caveats (their numbers would all be missing)
    optimizers = text[text.index("### optimizers"):text.index("\n### ", text.index("### optimizers"))]
    assert "Caveats (stated with the study)" not in optimizers


def test_a_caveat_placeholder_is_filled_or_refused_in_one_line():
    summary = pd.DataFrame({"variant": ["a_tuned", "b"], "mean": [0.12345, 0.5], "ci95": [0.0041, 0.01], "parameters": [1199882, 10]})
    tables = {"lecture": summary, "modern": None}
    per_run = {"lecture": pd.DataFrame({"variant": ["a_lr0.1", "a_lr0.1", "b"], "status": "complete", "drop": [0.1, 0.2, 0.5]}),
               "modern": None}
    assert caveats.fill("{a_tuned.mean} ± {a_tuned.ci95}; {lecture:a_tuned.parameters}; {modern:b.mean}; {a_lr0.1.drop}",
                        "lecture", tables, per_run, {}) == "0.123 ± 0.004; 1,199,882; (not run); 0.150"
    assert caveats.fill("{b.drop}", "lecture", tables, {"lecture": None}, {}) == "(no seeds.csv)"
    assert caveats.fill("{a_lr0.1.drop:.2g} and {a_tuned.ci95:.2g}", "lecture", tables, per_run, {}) == "0.15 and 0.0041"
    # a grid study's tuned variant stands for the grid point it took
    assert caveats.fill("{a_tuned.drop}", "lecture", tables, per_run, {"lecture": {"a_tuned": "a_lr0.1"}}) == "0.150"
    with pytest.raises(UserError, match="unknown protocol 'lectur'"):
        caveats.fill("{lectur:b.mean}", None, tables, per_run, {})
    with pytest.raises(UserError, match="have no mean of 'c'"):
        caveats.fill("{c.mean}", "lecture", tables, per_run, {})
    # a study pending re-run may lack what its file now asks for (a widened grid's new point): no error
    assert caveats.fill("{c.mean}", "lecture", tables, per_run, {}, pending=frozenset({"lecture"})) == "(pending re-run)"
    assert caveats.fill("{a_tuned.mean}", "lecture", tables, per_run, {}, pending=frozenset({"lecture"})) == "0.123"
    caveats.check(["{lecture:dropout_0.5_tuned.train_acc}", "{lecture:r.drop}"], {"modern": ["{x.test_acc}"]},
                  ["lecture", "modern"], {"drop"})
    for shared, own, expected in [(["{a.test_acc}"], {}, "must name its protocol"),
                                  ([], {"lecture": ["{a.accuracy}"]}, "a caveat quotes a column of summary.csv"),
                                  ([], {"future": ["text"]}, "unknown protocol 'future'"),
                                  (["{nope:a.mean}"], {}, "unknown protocol 'nope'"),
                                  (["a {typo.mean"], {}, "a brace that is no placeholder")]:
        with pytest.raises(UserError, match=expected):
            caveats.check(shared, own, ["lecture", "modern"], {"drop"})


def test_the_committed_report_builds_with_every_caveat_number_filled():
    """Each placeholder of every experiment file names a variant and column its committed table has."""
    text = report.build_report(Path(__file__).resolve().parents[1] / "results")
    caveat_lines = [line for line in text.splitlines() if line.startswith(("*Caveat*", "- "))]
    assert not [line for line in caveat_lines if caveats.PLACEHOLDER.search(line) or "(not run)" in line
                or "(no seeds.csv)" in line]


def test_pending_reruns_are_the_studies_judged_by_the_previous_rule_and_reproduce_all_runs_just_those(tmp_path, monkeypatch):
    import importlib.util
    import subprocess
    from types import SimpleNamespace

    results = make_results(tmp_path, monkeypatch)
    assert report.pending_reruns(results) == [("depth_sigmoid", "modern")]
    spec = importlib.util.spec_from_file_location("reproduce_all", Path(__file__).resolve().parents[1] / "scripts" / "reproduce_all.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ran = []
    fake = SimpleNamespace(run=lambda command: ran.append(command) or subprocess.CompletedProcess(command, 0))
    monkeypatch.setattr(script, "subprocess", fake)  # the script's own name only: git still runs
    assert script.run_pending(results, ["device=cpu"]) == 0
    assert [command[1:] for command in ran] == [["-m", "experiments", "name=depth_sigmoid", "protocol=modern", "device=cpu"]]
    assert (results / "REPORT.md").exists()
    # a key the script sets itself is refused, not given twice (the entry point refuses a key given twice)
    for argv, key in ((["--pending", "protocol=modern"], "protocol"), (["force=false"], "force"), (["name=mse_vs_ce"], "name")):
        monkeypatch.setattr(script.sys, "argv", ["reproduce_all.py", *argv])
        assert script.main() == 2
    assert len(ran) == 1


def test_the_claims_list_is_claims_md(mnist_root):
    """configs/claims.yaml lists exactly the claim ids of ../shared/CLAIMS.md, in their sections."""
    claims_md = Path(mnist_root).resolve().parent / "CLAIMS.md"
    if not claims_md.exists():
        pytest.skip(f"no {claims_md} beside the data set")
    sections = re.split(r"^## ", claims_md.read_text(), flags=re.M)[1:]
    in_md = {section.splitlines()[0].strip(): set(re.findall(r"^\| (\w+) \| ", section, re.M)) - {"id"}
             for section in sections if re.match(r"[A-F]\. ", section)}
    listed = {section: set(named) for section, named in yaml.safe_load((CONFIG_DIR / "claims.yaml").read_text()).items()}
    assert listed == in_md and sum(map(len, listed.values())) == 24


def test_recorded_reproduction_time_is_shown(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    (results / report.REPRODUCTION_FILE).write_text(json.dumps(
        {"command": "python scripts/reproduce_all.py", "seconds": 600.0, "device": "cpu (x86_64, 2 threads)", "torch": "2.x"}))
    report.main([str(results)])
    text = (results / "REPORT.md").read_text()
    assert "took 10.0 min on cpu (x86_64, 2 threads) (torch 2.x). Which claims it covered was not recorded" in text

    # a claim added after the reproduction was recorded is named as not in its time
    names = experiment_names()
    (results / report.REPRODUCTION_FILE).write_text(json.dumps(
        {"command": "python scripts/reproduce_all.py", "seconds": 600.0, "experiments": names[:-1],
         "device": "cpu (x86_64, 2 threads)", "torch": "2.x"}))
    report.main([str(results)])
    assert f"(torch 2.x). It did not include {names[-1]} (added since)." in (results / "REPORT.md").read_text()
    (results / report.REPRODUCTION_FILE).write_text(json.dumps(
        {"command": "python scripts/reproduce_all.py", "seconds": 600.0, "experiments": names,
         "device": "cpu (x86_64, 2 threads)", "torch": "2.x"}))
    report.main([str(results)])
    assert "(torch 2.x).\n" in (results / "REPORT.md").read_text()


def test_list_names_every_experiment_with_its_last_verdict(tmp_path, monkeypatch):
    from experiments.__main__ import list_experiments

    results = make_results(tmp_path, monkeypatch)
    # a study run with overrides lies in a sub-folder named after them
    shutil.copytree(results / "relu_vs_sigmoid" / "lecture", results / "relu_vs_sigmoid" / "lecture" / "model.width=100",
                    ignore=shutil.ignore_patterns("model.width=100"))
    listing = list_experiments(results)
    assert all(name in listing for name in experiment_names())
    assert "lecture: reproduced (" in listing.split("relu_vs_sigmoid")[1].split("\n")[1]
    assert "lecture with model.width=100: reproduced (" in listing.split("relu_vs_sigmoid")[1].split("\n")[2]
    assert "not run yet" in listing.split("dropout")[1].split("\n")[1]


def test_headline_of_a_check_against_a_number_names_the_one_variant_and_the_metric():
    import pandas as pd

    study = toy_study()
    study["experiment"]["verdict"] = {"metric": "test_acc", "checks": [{"better": "b", "value": 0.5}]}
    summary = pd.DataFrame([{"variant": "a", "mean": 0.1, "ci95": 0.01}, {"variant": "b", "mean": 0.9, "ci95": 0.02}])
    assert report.headline({"study": study, "summary": summary}) == "test_acc: b 0.900 ± 0.020 (needs above 0.5)"


def test_headline_of_a_check_on_another_metric_gives_its_own_numbers():
    import pandas as pd

    study = toy_study()
    study["experiment"]["verdict"] = {"metric": "test_acc", "checks": [
        {"better": "b", "value": 0.2, "metric": "noise_drop", "key": False},
        {"better": "b", "value": 0.2, "metric": "noise_drop"},
        {"better": "b", "worse": "a", "metric": "mean_train_loss", "lower_is_better": True}]}
    summary = pd.DataFrame([{"variant": "a", "mean": 0.1, "ci95": 0.01}, {"variant": "b", "mean": 0.9, "ci95": 0.02}])
    tested = [{"difference": 0.3, "ci90": [0.25, 0.35]}, {"difference": 0.333, "ci90": [0.326, 0.34]},
              {"difference": 1.2, "ci90": [1.1, 1.3]}]
    outcome = {"study": study, "summary": summary, "verdict": {"checks": tested}}
    # the first key check: b's own noise_drop (0.2 + 0.333), not the 0.333 by which it clears 0.2
    assert report.headline(outcome) == "noise_drop: b 0.533 [0.526, 0.54] vs 0.2 (needs above 0.2)"
    study["experiment"]["verdict"]["checks"] = study["experiment"]["verdict"]["checks"][2:]
    outcome["verdict"]["checks"] = tested[2:]
    assert report.headline(outcome) == "mean_train_loss: b vs a, advantage +1.2 [1.1, 1.3]"
    # a contrast of several pairs, even on a metric the architecture fixes: its mean advantage and interval
    study["experiment"]["verdict"]["checks"] = [{"better": "b", "worse": "a", "metric": "parameters", "pairs": [["d", "c"]]}]
    assert report.headline(outcome) == "parameters: mean of 2 pairs' advantages (b vs a, …), +1.2 [1.1, 1.3]"


def test_a_headline_names_what_its_check_needs_beyond_a_direction():
    from experiments.verdicts import Check

    assert report.needs(Check("a", "test_acc", worse="b")) == ""
    assert report.needs(Check("a", "test_acc", worse="b", margin=0.1)) == " (needs an advantage above 0.1)"
    # against a number, in the variant's own terms
    assert report.needs(Check("a", "early_stop_gain", value=0.0, margin=0.002)) == " (needs above 0.002)"
    assert report.needs(Check("a", "noise_drop", value=0.2)) == " (needs above 0.2)"
    assert report.needs(Check("a", "failed", value=0.5, lower_is_better=True, margin=0.1)) == " (needs below 0.4)"
    assert report.needs(Check("a", "drop", value=0.0, kind="not_worse", margin=0.02, lower_is_better=True)) \
        == " (needs at most 0.02 above 0)"
    assert report.needs(Check("a", "log10_ratio", value=0.0, kind="equivalent", margin=1.0)) == " (needs within ±1 of 0)"
    assert report.needs(Check("a", "train_error", worse="b", kind="not_worse", margin=0.005)) == " (needs a deficit below 0.005)"
    assert report.needs(Check("a", "test_acc", worse="b", kind="equivalent", margin=0.01)) == " (needs a difference within ±0.01)"


def test_an_inconclusive_summary_cell_says_what_it_can_still_become():
    checks = [{"key": True, "status": s} for s in ("fails", "fails", "inconclusive")] + [{"key": False, "status": "holds"}]
    verdict = {"verdict": "inconclusive", "possible": ["partly", "not reproduced"], "checks": checks}
    assert report.still_open(verdict, "inconclusive") == ": partly or not reproduced; key checks 0 hold, 2 fail, 1 open"
    assert report.still_open({**verdict, "verdict": "partly"}, "partly") == ": key checks 0 hold, 2 fail, 1 open"
    assert report.still_open({**verdict, "verdict": "reproduced"}, "reproduced") == ""
    assert report.still_open(verdict, report.PENDING) == ""  # a pending study shows no stale counts
    assert report.still_open({**verdict, "possible": [], "premise": "fails"}, "inconclusive") \
        == ": a premise of the claim fails, so it was not tested (key checks 0 hold, 2 fail, 1 open)"
    assert report.still_open({**verdict, "possible": ["not reproduced"], "premise": "inconclusive"}, "inconclusive") \
        == ": a premise is open; if it holds, not reproduced (key checks 0 hold, 2 fail, 1 open)"


def test_a_summary_cell_names_the_key_checks_that_fail_or_stay_open():
    from experiments.verdicts import Check

    study = toy_study()
    study["experiment"]["verdict"] = {"metric": "test_acc", "checks": [
        {"better": "b", "worse": "a"}, {"better": "c", "worse": "a", "kind": "not_worse", "margin": 0.01},
        {"better": "b", "value": 0.5, "metric": "failed", "lower_is_better": True}, {"better": "c", "worse": "b", "key": False},
        {"better": "b", "worse": "a", "versus": ["c", "d"], "margin": 0.1}]}
    statuses = ["holds", "fails", "inconclusive", "fails", "fails"]
    checks = report.judge.checks_of(study["experiment"]["verdict"], study)
    differences = [0.2, -0.03, 0.3, -0.1, 0.05]
    tested = [{"key": c.key, "status": s, "statement": c.statement(), "difference": d}
              for c, s, d in zip(checks, statuses, differences)]
    outcome = {"study": study, "verdict": {"checks": tested}}
    # each quoted as it states the claim, margin and metric included, with what was observed (a
    # number's check: the variant's mean, "below" it where lower is better); a side check is not named
    assert report.unsettled_checks(outcome, "partly") == (
        " (failing: 'c at most 0.01 worse than a on test_acc' (advantage -0.03); 'b's lead over a exceeds c's over d "
        "by more than 0.1 on test_acc' (advantage +0.05) · open: 'b's failed below 0.5' (observed 0.2))")
    # more of a kind than `most` are left to the section: the counts beside say how many
    assert report.unsettled_checks(outcome, "partly", most=1) == " (open: 'b's failed below 0.5' (observed 0.2))"
    assert report.unsettled_checks(outcome, "reproduced") == report.unsettled_checks(outcome, report.PENDING) == ""
    # a verdict judged by other checks than the study file's names none
    assert report.unsettled_checks({**outcome, "verdict": {"checks": tested[:2]}}, "partly") == ""
    assert report.unsettled_checks({**outcome, "verdict": {"checks": [tested[1], tested[0], *tested[2:]]}}, "partly") == ""
    # a 'partly' no key check fails: the failing side check that made it so
    no_key_fails = [{**t, "status": "holds"} if t["key"] else t for t in tested]
    assert report.unsettled_checks({**outcome, "verdict": {"checks": no_key_fails}}, "partly") \
        == " (side check failing: 'c beats b on test_acc' (advantage -0.1))"
    # an open check whose seeds all sit at the metric's best value says so, not how far it is off
    saturated = [*tested[:2], {**tested[2], "saturated_at": 1.0}, *tested[3:]]
    assert report.unsettled_checks({**outcome, "verdict": {"checks": saturated}}, "partly", most=1) \
        == " (open: 'b's failed below 0.5' (every seed at 1, the best value: more seeds are unlikely to settle it))"
    # where a premise withheld the verdict, the premise is named, not the key checks it left untested
    study["experiment"]["verdict"]["checks"][3] |= {"premise": True}
    checks = report.judge.checks_of(study["experiment"]["verdict"], study)
    tested = [{**t, "statement": c.statement()} for c, t in zip(checks, tested)]
    assert report.unsettled_checks({"study": study, "verdict": {"checks": tested, "premise": "fails"}}, "inconclusive") \
        == " (premise failing: 'c beats b on test_acc' (advantage -0.1))"
    # the other phrasings: a margin on beats, equivalence, a number above, a mean of pairs
    assert Check("a", "m", worse="b", margin=0.1).short() == "a beats b by more than 0.1 on m"
    assert Check("a", "m", worse="b", kind="equivalent", margin=0.01).short() == "a within ±0.01 of b on m"
    assert Check("a", "gain", value=0.0, margin=0.002).short() == "a's gain above 0 by more than 0.002"
    assert Check("a", "drop", value=0.0, kind="not_worse", margin=0.02, lower_is_better=True).short() \
        == "a's drop at most 0.02 above 0"
    assert Check("a", "m", worse="b", pairs=(("c", "d"),)).short() == "(a − b) & (c − d): mean advantage above 0 on m"
    assert Check("a", "m", worse="b", kind="not_worse").short() == "a not worse than b on m"
    assert Check("a", "err", value=0.1, margin=0.02, lower_is_better=True).short() == "a's err below 0.1 by more than 0.02"


def test_a_summary_cell_counts_the_decisions_a_grid_edge_may_have_made():
    edges = [{"key": True, "decides": True, "text": "t"}, {"key": False, "decides": True, "text": "t"},
             {"key": False, "decides": False, "text": "t"}]
    grid = {"study": {"experiment": {"grid": {"optimizer.lr": [0.1, 1.0]}}}}
    assert report.at_grid_edge({**grid, "verdict": {"grid_edges": edges}}, "partly") \
        == "; 2 decisions it rests on could change with a wider grid"
    assert report.at_grid_edge({**grid, "verdict": {"grid_edges": edges[1:]}}, "partly") \
        == "; 1 decision it rests on could change with a wider grid"
    assert report.at_grid_edge({**grid, "verdict": {"grid_edges": edges[2:]}}, "reproduced") == ""
    assert report.at_grid_edge({**grid, "verdict": {}}, "reproduced") == "; grid-edge caveat not computed"
    assert report.at_grid_edge({**grid, "verdict": {"grid_edges": edges}}, report.PENDING) == ""
    assert report.at_grid_edge({"study": {"experiment": {}}, "verdict": {}}, "reproduced") == ""  # no grid


def test_a_summary_cell_counts_the_key_checks_a_near_tie_of_the_tuning_would_change():
    ties = [{"key_changes": 1, "verdict": "inconclusive", "text": "t"}, {"key_changes": 0, "verdict": "partly", "text": "t"}]
    assert report.at_near_tie({"verdict": {"near_ties": ties}}, "partly") == (
        "; 1 key check would change and the verdict would be inconclusive at a rate validation cannot tell from the "
        "tuned one (near-tie caveat)")
    assert report.at_near_tie({"verdict": {"near_ties": ties[:1] * 2}}, "inconclusive") == (
        "; 2 key checks would change at a rate validation cannot tell from the tuned one (near-tie caveat)")
    # a side check alone can move the verdict (the one failing side check of a 'partly')
    assert report.at_near_tie({"verdict": {"near_ties": ties[1:]}}, "reproduced") == (
        "; the verdict would be partly at a rate validation cannot tell from the tuned one (near-tie caveat)")
    assert report.at_near_tie({"verdict": {"near_ties": ties}}, report.PENDING) == ""
    assert report.at_near_tie({"verdict": {}}, "reproduced") == ""  # judged before the caveat existed


def test_a_summary_cell_counts_the_key_checks_whose_gaps_were_still_closing():
    study = toy_study()
    study["experiment"]["verdict"] = {"metric": "test_acc", "checks": [
        {"better": "a", "worse": "b"}, {"better": "c", "worse": "b", "kind": "not_worse", "margin": 0.01},
        {"better": "d", "worse": "b", "key": False}]}
    notes = ["a's lead over b in test_acc shrank …", "c's deficit to b in test_acc shrank …",
             "d's lead over b in test_acc shrank …"]  # a side check's: it decides nothing, the section names it
    outcome = {"study": study, "verdict": {"closing_gaps": notes}}
    assert report.still_closing(outcome, "partly") == "; 2 checks' gaps still closing at the end (budget caveat)"
    assert report.still_closing({**outcome, "verdict": {"closing_gaps": notes[1:]}}, "reproduced") \
        == "; 1 check's gap still closing at the end (budget caveat)"
    assert report.still_closing({**outcome, "verdict": {"closing_gaps": notes[2:]}}, "partly") == ""
    assert report.still_closing({**outcome, "verdict": {}}, "partly") == ""
    assert report.still_closing(outcome, report.PENDING) == ""  # no stale notes on a pending study


def test_a_summary_cell_counts_the_decisions_that_rest_on_the_normal_model_alone():
    study = toy_study()
    study["experiment"]["verdict"] = {"metric": "test_acc", "checks": [
        {"better": "b", "worse": "a"}, {"better": "c", "worse": "a"}, {"better": "d", "worse": "a"},
        {"better": "e", "worse": "a", "key": False}, {"better": "f", "worse": "a"},
        {"better": "b", "worse": "a", "versus": ["c", "d"]}]}
    checks = report.judge.checks_of(study["experiment"]["verdict"], study)
    # held or failed with an exact test that would leave them open, open, a side check, backed, a contrast
    results = [{"status": "holds", "exact_p_holm": 0.06}, {"status": "fails", "exact_p_holm": 0.19},
               {"status": "inconclusive", "exact_p_holm": 0.5}, {"status": "holds", "exact_p_holm": 0.1},
               {"status": "holds"}, {"status": "holds"}]
    tested = [{**r, "key": c.key, "statement": c.statement()} for c, r in zip(checks, results)]
    outcome = {"study": study, "verdict": {"checks": tested}}
    assert report.normal_model_only(outcome, "reproduced") == (
        "; 3 decisions rest on the normal model alone (an exact test of these seeds would leave them open)")
    tested[0] = {**tested[0], "status": "inconclusive"}
    tested[5] = {**tested[5], "status": "inconclusive"}
    assert report.normal_model_only(outcome, "partly") == (
        "; 1 decision rests on the normal model alone (an exact test of these seeds would leave it open)")
    assert report.normal_model_only(outcome, report.PENDING) == ""


def test_a_summary_cell_names_the_settings_a_study_changed_from_its_protocol():
    """A verdict under 'lecture protocol' must not read as the lecture's own setup where the study
    changed it: the committed report's cells say what its section headings say."""
    study = {"protocol": "lecture", "lecture_settings": {"model": {"depth": 3}, "optimizer": {"lr": 0.1}},
             "settings": {"a": {"model": {"depth": 9}, "optimizer": {"lr": 0.1}}}}
    assert report.changed_settings(study) == "; changed: model.depth=9"
    assert report.changed_settings({**study, "settings": {"a": study["lecture_settings"]}}) == ""
    # a setting that varies departs where no run has the protocol's value (dropout's 1024 and 8 units);
    # a tuning grid's key is left to the grid table
    lecture = {"model": {"depth": 3, "width": 500}, "optimizer": {"lr": 0.1}}
    runs = {"a": {"model": {"depth": 3, "width": 1024}, "optimizer": {"lr": 0.01}},
            "b": {"model": {"depth": 3, "width": 8}, "optimizer": {"lr": 0.03}}}
    varied = {"protocol": "lecture", "experiment": {"grid": {"optimizer.lr": [0.01, 0.03]}}, "lecture_settings": lecture,
              "settings": runs}
    assert report.changed_settings(varied) == "; changed: model.width=8 · 1024"  # numbers in order
    assert [mark for key, _, _, mark in settings.settings_rows(varied) if key == "model.width"] == [
        f"{settings.VARIES}; ≠ lecture protocol"]
    assert report.changed_settings({**varied, "settings": {**runs, "c": lecture}}) == ""
    assert report.changed_settings({"protocol": "modern"}) == ""  # runs from before the settings table
    text = report.build_report(Path(__file__).resolve().parents[1] / "results")
    row = next(line for line in text.splitlines() if line.startswith("| [optimizers]"))
    assert row.count("; changed: data.val_size=5000, train.epochs=10") == 1 and row.count("; changed: train.epochs=10") == 1


def test_a_pending_cell_names_no_settings_a_new_run_may_have_written(tmp_path, monkeypatch):
    """A re-run under way rewrites study.json before its first run: its settings are not those of the
    runs the pending cell counts (a verdict from before study digests cannot tell that it was rewritten)."""
    results = make_results(tmp_path, monkeypatch)
    path = results / "depth_sigmoid" / "modern" / "study.json"
    verdict = json.loads((path.parent / "verdict.json").read_text())
    (path.parent / "verdict.json").write_text(json.dumps({k: v for k, v in verdict.items() if k != "study_digest"}))
    study = json.loads(path.read_text())
    path.write_text(json.dumps({**study, "lecture_settings": {"model": {"depth": 3}},
                                "settings": {"9_layers": {"model": {"depth": 9}}}}))
    row = next(line for line in report.build_report(results).splitlines() if line.startswith("| [depth_sigmoid]"))
    assert row.endswith("| **pending re-run** (n = 5) |")


def test_every_metric_an_experiment_checks_has_a_meaning_for_the_glossary():
    from experiments.metrics import meaning
    from experiments.probes import SCALAR_MEANINGS
    for name in experiment_names():
        verdict = yaml.safe_load((CONFIG_DIR / "name" / f"{name}.yaml").read_text())["experiment"]["verdict"]
        for metric in {verdict["metric"], *(check.get("metric", verdict["metric"]) for check in verdict.get("checks", []))}:
            assert meaning(metric, SCALAR_MEANINGS), f"{name}: {metric} has no meaning in metrics.py or its probe"


def test_runs_two_studies_train_alike_are_listed_as_shared():
    """The same training (up to evaluation, validation split and keys recorded before they existed)
    and the same seeds: one measurement, whichever studies show it."""
    from experiments.settings import shared_runs

    def run(**changes):
        settings = {"model": {"arch": "mlp", "depth": 3, "width": 500, "activation": "sigmoid", "init": "glorot_uniform",
                              "dropout": 0.0, "residual": False},
                    "data": {"train_size": 10000, "val_size": 0, "test_size": 10000},
                    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
                    "train": {"loss": "cross_entropy", "batch_size": 100, "epochs": 20, "max_updates": None, "eval_every": 1}}
        for key, value in changes.items():
            group, name = key.split("__")
            settings[group][name] = value
        return settings

    def study(variants, settings, grid=None, seeds=(0, 1, 2)):
        return {"experiment": {"variants": {v: {} for v in variants}, "grid": grid or {}}, "settings": settings,
                "seeds": list(seeds)}

    studies = {
        ("a", "lecture"): study(["plain", "other"], {"plain": run(), "other": run(optimizer__lr=0.3)}),
        # 200 epochs capped at the same 2,000 updates, a validation split, evaluated every 2nd epoch, batch norm off
        ("b", "lecture"): study(["same"], {"same": run(train__epochs=200, train__max_updates=2000, data__val_size=5000,
                                                       train__eval_every=2, model__batch_norm=False)}),
        ("c", "lecture"): study(["seeds"], {"seeds": run()}, seeds=(3, 4)),  # other seeds: other runs
        ("e", "lecture"): study(["some"], {"some": run(optimizer__momentum=0.9)}, seeds=(0, 1, 2, 3, 4)),
        ("f", "lecture"): study(["more"], {"more": run(optimizer__momentum=0.9)}, seeds=(2, 1, 0)),
        ("d", "lecture"): study(["tuned"], {"tuned_lr0.1": run(), "tuned_lr0.3": run(optimizer__lr=0.3)},
                                grid={"optimizer.lr": [0.1, 0.3]}),
    }
    assert shared_runs(studies) == ["a's plain (lecture) = b's same (lecture) = d's tuned (lecture) (grid points lr=0.1)",
                                    "a's other (lecture) = d's tuned (lecture) (grid points lr=0.3)",
                                    "e's some (lecture) = f's more (lecture) (seeds 0, 1, 2 in common)"]
    # each study's summary cell names the claims it shares runs with
    from experiments.settings import sharing

    assert sharing(studies) == {("a", "lecture"): ["b", "d"], ("b", "lecture"): ["a", "d"], ("d", "lecture"): ["a", "b"],
                                ("e", "lecture"): ["f"], ("f", "lecture"): ["e"]}
    # a generated data set draws its test set after its validation set: there the split is part of the run
    adding = {"model__arch": "rnn", "data__dataset": "adding"}
    assert shared_runs({("g", "lecture"): study(["x"], {"x": run(**adding)}),
                        ("h", "lecture"): study(["y"], {"y": run(**adding, data__val_size=500)})}) == []


def test_training_time_is_added_up_per_protocol_and_the_lecture_one_without_conv_nets():
    def outcome(seconds):
        return {"verdict": {"train_seconds": seconds}}

    outcomes = {("relu_vs_sigmoid", "lecture"): outcome(600.0), ("cnn_vs_mlp", "lecture"): outcome(1200.0),
                ("relu_vs_sigmoid", "modern"): outcome(90.0), ("cnn_vs_mlp", "modern"): None}
    line = report.training_time_line(outcomes)
    assert "31.5 min (lecture protocol 30.0 min, modern protocol 1.5 min)" in line
    assert "without conv nets add up to 10.0 min (those with conv nets: cnn_vs_mlp)" in line
    # 10 min / 2 cores / 90 min; 30 min with the conv nets
    assert "at a time: by that estimate 0.1 times the suite's aim of about 90 min for it (0.2 times with the conv nets)" in line
    # a run copied from another study was trained once: the totals count it there only
    copies = {"runs": 4, "train_seconds": 300.0, "copied_runs": 3,
              "copied_seconds": {"relu_vs_sigmoid/lecture": 240.0, "relu_vs_sigmoid/lecture/model.width=16": 30.0}}
    outcomes[("depth_sigmoid", "lecture")] = {"verdict": copies}
    line = report.training_time_line(outcomes)
    # ... but a study the report does not show (a sweep's sub-folder) counts nowhere else, so it counts here
    assert "32.5 min (lecture protocol 31.0 min, modern protocol 1.5 min)" in line and "11.0 min" in line
    assert report.runs_and_time(copies) == (
        "4 runs (3 of them copied from relu_vs_sigmoid (lecture), relu_vs_sigmoid/lecture/model.width=16, which trained "
        "them with the same settings and seeds: 4.5 min of the training time here), 5.0 min of training")
    assert report.runs_and_time({"runs": 4, "train_seconds": 300.0}) == "4 runs, 5.0 min of training"


def test_a_study_whose_runs_are_under_way_is_pending_and_stops_the_report(tmp_path, monkeypatch):
    results = make_results(tmp_path, monkeypatch)
    study_dir = results / "relu_vs_sigmoid" / "lecture"
    assert not report.load_outcome(study_dir)["unanalysed"]
    # a re-run writes its study.json first (here: two more seeds) and its verdict only at the end
    study = json.loads((study_dir / "study.json").read_text())
    (study_dir / "study.json").write_text(json.dumps({**study, "seeds": [*study["seeds"], 5, 6]}, indent=2) + "\n")
    shown, why = report.judged(report.load_outcome(study_dir), "relu_vs_sigmoid")
    assert shown == report.PENDING and "run of the study is under way" in why
    with pytest.raises(UserError, match=r"study.json of relu_vs_sigmoid \(lecture\) was rewritten after its verdict"):
        report.build_report(results)


def test_every_metric_of_the_untrained_net_is_a_metric_the_suite_measures():
    # judge.edge_caveats leaves checks on these out: a misspelt name would silently leave one in
    from experiments.metrics import AT_INITIALISATION, meaning
    from experiments.probes import SCALAR_MEANINGS
    assert [metric for metric in AT_INITIALISATION if not meaning(metric, SCALAR_MEANINGS)] == []


def test_a_study_left_to_a_gpu_is_not_run_and_says_what_it_waits_for(tmp_path, monkeypatch):
    """An experiment file's rerun_waits_for turns a protocol's 'not run' into 'not run, waiting for a
    GPU', in the summary, the section (with that protocol's caveats, saying why) and --list; a
    misspelt protocol, a wait with no reason and a wait for a study that has results are refused."""
    from experiments.__main__ import list_experiments

    results = make_results(tmp_path, monkeypatch)
    spec = report.experiment_spec
    monkeypatch.setattr(report, "experiment_spec", lambda name: {**spec(name), **(
        {"rerun_waits_for": {"modern": "a GPU"}, "protocol_caveats": {"modern": ["It takes a day on a CPU."]}}
        if name == "mse_vs_ce" else {})})
    text = report.build_report(results)
    row = next(line for line in text.splitlines() if line.startswith("| [mse_vs_ce]"))
    assert row.endswith("| not run, waiting for a GPU (its section says why) |")
    section = text[text.index("### mse_vs_ce"):text.index("\n### ", text.index("### mse_vs_ce"))]
    assert ("**Modern protocol: not run, waiting for a GPU** — `python -m experiments name=mse_vs_ce protocol=modern`"
            "\n\n*Why it waits* (from the experiment file): It takes a day on a CPU.") in section
    assert "modern: not run, waiting for a GPU" in list_experiments(results)
    assert "waiting for" not in next(line for line in text.splitlines() if line.startswith("| [relu_vs_sigmoid]"))
    for waits, caveats_of, refused in [({"modrn": "a GPU"}, {"modrn": ["why"]}, "names unknown protocol 'modrn'"),
                                       ({"modern": "a GPU"}, {}, "do not say why"),
                                       ({"lecture": "a GPU"}, {"lecture": ["why"]}, "the lecture-protocol study has results now")]:
        monkeypatch.setattr(report, "experiment_spec", lambda name: {**spec(name), **(
            {"rerun_waits_for": waits, "protocol_caveats": caveats_of} if name == "relu_vs_sigmoid" else {})})
        with pytest.raises(UserError, match=refused):
            report.build_report(results)


def test_a_run_on_a_cpu_of_a_study_left_to_a_gpu_warns_first(run_in_process):
    # resnet_vs_plain_conv's file leaves its modern-protocol study to a GPU; one tiny run of it here
    done = run_in_process("name=resnet_vs_plain_conv", "protocol=modern", "only=[residual_8]",
                          "data.train_size=200", "data.val_size=100", "data.test_size=100", "train.epochs=1",
                          "seeds=[0]", "device=cpu")
    assert done.returncode == 0, done.stderr
    assert "resnet_vs_plain_conv | its experiment file leaves the modern-protocol study to a GPU" in done.stdout
