"""Results store. A study folder holds one folder per run:

    <study>/runs/<variant>/seed<k>/metrics.csv   one row per epoch (epoch 0 = initialisation)
                                   meta.json     run config, seed, versions, device, status, key
                                   events.out.tfevents.*  TensorBoard scalars

A run folder is built under a temporary name and renamed into place only once every file is
written, so a killed run never looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import pandas as pd
from filelock import FileLock

from experiments.config import override_key
from experiments.errors import UserError

STUDY_FILE = "study.json"  # what a study ran and how it is judged, written before its first run
SEEDS_FILE = "seeds.csv"  # every run's final numbers, written by the analysis (analysis.seed_table)
# overrides study.json leaves out: seeds are recorded apart; the others say where results and data
# are, on which device, and whether finished runs are redone, never what a run measures (a local
# path such as results_dir=/home/me/x has no place in a committed record)
UNRECORDED = {"seeds", "only", "results_dir", "device", "force", "data.root", "data.download"}
FINISHED = ("complete", "diverged")  # outcomes that count; anything else is re-run
# keys that do not change what a run measures, so they stay out of its identity
KEY_EXCLUDES = {("data", "root"), ("data", "download"), ("train", "vectorise"), ("train", "cuda_graph")}
# what a run trains or measures (a whole group, optimizer=adam, too), and which run a _tuned variant is; of
# those, keys that only say how a run is computed or how often evaluated
SETTING_GROUPS = ("model", "data", "optimizer", "train", "experiment.variants", "experiment.grid",
                  "experiment.protocol_grids", "experiment.tune_on")
HOW_COMPUTED = {f"{group}.{key}" for group, key in KEY_EXCLUDES} | {"train.eval_every", "train.eval_batch_size"}


def setting_overrides(study: dict) -> list[str]:
    """The command-line overrides that may change what a study's runs train or measure (not where
    they run, how they are computed or judged, nor which seeds): a study with any is not the
    experiment file's own. One that repeats the file's own value still counts (the record keeps the
    override, not what it replaced)."""
    keys = {o: override_key(o) for o in study.get("overrides", [])}
    return [o for o, key in keys.items() if key not in HOW_COMPUTED
            and any(key == group or key.startswith(f"{group}.") for group in SETTING_GROUPS)]


# keys added after runs were made, at the value that reproduces the older behaviour: left out of the
# identity at that value, so finished runs stay valid
KEY_DEFAULTS_ADDED = {("data", "test_size"): 10000, ("train", "max_updates"): None, ("model", "pieces"): 2,
                      ("model", "batch_norm"): False, ("data", "dataset"): "mnist", ("data", "teeth"): 16,
                      ("model", "kernels"): [3, 3], ("model", "channels"): [32, 64], ("model", "pool"): 2,
                      ("model", "conv_dropout"): 0.0, ("train", "rotate_degrees"): 0.0, ("train", "shift_pixels"): 0.0,
                      ("model", "cell"): "rnn", ("data", "seq_len"): 100, ("train", "clip_grad_norm"): None,
                      ("model", "recurrent_gain"): 1.0}


def study_digest(study_json: str) -> str:
    """A fingerprint of study.json's text, stored with the verdict judged from it: a study.json
    rewritten since (a re-run under way, or stopped before its analysis) no longer matches."""
    return hashlib.sha256(study_json.encode()).hexdigest()[:16]


def run_key(run_cfg: dict, seed: int, probes: list[str] = ()) -> str:
    """Identity of a run: its resolved training config (no paths, no device), seed and probes."""
    measured = {k: run_cfg[k] for k in ("model", "data", "optimizer", "train")}
    measured = {group: {k: v for k, v in values.items()
                        if (group, k) not in KEY_EXCLUDES
                        and not ((group, k) in KEY_DEFAULTS_ADDED and v == KEY_DEFAULTS_ADDED[(group, k)])}
                for group, values in measured.items()}
    blob = json.dumps({"cfg": measured, "seed": seed, **({"probes": sorted(probes)} if probes else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_dir(study_dir: Path, variant: str, seed: int) -> Path:
    return study_dir / "runs" / variant / f"seed{seed}"


def read_meta(path: Path) -> dict | None:
    try:
        return json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def recorded_columns(path: Path) -> list[str]:
    """The columns of a run folder's metrics.csv (none when it cannot be read)."""
    try:
        with open(path / "metrics.csv") as table:
            return table.readline().strip().split(",")
    except OSError:
        return []


def is_finished(path: Path, key: str) -> bool:
    meta = read_meta(path)
    return meta is not None and meta.get("key") == key and meta.get("status") in FINISHED


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST = socket.gethostname().replace("-", "_")


def temp_name(path: Path) -> Path:
    """A temporary name beside `path`, unique across the nodes of a cluster sharing the folder:
    .<name>.tmp-<host>-<pid>-<random>."""
    return path.parent / f".{path.name}.tmp-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def clean_stale(path: Path) -> None:
    """Remove leftovers of killed processes of this host (another host's may still be running)."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        parts = stale.name.rsplit(".tmp-", 1)[1].split("-")
        if len(parts) == 3 and parts[0] == HOST and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def temp_dir_for(path: Path) -> Path:
    """A fresh temporary folder beside `path`; this host's leftovers of killed processes are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = temp_name(path)
    tmp.mkdir()
    return tmp


