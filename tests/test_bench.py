"""scripts/bench.py without timing anything: its lecture run is one the suite accepts and trains,
and its report renders every row (a key the loop reads, missing from its config, once broke it)."""

import importlib.util
from pathlib import Path

import torch

from experiments.config import check_run
from experiments.data import make_splits
from experiments.train import train_run

SPEC = importlib.util.spec_from_file_location("bench", Path(__file__).parents[1] / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_the_benchmarks_lecture_run_is_one_the_suite_trains(mnist_root):
    cfg = bench.lecture_run_config(mnist_root)
    check_run(cfg)
    cfg["data"].update(train_size=200, test_size=200)
    cfg["train"].update(epochs=1)
    result = train_run(cfg, make_splits(cfg["data"], torch.device("cpu")), seed=0)
    assert result.status == "complete" and result.rows[-1]["test_acc"] > 0


def test_the_report_renders_every_row():
    header = {"device": "cpu", "threads": 2, "torch": "2", "python": "3", "repeats": 3,
              "parameters": bench.PARAMS, "train_flops": bench.TRAIN_FLOPS}
    results = {"matmul_flops": 3e11, "ideal_train_seconds": 3.0, "suite_train_fraction_of_matmul": 0.5,
               "suite": {"seconds": 8.0, "train_seconds": 6.0, "test_acc": 0.84},
               "tutorial": {"seconds": 20.0, "test_acc": 0.85}, "speedup_vs_tutorial": 2.5,
               "keras": {"seconds": 16.0, "process_seconds": 22.0, "test_acc": 0.85, "keras": "3"}, "speedup_vs_keras": 2.0,
               "command": {"seconds": 14.0, "fixed_seconds": 6.0, "peak_rss_mb": 1000.0, "test_acc": 0.84},
               "command_speedup_vs_keras_process": 22 / 14, "startup": {"seconds": 3.0},
               "seeds": {"vectorised_seconds": 30.0, "vectorised_test_acc": 0.84, "sequential_seconds": 23.0,
                         "sequential_test_acc": 0.84},
               "batched": [{"runs": n, "cuda_graph": graph, "seconds": 4.0, "runs_per_second": n / 4, "fraction_of_matmul": 0.01}
                           for graph in (False, True) for n in bench.BATCHED_RUNS]}
    page = bench.render(header, results)
    for shown in ("1.57× faster (target ≥ 1.5×)", "its fixed cost", "PyTorch's start-up", "| 100 | on | 4.00 | 25.00 |"):
        assert shown in page, shown
