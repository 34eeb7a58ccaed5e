"""Revisions: changes to an experiment's settings or verdict rule made after it had results,
found in git rather than remembered. The reasons live in the experiment file (`revisions:`);
the report shows each detected change with its recorded reason, or says that none was recorded.

A study's settings are everything in its experiment file except the words around them (title,
claim, references, notes, figures and the revision records themselves): a comment or a reworded
claim is not a revision, a changed learning rate, check or margin is."""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

# text, not settings: changing these does not change what a study measures or how it is judged
WORDING = {"title", "claim", "section", "lecture_ref", "source_ref", "lecture_label", "figures", "revisions", "note",
           "caveats", "protocol_caveats", "rerun_waits_for"}


@dataclass
class Change:
    commit: str
    date: str
    subject: str
    keys: list[str] = field(default_factory=list)  # dotted keys whose value changed


def git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def settings_of(text: str | None) -> dict[str, object]:
    """The experiment file's settings, flattened to dotted keys, wording left out."""
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        return {}
    flat: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key) not in WORDING:
                    walk(value, f"{prefix}{key}.")
        elif isinstance(node, list) and any(isinstance(item, dict) for item in node):
            for i, item in enumerate(node):
                walk(item, f"{prefix}{i}.")
        else:
            flat[prefix[:-1]] = node

    walk(data, "")
    return flat