def commit_run(tmp: Path, path: Path, rows: list[dict], meta: dict) -> None:
    """Write the table and metadata into `tmp`, then move it to `path` in one rename."""
    _commit(tmp, path, meta, lambda: pd.DataFrame(rows).to_csv(tmp / "metrics.csv", index=False))


def copy_run(source: Path, path: Path, meta: dict) -> bool:
    """Copy the files of the finished run folder `source` (its table, probes, TensorBoard events) to
    `path` with `meta` as its metadata, in one rename. False, and nothing written, when the source
    went away or changed while it was read (a re-run of its study); then the run is trained."""
    tmp = temp_dir_for(path)
    try:
        for item in source.iterdir():
            if item.is_file() and item.name != "meta.json":
                shutil.copy2(item, tmp / item.name)
        intact = (read_meta(source) or {}).get("key") == meta["key"]
    except OSError:
        intact = False
    if not intact:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    _commit(tmp, path, meta, lambda: None)
    return True


def _commit(tmp: Path, path: Path, meta: dict, fill) -> None:
    """Fill `tmp`, write its meta.json last, then move it to `path` in one rename."""
    try:
        fill()
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written run must not linger
        raise


def finished_runs(results_dir: Path, besides: Path, since: float | None = None) -> dict[str, Path]:
    """The finished run folders of every study under `results_dir` but `besides`, by run key: runs
    trained there, not copies (a copy's source may since have gone); with `since` (a time.time()),
    only those finished since then (meta.json is a run's last file written). Paths are resolved."""
    found: dict[str, Path] = {}
    own = besides.resolve() / "runs"
    for meta_path in sorted(results_dir.resolve().glob("**/runs/*/seed*/meta.json")):
        try:
            if meta_path.is_relative_to(own) or (since is not None and meta_path.stat().st_mtime < since):
                continue
        except OSError:  # replaced by a re-run of its study just now
            continue
        meta = read_meta(meta_path.parent)
        if meta and meta.get("status") in FINISHED and meta.get("key") and not meta.get("copied_from"):
            found.setdefault(meta["key"], meta_path.parent)
    return found


def write_atomic(path: Path, data: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one; a failed write (a full disk)
    leaves no temporary file behind and ends in a one-line error."""
    clean_stale(path)
    tmp = temp_name(path)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def locked(study_dir: Path):
    """Serialise writers of a study's shared files (parallel sweep jobs may share a study).
    filelock opens the lock file without following a symlink and without truncating it."""
    try:
        lock = FileLock(study_dir / ".lock")
        lock.acquire()
    except OSError as exc:
        raise UserError(f"cannot lock the study folder {study_dir} ({exc.strerror or exc}); "
                        f"remove {study_dir / '.lock'} if it is not a plain file") from None
    try:
        yield
    finally:
        lock.release()


def load_study(study_dir: Path) -> tuple[pd.DataFrame, list[dict]]:
    """All finished runs of a study: one long table (variant, seed, epoch, ...) and their metadata."""
    tables, metas = [], []
    for meta_path in sorted(Path(study_dir).glob("runs/*/seed*/meta.json")):
        meta = read_meta(meta_path.parent)
        if meta is None or meta.get("status") not in FINISHED:
            continue
        table = pd.read_csv(meta_path.parent / "metrics.csv")
        table.insert(0, "seed", meta["seed"])
        table.insert(0, "variant", meta["variant"])
        table["parameters"] = meta.get("parameters")
        table["depth"] = meta.get("config", {}).get("model", {}).get("depth")
        if meta.get("config", {}).get("data", {}).get("dataset") == "adding":
            table["seq_len"] = meta["config"]["data"]["seq_len"]
        # a vectorised group (seeds and grid rates as one model) logged the time of all its runs
        # together: give each run its share ("vectorised_seeds" in runs stored before 2026-11-25)
        table[["epoch_seconds", "seconds"]] /= meta.get("runs_in_group", meta.get("vectorised_seeds", 1))
        tables.append(table)
        metas.append(meta)
    if not tables:
        return pd.DataFrame(), []
    return pd.concat(tables, ignore_index=True), metas


def load_probe(study_dir: Path, probe: str) -> pd.DataFrame:
    """One probe's tables of every finished run of a study, with variant and seed columns."""
    tables = []
    for meta_path in sorted(Path(study_dir).glob("runs/*/seed*/meta.json")):
        meta = read_meta(meta_path.parent)
        table_path = meta_path.parent / f"{probe}.csv"
        if meta is None or meta.get("status") not in FINISHED or not table_path.exists():
            continue
        table = pd.read_csv(table_path)
        table.insert(0, "seed", meta["seed"])
        table.insert(0, "variant", meta["variant"])
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
