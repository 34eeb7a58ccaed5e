"""The committed results are what the suite's own stages make of them: each verdict is the engine's
judgment of its study's committed per-run numbers, and REPORT.md is what the report builds from the
committed study folders (not edited by hand, not left stale after a change to an experiment file)."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from experiments import report
from experiments.analysis import judge_seeds
from experiments.metrics import add_log10_losses
from experiments.store import SEEDS_FILE, STUDY_FILE

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(path.parent for path in (REPO / "results").glob("*/*/verdict.json"))


@pytest.mark.parametrize("study_dir", STUDIES, ids=[f"{d.parent.name}/{d.name}" for d in STUDIES])
def test_a_committed_verdict_is_the_engines_judgment_of_its_committed_runs(study_dir):
    # by the rule stored with the runs: a study pending re-run or re-analysis keeps the verdict it had
    study = json.loads((study_dir / STUDY_FILE).read_text())
    _, judged, _, _ = judge_seeds(add_log10_losses(pd.read_csv(study_dir / SEEDS_FILE)), study)
    committed = json.loads((study_dir / "verdict.json").read_text())
    assert judged["verdict"] == committed["verdict"]
    assert json.loads(json.dumps(judged["checks"])) == committed["checks"]  # every number and line, as stored

def test_the_committed_report_is_what_the_report_builds():
    # revisions and pending re-runs are read from git: a shallow clone lacks the history they need
    shallow = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True)
    if shallow.returncode or shallow.stdout.strip() != "false":
        pytest.skip("no full git history here")
    built = report.build_report(REPO / "results")
    assert built == (REPO / "results" / "REPORT.md").read_text(), \
        "results/REPORT.md is stale: rebuild it with `python -m experiments.report` (after committing a change to an experiment file)"
