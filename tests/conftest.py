"""Tests read the real MNIST files: from $MNIST_ROOT, else ../shared/datasets beside the checkout (as
on CI), else ./data, where the README's quick start downloads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = Path(os.environ.get("MNIST_ROOT") or next(
    (root for root in (REPO.parent / "shared" / "datasets", REPO / "data") if (root / "MNIST" / "raw").is_dir()),
    REPO.parent / "shared" / "datasets")).resolve()


@pytest.fixture(scope="session")
def mnist_root() -> str:
    if not (MNIST_ROOT / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found in {MNIST_ROOT}/MNIST/raw: set MNIST_ROOT to a folder holding MNIST/raw/ "
                    "(unset, the tests look in ../shared/datasets, then ./data)")
    return str(MNIST_ROOT)


def call_entry_point(monkeypatch, argv: list[str]):
    """Run `python -m experiments` in this process with `argv`; its exit code (0 when it returns,
    else what it passed to sys.exit: a number or a message)."""
    from experiments import __main__ as entry

    monkeypatch.setattr(sys, "argv", list(argv))
    try:
        entry.main()
    except SystemExit as exited:
        return exited.code
    return 0


@pytest.fixture
def exit_message(monkeypatch, tmp_path, mnist_root):
    """Run the entry point in-process with these arguments; return its one-line error."""
    monkeypatch.setenv("MNIST_ROOT", mnist_root)  # the pre-check finds MNIST as a run would

    def run(*args: str) -> str:
        message = str(call_entry_point(monkeypatch, ["experiments", *args, f"results_dir={tmp_path / 'results'}"]))
        assert message.startswith("error: ") and "\n" not in message
        return message

    return run


@pytest.fixture
def run_in_process(monkeypatch, capsys, mnist_root, tmp_path):
    """Run the entry point in this process, as `run_cli` runs the command: for tests of what a
    study writes, where a fresh interpreter per run would only add its start-up (about 8 s)."""
    monkeypatch.setenv("MNIST_ROOT", mnist_root)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, results_dir: Path | None = None) -> subprocess.CompletedProcess:
        argv = ["experiments", *args, f"results_dir={results_dir or tmp_path / 'results'}"]
        code = call_entry_point(monkeypatch, argv)
        out, err = capsys.readouterr()
        if isinstance(code, str):  # sys.exit("error: ...") prints it and exits with 1, as a process would
            code, err = 1, err + code
        return subprocess.CompletedProcess(argv, code or 0, out, err)

    return run


@pytest.fixture
def run_cli(mnist_root, tmp_path):
    """Run `python -m experiments ...` as a user would; results go to a temporary folder."""

    def run(*args: str, results_dir: Path | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, MNIST_ROOT=mnist_root, HYDRA_FULL_ERROR="0")
        cmd = [sys.executable, "-m", "experiments", *args, f"results_dir={results_dir or tmp_path / 'results'}"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)

    return run
