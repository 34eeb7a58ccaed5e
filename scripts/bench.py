"""Speed benchmark of the lecture protocol (CLAIMS.md): 784-500-500-500-10 sigmoid, cross-entropy,
SGD 0.1, batch 100, 20 epochs, the first 10k MNIST images, Glorot init, test set evaluated each epoch.

    python scripts/bench.py                 # writes results/BENCH.md and results/bench.json
    python scripts/bench.py --repeats 5 --device cuda

Measured one after another in this process, median of --repeats each:
  suite     the suite's own training loop (experiments.train.train_run), data already loaded;
  command   `python -m experiments` for one seed, as a user runs it (start-up, data, analysis), and its peak RSS;
            its fixed cost is the whole command less the run's training (and per-epoch test) time;
  startup   `python -c "import torch"`: what any PyTorch program pays before work;
  seeds     3 seeds trained as one vectorised model (the default on CUDA) against one after another;
  batched   (CUDA only) 1, 3, 10, 30 and 100 lecture runs at a grid of rates as one vectorised model: runs per
            second, with each training step captured in a CUDA graph (train.cuda_graph) and without;
  tutorial  what a PyTorch tutorial writes: torchvision MNIST + ToTensor, Subset, DataLoader(shuffle=True),
            nn.Sequential, the same optimizer and init, a test loop each epoch;
  keras     scripts/keras_lecture.py, the same job as a plain Keras 3 script (torch backend, model.fit with
            validation_data), timed as a whole process and by its fit() (skipped when keras is missing:
            pip install -e ".[bench]");
  matmul    a large float32 torch.mm: the machine's rate, and from it the ideal training time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from experiments.config import protocol_settings  # noqa: E402
from experiments.data import make_splits  # noqa: E402
from experiments.tables import pipe_table  # noqa: E402
from experiments.train import resolve_device, train_run, train_seeds  # noqa: E402
from models import mlp_parameter_count  # noqa: E402

TRAIN_SIZE, DEPTH, WIDTH, EPOCHS, BATCH, LR = 10000, 3, 500, 20, 100, 0.1
PARAMS = mlp_parameter_count(784, DEPTH, WIDTH, 10)
TRAIN_FLOPS = 6 * PARAMS * TRAIN_SIZE * EPOCHS  # forward + backward, per the usual 6 x params x samples
# the lecture protocol exactly, and nothing but its training and test (no probe, one figure): the Keras script's job
RUN_OVERRIDES = ["name=depth_sigmoid", "only=[3_layers]", "seeds=[0]"]


def lecture_run_config(root: str) -> dict:
    """The lecture protocol's run as the suite resolves it (configs/config.yaml + protocol/lecture)."""
    cfg = protocol_settings("lecture")
    cfg["data"].update(root=root, download=False)
    model, train = cfg["model"], cfg["train"]
    assert (model["depth"], model["width"], train["epochs"], train["batch_size"], cfg["optimizer"]["lr"]) == \
        (DEPTH, WIDTH, EPOCHS, BATCH, LR), "the benchmark's constants describe the lecture protocol"
    return cfg