def changed_keys(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def file_changes(repo: Path, path: str) -> list[Change]:
    """Every commit that changed the settings in `path`, oldest first."""
    log = git(repo, "log", "--reverse", "--format=%H%x09%cs%x09%s", "--", path)
    changes, before = [], {}
    for line in (log or "").splitlines():
        commit, date, subject = line.split("\t", 2)
        after = settings_of(git(repo, "show", f"{commit}:{path}"))
        keys = changed_keys(before, after)
        if keys and before:  # the file's first version is its start, not a change
            changes.append(Change(commit, date, subject, keys))
        before = after
    return changes


def first_results_commit(repo: Path, results_path: str) -> str | None:
    log = git(repo, "log", "--reverse", "--diff-filter=A", "--format=%H", "--", results_path)
    return log.split()[0] if log and log.split() else None


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    try:
        done = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=repo, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def newest_commit(repo: Path, commits: list[str]) -> str | None:
    """The commit of `commits` that every other one precedes: the last code the runs were made with
    (runs of one study made at several commits, e.g. seeds added later). None where git cannot tell."""
    bare = [c.removesuffix("-dirty") for c in commits]
    return next((c for c, b in zip(commits, bare) if all(is_ancestor(repo, other, b) for other in bare)), None)


def revisions(repo: Path, paths: list[str], results_path: str) -> list[Change] | None:
    """Settings changes to `paths` committed after the results under `results_path` were first
    committed, oldest first; None without git history."""
    if git(repo, "rev-parse", "--git-dir") is None:
        return None
    first = first_results_commit(repo, results_path)
    if first is None:
        return []
    changes = [c for path in paths for c in file_changes(repo, path)
               if c.commit != first and is_ancestor(repo, first, c.commit)]
    merged: dict[str, Change] = {}
    for change in changes:  # one line per commit, whichever files it touched
        merged.setdefault(change.commit, Change(change.commit, change.date, change.subject)).keys.extend(change.keys)
    return sorted(merged.values(), key=lambda c: c.date)


def stale_keys(repo: Path, experiment_path: str, runs_commit: str) -> list[str] | None:
    """Settings changed since the commit the runs were made at; None when that cannot be told
    (no git, or a commit this history does not have). Runs made from uncommitted changes are
    compared with the commit they started from."""
    commit = runs_commit.removesuffix("-dirty")
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None
    then = git(repo, "show", f"{commit}:{experiment_path}")
    now = (repo / experiment_path).read_text() if (repo / experiment_path).exists() else None
    return changed_keys(settings_of(then), settings_of(now))


def explained(change: Change, recorded: list[dict]) -> dict | None:
    """The experiment file's record for a detected change, matched by commit."""
    return next((r for r in recorded if r.get("commit") and change.commit.startswith(str(r["commit"]))), None)


SHARED_FILES = ["configs/config.yaml", "configs/protocol/lecture.yaml", "configs/protocol/modern.yaml",
                "configs/model/mlp.yaml", "configs/data/mnist.yaml", "configs/optimizer/sgd.yaml"]
SHARED_RECORD = "configs/revisions.yaml"  # the reasons for changes to what every study shares


def shared_recorded(repo: Path) -> list[dict]:
    try:
        return yaml.safe_load((repo / SHARED_RECORD).read_text()) or []
    except (OSError, yaml.YAMLError):
        return []


def revision_lines(repo: Path, paths: list[str], results_path: str, recorded: list[dict]) -> list[str]:
    """The report's list of revisions: detected in git, with the recorded reasons."""
    detected = revisions(repo, paths, results_path)
    lines = []
    if detected is None:
        lines.append("- *git history unavailable: revisions after results existed cannot be checked here.*")
        detected = []
    matched = set()
    for change in detected:
        record = explained(change, recorded)
        keys = ", ".join(f"`{k}`" for k in change.keys[:8]) + (f" and {len(change.keys) - 8} more" if len(change.keys) > 8 else "")
        keys = keys or "nothing in these files (a change of code)"
        if record is None:
            lines.append(f"- {change.date}, commit {change.commit[:7]}: changed {keys}. "
                         "**Reason not recorded.**")
        else:
            matched.add(id(record))
            lines.append(f"- {change.date}, commit {change.commit[:7]}: {record['what']} (changed {keys}). Why: {record['why']}")
    for record in recorded:
        if id(record) not in matched:
            lines.append(f"- {record['date']}, commit {str(record['commit'])[:7]}: {record['what']}. Why: {record['why']} "
                         "*(Recorded by hand: git shows no settings change here after committed results, e.g. the "
                         "results it followed were never committed, or the change was to code.)*")
    return lines


def seeds_changed(repo: Path, results_path: str, seeds_now: list[int]) -> str | None:
    """A line for the report when a study's seeds differ from those of a verdict by the verdict
    engine committed under `results_path` (e.g. results/x/lecture): seeds added after a verdict
    existed are a second look at the data. Dated at the commit that brought today's seeds, it names
    the last verdict before them (an *incomplete* one, of a sweep still running, judged nothing).
    None when every such verdict had today's seeds or git cannot tell."""
    log = git(repo, "log", "--format=%H%x09%cs", "--", f"{results_path}/verdict.json")  # newest first
    brought = None  # (commit, date) of the oldest commit so far whose study has today's seeds
    for line in (log or "").splitlines():
        commit, date = line.split("\t")
        try:
            verdict = json.loads(git(repo, "show", f"{commit}:{results_path}/verdict.json") or "")
            seeds_then = json.loads(git(repo, "show", f"{commit}:{results_path}/study.json") or "")["seeds"]
        except (ValueError, KeyError, TypeError):
            continue
        if "checks" not in verdict:  # judged by the rule before the engine: so were all older ones
            return None
        if sorted(seeds_then) == sorted(seeds_now):
            brought = (commit, date)
            continue
        if verdict["verdict"] == "incomplete":
            continue
        when = f"{brought[1]}, commit {brought[0][:7]}" if brought else "not committed yet"
        return (f"{when}: seeds {', '.join(map(str, seeds_now))} (n = {len(seeds_now)}) replaced seeds "
                f"{', '.join(map(str, seeds_then))} (n = {len(seeds_then)}), on which the verdict engine's last verdict "
                f"was **{verdict['verdict']}** ({date}, commit {commit[:7]}). Seeds added after a verdict existed are a "
                "second look at the data, which raises the chance of a false decision slightly; the experiment file's "
                "revisions say why and whether the number was capped beforehand.")
    return None


def in_time_order(repo: Path, lines: list[str]) -> list[str]:
    """A study's change lines, each naming its commit ('commit 1a2b3c4'), oldest first: its own
    revisions, the shared rule's and added seeds come from three sources. A line whose commit git
    does not know sorts by its date ('2026-11-24'), as if made at noon UTC; a line with neither (git
    unavailable) comes first."""
    def when(line: str) -> float:
        named = re.search(r"commit ([0-9a-f]{7,40})", line)  # the first named: the change's own
        stamp = git(repo, "log", "-1", "--format=%ct", named.group(1)) if named else None
        if stamp and stamp.strip().isdigit():
            return float(stamp)
        day = re.search(r"\d{4}-\d{2}-\d{2}", line)
        return datetime.fromisoformat(f"{day.group(0)}T12:00:00+00:00").timestamp() if day else -math.inf
    return sorted(lines, key=when)
