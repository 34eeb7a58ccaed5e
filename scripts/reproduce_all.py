"""Run every experiment, then rebuild results/REPORT.md; the total wall time goes into the report.

    python scripts/reproduce_all.py                       # every claim, lecture protocol, 5 seeds
    python scripts/reproduce_all.py --protocols lecture,modern device=cuda
    python scripts/reproduce_all.py --resume              # keep runs that already completed
    python scripts/reproduce_all.py --pending device=cuda # only the studies the report shows as pending re-run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from experiments import report
from experiments.config import experiment_names
from experiments.train import device_name, resolve_device
from experiments.store import write_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="lecture", help="comma-separated: lecture,modern")
    parser.add_argument("--resume", action="store_true", help="skip runs that already completed")
    parser.add_argument("--pending", action="store_true",
                        help="run only the studies the report shows as 'pending re-run' (each under its own protocol; "
                             "finished runs are kept), then rebuild the report")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every experiment, e.g. device=cuda")
    args = parser.parse_args()
    overrides = dict(o.split("=", 1) for o in args.overrides)
    # what the script sets itself: a key may be given once on the command line it runs
    own = {"name": "it runs every experiment (or, with --pending, each pending one)",
           "protocol": "choose with --protocols (with --pending, each study keeps its own)",
           **({} if args.pending else {"force": "it re-runs everything; --resume keeps finished runs"})}
    for key in sorted(own.keys() & overrides.keys()):
        print(f"error: {key}= is set by the script: {own[key]}", file=sys.stderr)
        return 2
    results_dir = Path(overrides.get("results_dir", "results"))
    if args.pending:
        return run_pending(results_dir, args.overrides)
    command = [sys.executable, "-m", "experiments", "-m", f"name={','.join(experiment_names())}",
               f"protocol={args.protocols}", *([] if args.resume else ["force=true"]), *args.overrides]
    started = time.perf_counter()
    if subprocess.run(command).returncode != 0:
        print("error: an experiment failed; the report was not rebuilt", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    shown = " ".join(["python scripts/reproduce_all.py", *sys.argv[1:]])
    record = {"command": shown, "seconds": round(seconds, 1), "experiments": experiment_names(), "torch": torch.__version__,
              "device": device_name(resolve_device(overrides.get("device", "auto")))}
    write_atomic(results_dir / report.REPRODUCTION_FILE, json.dumps(record, indent=2) + "\n")
    print(f"all experiments: {seconds / 60:.1f} min")
    return report.main([str(results_dir)])


def run_pending(results_dir: Path, overrides: list[str]) -> int:
    """Re-run each pending study in turn (not a full reproduction: no time is recorded for the report)."""
    queue = report.pending_reruns(results_dir)
    print("pending re-run: " + (", ".join(f"{name} ({protocol})" for name, protocol in queue) or "none"))
    for name, protocol in queue:
        if subprocess.run([sys.executable, "-m", "experiments", f"name={name}", f"protocol={protocol}", *overrides]).returncode:
            print(f"error: {name} ({protocol}) failed; the report was not rebuilt", file=sys.stderr)
            return 1
    return report.main([str(results_dir)]) if queue else 0


if __name__ == "__main__":
    sys.exit(main())