def bench_suite(root: str, device: torch.device, seed: int) -> dict:
    cfg = lecture_run_config(root)
    splits = make_splits(cfg["data"], device)  # the one-time load stays outside the timing
    started = time.perf_counter()
    result = train_run(cfg, splits, seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    train_only = sum(row["epoch_seconds"] for row in result.rows)
    return {"seconds": seconds, "train_seconds": train_only, "test_acc": result.rows[-1]["test_acc"]}


def bench_vectorised(root: str, device: torch.device, seeds: int = 3) -> dict:
    """Several seeds as one vectorised model against the same seeds one after another."""
    cfg = lecture_run_config(root)
    splits = make_splits(cfg["data"], device)
    timings = {}
    for label, vectorise in (("vectorised_seconds", True), ("sequential_seconds", False)):
        started = time.perf_counter()
        if vectorise:
            results = train_seeds(cfg, splits, list(range(seeds)), vectorise=True)
        else:
            results = [train_run(cfg, splits, seed) for seed in range(seeds)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[label] = time.perf_counter() - started
        timings[label.replace("seconds", "test_acc")] = statistics.mean(r.rows[-1]["test_acc"] for r in results)
    return timings


BATCHED_RUNS = (1, 3, 10, 30, 100)  # lecture runs trained as one stacked model (GPU table)


def bench_batched(root: str, device: torch.device, rate: float) -> list[dict]:
    """Lecture runs per second against how many train as one vectorised model: seeds 0.. at rates
    cycling over a half-decade grid (0.03, 0.1, 0.3), as a study's seeds and grid are batched; each
    with the training step captured in a CUDA graph and without."""
    cfg = lecture_run_config(root)
    splits = make_splits(cfg["data"], device)
    rows = []
    for cuda_graph in (False, True):
        cfg["train"]["cuda_graph"] = cuda_graph
        for n in BATCHED_RUNS:
            lrs = [(0.03, 0.1, 0.3)[i % 3] for i in range(n)]
            started = time.perf_counter()
            train_seeds(cfg, splits, list(range(n)), vectorise=n > 1, lrs=lrs)
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            rows.append({"runs": n, "cuda_graph": cuda_graph, "seconds": seconds, "runs_per_second": n / seconds,
                         "fraction_of_matmul": n * TRAIN_FLOPS / seconds / rate})
            print(f"batched {n}, cuda_graph {cuda_graph}: {seconds:.2f} s, {n / seconds:.2f} runs/s", flush=True)
    return rows


def bench_command(root: str, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as results:
        cmd = [sys.executable, "-m", "experiments", *RUN_OVERRIDES, f"device={device.type}", f"results_dir={results}"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ, MNIST_ROOT=root))
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"error: the suite's command failed: {proc.stderr.read().decode()}")
        study = Path(results) / "depth_sigmoid" / "lecture"
        summary = pd.read_csv(study / "summary.csv").set_index("variant")
        train_seconds = json.loads((study / "verdict.json").read_text())["train_seconds"]
    test_acc = float(summary.loc["3_layers", "mean"])
    return {"seconds": seconds, "fixed_seconds": seconds - train_seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
            "test_acc": test_acc}


def bench_startup() -> dict:
    """A whole process that imports torch: the start-up any PyTorch program pays. (One that builds
    a torch.optim optimizer pays about 1.3 s more on 2 cores: it imports torch._dynamo. The suite's
    own optimizers, experiments.optim, do not.)"""
    code = "import torch"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return {"seconds": time.perf_counter() - started}


def bench_tutorial(root: str, device: torch.device, seed: int) -> dict:
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    train_set = Subset(datasets.MNIST(root, train=True, transform=transforms.ToTensor()), range(TRAIN_SIZE))
    test_set = datasets.MNIST(root, train=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=BATCH)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, WIDTH), nn.Sigmoid(), nn.Linear(WIDTH, WIDTH), nn.Sigmoid(),
                          nn.Linear(WIDTH, WIDTH), nn.Sigmoid(), nn.Linear(WIDTH, 10)).to(device)
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
    return {"seconds": time.perf_counter() - started, "test_acc": correct / len(test_set)}


def bench_keras(root: str, seed: int) -> dict | None:
    if importlib.util.find_spec("keras") is None:
        return None
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("keras_lecture.py")), root, str(seed)],
                          capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="torch"))
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"error: the Keras script failed: {proc.stderr.strip().splitlines()[-1:]}")
    fit = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": fit["fit_seconds"], "process_seconds": seconds, "test_acc": fit["test_acc"], "keras": fit["keras"]}


def matmul_rate(device: torch.device, n: int = 4096, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return 2 * n ** 3 / statistics.median(times[2:])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0] if isinstance(runs[0][key], float)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Speed benchmark of the lecture protocol.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="results")
    parser.add_argument("--root", default=os.environ.get("MNIST_ROOT", "data"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    seeds = range(args.repeats)
    header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
              "repeats": args.repeats, "parameters": PARAMS, "train_flops": TRAIN_FLOPS}
    print(f"benchmark on {header['device']}, {header['threads']} threads, torch {header['torch']}", flush=True)

    rate = matmul_rate(device)
    results = {"matmul_flops": rate, "ideal_train_seconds": TRAIN_FLOPS / rate}
    print(f"matmul {rate / 1e9:.0f} GFLOP/s; ideal training time {TRAIN_FLOPS / rate:.2f} s", flush=True)
    for name, bench in (("suite", lambda s: bench_suite(args.root, device, s)),
                        ("command", lambda s: bench_command(args.root, device)),
                        ("startup", lambda s: bench_startup()),
                        ("tutorial", lambda s: bench_tutorial(args.root, device, s)),
                        ("seeds", lambda s: bench_vectorised(args.root, device)),
                        ("keras", lambda s: bench_keras(args.root, s))):
        if name == "keras" and device.type != "cpu":
            continue  # the Keras comparison is a CPU one; its torch backend picks its own device
        runs = [bench(s) for s in seeds]
        if runs[0] is None:
            print(f"{name}: skipped (keras is not installed: pip install -e '.[bench]')", flush=True)
            continue
        results[name] = median_of(runs) | {"runs": runs}
        if "keras" in runs[0]:
            results[name]["keras"] = runs[0]["keras"]
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in median_of(runs).items()), flush=True)

    if device.type == "cuda":  # on a 2-core CPU a hundred lecture runs take an hour: the seeds row covers it
        results["batched"] = bench_batched(args.root, device, rate)
    suite = results["suite"]
    results["suite_train_fraction_of_matmul"] = TRAIN_FLOPS / suite["train_seconds"] / rate
    for other in ("tutorial", "keras"):
        if other in results:
            results[f"speedup_vs_{other}"] = results[other]["seconds"] / suite["seconds"]
    if "keras" in results:
        results["command_speedup_vs_keras_process"] = results["keras"]["process_seconds"] / results["command"]["seconds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (out / f"bench{suffix}.json").write_text(json.dumps({"header": header, "results": results}, indent=2) + "\n")
    (out / f"BENCH{suffix}.md").write_text(render(header, results))
    print(render(header, results))
    return 0


def render(header: dict, results: dict) -> str:
    suite = results["suite"]
    rate = results["matmul_flops"]
    lines = ["# Speed benchmark: the lecture protocol", "",
             f"{header['device']} · {header['threads']} threads · torch {header['torch']} · Python {header['python']} · "
             f"median of {header['repeats']} repeats · generated by `python scripts/bench.py`", "",
             f"Model 784-500-500-500-10 sigmoid ({header['parameters']:,} parameters), cross-entropy, SGD lr 0.1, "
             f"batch 100, 20 epochs on the first 10k MNIST images, test set evaluated after every epoch.", ""]
    contenders = [["suite's loop (`experiments.train`)", f"{suite['seconds']:.2f}", "–", f"{suite['test_acc']:.4f}"]]
    for name, label in (("tutorial", "PyTorch tutorial (DataLoader + ToTensor)"),
                        ("keras", f"Keras {results['keras']['keras']} (torch backend)" if "keras" in results else "Keras (torch backend)")):
        if name in results:
            contenders.append([label, f"{results[name]['seconds']:.2f}", f"{results[f'speedup_vs_{name}']:.2f}×",
                               f"{results[name]['test_acc']:.4f}"])
        else:
            contenders.append([label, "not measured", "–", "–"])
    measures = [["matmul rate (float32 4096² `torch.mm`)", f"{rate / 1e9:.0f} GFLOP/s"],
                ["training FLOPs (6 × parameters × samples × epochs)", f"{header['train_flops'] / 1e9:.0f} GFLOP"],
                ["ideal training time at the matmul rate", f"{results['ideal_train_seconds']:.2f} s"],
                ["suite's training time (epochs only, no test)", f"{suite['train_seconds']:.2f} s"],
                ["suite's achieved rate during training", f"{header['train_flops'] / suite['train_seconds'] / 1e9:.0f} GFLOP/s "
                 f"= {results['suite_train_fraction_of_matmul']:.0%} of the matmul rate"]]
    if "seeds" in results:
        seeds = results["seeds"]
        measures += [["3 seeds as one vectorised model (`train.vectorise=true`)",
                      f"{seeds['vectorised_seconds']:.1f} s, test accuracy {seeds['vectorised_test_acc']:.4f}"],
                     ["the same 3 seeds one after another (the CPU default)",
                      f"{seeds['sequential_seconds']:.1f} s, test accuracy {seeds['sequential_test_acc']:.4f}"]]
    if "command" in results:
        command = results["command"]
        measures += [[f"`python -m experiments {' '.join(RUN_OVERRIDES)}`, whole command", f"{command['seconds']:.1f} s"],
                     ["its fixed cost: the command less its training and per-epoch test (target ≤ 4 s)",
                      f"{command['fixed_seconds']:.1f} s"],
                     ["of which PyTorch's start-up: `import torch`, as a process",
                      f"{results['startup']['seconds']:.1f} s"],
                     ["peak RSS of that command (target ≤ 1.5 GB)", f"{command['peak_rss_mb']:.0f} MB"]]
    if "keras" in results:
        measures += [["the same job as a plain Keras script (`scripts/keras_lecture.py`), whole process",
                      f"{results['keras']['process_seconds']:.1f} s: the suite's command is "
                      f"{results['command_speedup_vs_keras_process']:.2f}× faster (target ≥ 1.5×)"]]
    lines += [*pipe_table(["contender", "seconds (20 epochs + per-epoch test)", "suite is faster by", "test accuracy"],
                          contenders), "", *pipe_table(["measure", "value"], measures), ""]
    if "batched" in results:
        lines += ["Lecture runs trained as one vectorised model (seeds 0.. at rates 0.03, 0.1, 0.3 in turn, as a "
                  "study's seeds and grid are batched; 20 epochs with the per-epoch test; once each), each training "
                  "step launched kernel by kernel or captured once in a CUDA graph and replayed (`train.cuda_graph`):",
                  "", *pipe_table(["runs batched", "CUDA graph", "seconds", "runs per second", "fraction of the matmul rate"],
                                  [[str(r["runs"]), "on" if r.get("cuda_graph") else "off", f"{r['seconds']:.2f}",
                                    f"{r['runs_per_second']:.2f}", f"{r['fraction_of_matmul']:.1%}"]
                                   for r in results["batched"]]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
