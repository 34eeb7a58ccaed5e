"""Typed schema of every config: Hydra rejects unknown keys and wrong types against it.

The YAML files under `configs/` only set values; the shape and the allowed values live here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from experiments.errors import UserError


CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def experiment_names() -> list[str]:
    """The experiments `name=` can pick: the files of configs/name/."""
    return sorted(p.stem for p in (CONFIG_DIR / "name").glob("*.yaml"))


def protocol_names() -> list[str]:
    """The protocols `protocol=` can pick: the files of configs/protocol/."""
    return sorted(p.stem for p in (CONFIG_DIR / "protocol").glob("*.yaml"))


class Activation(str, Enum):
    sigmoid = "sigmoid"
    relu = "relu"
    tanh = "tanh"
    identity = "identity"


class Init(str, Enum):
    glorot_uniform = "glorot_uniform"  # Keras' default: Xavier uniform weights, zero biases
    torch_default = "torch_default"  # whatever nn.Linear does on construction
    he = "he"  # Kaiming normal (fan-in, ReLU gain), zero biases
    small_normal = "small_normal"  # N(0, 0.01^2) whatever the fan-in, zero biases (the naive choice)
    identity = "identity"  # rnn cell only: the IRNN's identity recurrent weights (models/rnn.py)


class Loss(str, Enum):
    cross_entropy = "cross_entropy"
    mse = "mse"  # squared error between the softmax output and the one-hot target
    squared_error = "squared_error"  # regression: the one output's squared error (1-D function data)


class DataSet(str, Enum):
    mnist = "mnist"
    # 1-D regression on x in [-1, 1] (experiments/data.py): sin(pi x), and a triangle wave of `teeth` teeth
    smooth = "smooth"
    sawtooth = "sawtooth"
    # the adding problem (Hochreiter & Schmidhuber 1997): sequences of `seq_len` steps of (value, marker);
    # the target is the sum of the two marked values
    adding = "adding"


class Cell(str, Enum):  # models/rnn.py
    rnn = "rnn"
    lstm = "lstm"
    gru = "gru"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OptimizerName(str, Enum):  # optim.Optimizer implements each
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    adagrad = "adagrad"
    adadelta = "adadelta"


# the settings each optimizer reads besides the rate (OptimizerConfig's names)
OPTIMIZER_SETTINGS = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("weight_decay",),
    "adamw": ("weight_decay",),
    "rmsprop": ("momentum", "weight_decay"),
    "adagrad": ("weight_decay",),
    "adadelta": ("weight_decay",),
}


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"  # the rate decays to 0 along a half cosine over the epochs


@dataclass
class ModelConfig:
    arch: str = "mlp"  # or maxout, resmlp, rescnn, cnn, rnn (src/models/)
    depth: int = 3  # hidden layers (weight layers for rescnn: 6n + 2)
    width: int = 500  # units per hidden layer (channels of the first stage for rescnn)
    activation: Activation = Activation.sigmoid
    init: Init = Init.glorot_uniform
    dropout: float = 0.0  # probability of dropping a hidden unit in training (mlp)
    residual: bool = False  # identity shortcuts around each block of two layers (resmlp, rescnn)
    pieces: int = 2  # linear pieces per maxout unit (maxout)
    batch_norm: bool = False  # batch norm before each hidden activation (mlp)
    # cnn (models/cnn.py): the convolutions' kernel sizes and output channels, the max-pool after
    # them and the dropout there; `width` is the dense layer's, `dropout` the dense layer's dropout
    kernels: List[int] = field(default_factory=lambda: [3, 3])
    channels: List[int] = field(default_factory=lambda: [32, 64])
    pool: int = 2
    conv_dropout: float = 0.0
    cell: Cell = Cell.rnn  # rnn: the recurrent cell; `width` is its hidden size, `activation` the plain cell's
    # rnn: the initial recurrent weights multiplied by this (after `init`); above about 3 PyTorch's default
    # puts a tanh RNN's recurrent map past a spectral radius of 1.5, where its gradient can explode
    recurrent_gain: float = 1.0


@dataclass
class DataConfig:
    dataset: DataSet = DataSet.mnist
    teeth: int = 16  # the sawtooth's teeth over [-1, 1]
    seq_len: int = 100  # the adding problem's sequence length
    # MNIST via torchvision; offline, point MNIST_ROOT (or data.root) at a folder holding MNIST/raw/
    root: str = "${oc.env:MNIST_ROOT,data}"
    train_size: int = 10000  # the first N training images (after the validation split)
    val_size: int = 0  # held out from the end of the 60k training images
    test_size: int = 10000  # the first N test images; fewer only for quick checks (results/ uses all)
    download: bool = True  # try torchvision's download when the files are missing


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.sgd
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant


@dataclass
class TrainConfig:
    loss: Loss = Loss.cross_entropy
    batch_size: int = 100
    epochs: int = 20
    # stop after this many optimizer updates, the last epoch cut short (equal-updates comparisons
    # that hold under any training-set size); null: every epoch in full
    max_updates: Optional[int] = None
    eval_every: int = 1  # evaluate validation and test sets every k epochs (and at the last)
    # augmentation of each training batch on the device (experiments/augment.py): a random rotation
    # within ±rotate_degrees and a random shift within ±shift_pixels per image, drawn afresh every step
    rotate_degrees: float = 0.0
    shift_pixels: float = 0.0
    eval_batch_size: int = 10000
    # rescale each seed's whole gradient to at most this L2 norm before the update (Pascanu et al.
    # 2013); null: never
    clip_grad_norm: Optional[float] = None
    # train a variant's seeds and grid rates as one vectorised model (torch.func.vmap); null: yes on CUDA, no on CPU
    vectorise: Optional[bool] = None
    # CUDA only: capture the training step once in a CUDA graph and replay it, one launch a step
    # instead of one a kernel (train.StaticStep). Off by default until measured on a GPU.
    cuda_graph: bool = False


class TuneOn(str, Enum):
    val_acc = "val_acc"  # the highest validation accuracy
    val_loss = "val_loss"  # the lowest validation loss
    # the lowest mean of log10 validation loss: where a fit's error spans decades and the verdict
    # compares log10 losses, so that one stalled seed does not outweigh the rest
    log10_val_loss = "log10_val_loss"


class CheckKind(str, Enum):
    beats = "beats"  # better's advantage over worse is > 0 (experiments/verdicts.py)
    not_worse = "not_worse"  # better's deficit is below `margin` (non-inferiority)
    equivalent = "equivalent"  # the difference lies within ±margin (two one-sided tests)


@dataclass
class CheckConfig:
    """One statement of a claim, tested on the difference of two variants' means over seeds (or of
    one variant's mean and the number `value`, or a contrast of more variants: `versus`, `pairs`);
    see experiments/verdicts.py."""
    better: str = MISSING
    worse: str = ""  # the other variant; empty when `value` is given
    value: Optional[float] = None  # compare `better` with this fixed number instead of a variant
    metric: str = ""  # a per-run column (see metrics.per_run); empty: the verdict's metric
    lower_is_better: bool = False
    kind: CheckKind = CheckKind.beats
    # stated before running: for not_worse the largest deficit that still counts as "not worse",
    # for equivalent the half-width of the band, for beats the smallest advantage that matters
    margin: float = 0.0
    key: bool = True  # a key statement: the claim is "not reproduced" when every key check fails
    note: str = ""  # what the check stands for, in a few words
    # two more variants: the check is then on (better - worse) - (versus[0] - versus[1]), kind beats
    versus: List[str] = field(default_factory=list)
    # more [better, worse] pairs: the check is then on the mean of every pair's advantage, this one's too
    pairs: List[List[str]] = field(default_factory=list)
    # a side check stating what the claim presupposes: failed or open, it leaves the verdict inconclusive
    premise: bool = False


@dataclass
class VerdictConfig:
    metric: str = "test_acc"  # per-run column the table and the lecture's numbers are about
    better: str = ""  # variant the lecture says wins (the single check, when `checks` is empty)
    worse: str = ""
    checks: List[CheckConfig] = field(default_factory=list)  # several statements of the claim
    # lecture protocol only: each variant's mean must lie within ±tolerance of the lecture's number
    # (an equivalence side check); 0.05 is a few times a single run's seed spread (the lecture's
    # number is one Keras run). null when the lecture's numbers come from another data set or are a
    # derived bound, so only directions compare
    tolerance: Optional[float] = 0.05


@dataclass
class RevisionConfig:
    """A change of the study's settings or rule made after results existed, with its reason."""
    commit: str = MISSING  # the commit that made the change (as much of its hash as is unique)
    date: str = MISSING
    what: str = MISSING
    why: str = MISSING


@dataclass
class ExperimentConfig:
    name: str = "${hydra:runtime.choices.name}"
    title: str = MISSING
    claim: str = MISSING
    section: str = ""  # CLAIMS.md's section, e.g. "C. Optimisation"; orders the report
    lecture_ref: str = ""  # where the lecture's numbers come from
    source_ref: str = ""  # the source paper's numbers, where CLAIMS.md gives them
    # variant label -> partial config merged over the base config, e.g. {model: {activation: relu}}
    variants: Dict[str, Any] = field(default_factory=dict)
    # dotted key -> values, crossed with every variant: {optimizer.lr: [0.01, 0.1]} turns variant
    # `sgd` into runs `sgd_lr0.01` and `sgd_lr0.1`; the analysis then compares each variant at its
    # own configured value (`sgd_default`) and at the value with the best validation accuracy (`sgd_tuned`)
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    # protocol -> the grid used under that protocol, in place of `grid`: a claim whose lecture numbers
    # fix its settings keeps them under protocol=lecture and is tuned per variant under protocol=modern.
    # In a grid study a check that names a plain variant compares it at its tuned value.
    protocol_grids: Dict[str, Dict[str, List[Any]]] = field(default_factory=dict)
    # what a grid's `_tuned` point maximises on the validation split: val_acc, or (regression) the
    # lowest val_loss or mean log10 val_loss
    tune_on: TuneOn = TuneOn.val_acc
    # variant label -> the lecture's number for verdict.metric
    lecture: Dict[str, float] = field(default_factory=dict)
    lecture_label: str = ""  # column title for those numbers; default "lecture <metric>"
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    probes: List[str] = field(default_factory=list)  # extra measurements on each trained model (probes.py)
    figures: List[str] = field(default_factory=lambda: ["curves"])  # plots.FIGURES
    revisions: List[RevisionConfig] = field(default_factory=list)  # shown in the report (revisions.py)
    # what the design cannot show or where it falls short of the claim, shown in the report under the
    # claim; protocol -> those about one protocol's runs, shown under its verdict. A number from the
    # results is a placeholder, {variant.column}, filled from the committed table (caveats.py)
    caveats: List[str] = field(default_factory=list)
    protocol_caveats: Dict[str, List[str]] = field(default_factory=dict)
    # protocol -> the hardware the study under it is left to, where a 2-core CPU is too slow for it
    # ("a GPU"): until it has results the report says so in place of 'not run'; protocol_caveats say why
    rerun_waits_for: Dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    device: Device = Device.auto
    results_dir: str = "results"
    force: bool = False  # re-run seeds that already completed
    only: Optional[List[str]] = None  # train just these variants


def register_schema() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


# sizes past these are typing errors, and building such a net (even on the meta device) would hang
MAX_DEPTH, MAX_WIDTH = 1000, 65536
# the largest learning rate and weight decay: a rate of 1e39 overflows float32 in the update (a run
# that large diverges at once anyway, and is recorded as diverged below this bound)
MAX_RATE = 1e6
MAX_SEQ_LEN = 10000
MAX_RECURRENT_GAIN = 100.0  # far past where a tanh RNN saturates; guards against a mistyped value
IMAGE_ARCHITECTURES = ("cnn", "rescnn")


def check_run(run: dict) -> None:
    """The schema's ranges: reject values its types and enums allow but training cannot use."""
    import torch

    from experiments.data import N_CLASSES, N_FEATURES, N_TEST_TOTAL, N_TRAIN_TOTAL
    from models import build_model

    model, data, opt, train = run["model"], run["data"], run["optimizer"], run["train"]
    problems = []
    if not 1 <= model["depth"] <= MAX_DEPTH:
        problems.append(f"model.depth must be in 1..{MAX_DEPTH} (got {model['depth']})")
    if not 1 <= model["width"] <= MAX_WIDTH:
        problems.append(f"model.width must be in 1..{MAX_WIDTH} (got {model['width']})")
    for key in ("dropout", "conv_dropout"):
        if not 0 <= model[key] < 1:
            problems.append(f"model.{key} must be in [0, 1) (got {model[key]})")
    if model["pool"] < 1:
        problems.append(f"model.pool must be >= 1 (1: no pooling; got {model['pool']})")
    if not problems:  # each architecture checks its own shape rules; the meta device allocates nothing
        try:
            with torch.device("meta"):
                build_model(model, N_FEATURES, N_CLASSES)
        except ValueError as error:
            problems.append(str(error))
    if not 0 < opt["lr"] <= MAX_RATE:  # larger rates overflow float32 in the update itself
        problems.append(f"optimizer.lr must be a finite number > 0 and at most {MAX_RATE:.0e} (got {opt['lr']})")
    if not 0 <= opt["momentum"] < 1:
        problems.append(f"optimizer.momentum must be in [0, 1) (got {opt['momentum']})")
    if opt["nesterov"] and opt["momentum"] == 0:
        problems.append("optimizer.nesterov=true needs optimizer.momentum > 0 (Nesterov's look-ahead is along the momentum)")
    if not 0 <= opt["weight_decay"] <= MAX_RATE:
        problems.append(f"optimizer.weight_decay must be a finite number >= 0 and at most {MAX_RATE:.0e} "
                        f"(got {opt['weight_decay']})")
    if not 1 <= data["train_size"] <= N_TRAIN_TOTAL or data["val_size"] < 0:
        problems.append(f"data.train_size must be in 1..{N_TRAIN_TOTAL} and data.val_size >= 0")
    elif data["train_size"] + data["val_size"] > N_TRAIN_TOTAL:
        problems.append(f"data.train_size + data.val_size must be <= {N_TRAIN_TOTAL}")
    if not 1 <= data["test_size"] <= N_TEST_TOTAL:
        problems.append(f"data.test_size must be in 1..{N_TEST_TOTAL} (got {data['test_size']})")
    if (data["dataset"] == "mnist") == (train["loss"] == "squared_error"):
        problems.append(f"train.loss squared_error goes with a regression (data.dataset smooth, sawtooth or adding), the "
                        f"other losses with mnist (got data.dataset {data['dataset']}, train.loss {train['loss']})")
    if model["arch"] in IMAGE_ARCHITECTURES and data["dataset"] != "mnist":
        problems.append(f"model.arch {model['arch']} reads images: it needs data.dataset mnist (got {data['dataset']})")
    if (model["arch"] == "rnn") != (data["dataset"] == "adding"):
        problems.append(f"model.arch rnn and data.dataset adding go together: a recurrent net reads sequences, and only "
                        f"it does (got model.arch {model['arch']}, data.dataset {data['dataset']})")
    if model["recurrent_gain"] != 1.0 and model["arch"] != "rnn":
        problems.append(f"model.recurrent_gain scales a recurrent net's recurrent weights: it needs model.arch rnn "
                        f"(got model.arch {model['arch']})")
    if not 0 < model["recurrent_gain"] <= MAX_RECURRENT_GAIN:
        problems.append(f"model.recurrent_gain must be a number > 0 and at most {MAX_RECURRENT_GAIN} "
                        f"(got {model['recurrent_gain']})")
    if not 2 <= data["seq_len"] <= MAX_SEQ_LEN:
        problems.append(f"data.seq_len must be in 2..{MAX_SEQ_LEN} (got {data['seq_len']})")
    clip = train["clip_grad_norm"]
    if clip is not None and not 0 < clip < math.inf:
        problems.append(f"train.clip_grad_norm must be a finite number > 0, or null (got {clip})")
    if not (0 <= train["rotate_degrees"] <= 180 and 0 <= train["shift_pixels"] <= 14):
        problems.append(f"train.rotate_degrees must be in [0, 180] and train.shift_pixels in [0, 14] "
                        f"(got {train['rotate_degrees']}, {train['shift_pixels']})")
    if train["cuda_graph"] and (train["rotate_degrees"] or train["shift_pixels"]):
        problems.append("train.cuda_graph cannot capture augmentation, whose draws come from generators on the CPU: "
                        "leave train.rotate_degrees and train.shift_pixels at 0, or train.cuda_graph false")
    if (train["rotate_degrees"] or train["shift_pixels"]) and data["dataset"] != "mnist":
        problems.append("train.rotate_degrees and train.shift_pixels augment images: they need data.dataset mnist")
    if data["teeth"] < 1:
        problems.append(f"data.teeth must be >= 1 (got {data['teeth']})")
    if not 1 <= train["batch_size"] <= data["train_size"]:
        problems.append(f"train.batch_size must be in 1..data.train_size={data['train_size']} (got {train['batch_size']})")
    if min(train["epochs"], train["eval_batch_size"], train["eval_every"],
           1 if train["max_updates"] is None else train["max_updates"]) < 1:
        problems.append("train.epochs, train.max_updates, train.eval_every and train.eval_batch_size must be >= 1")
    if problems:
        raise UserError("; ".join(problems))



def grid_runs(variants: dict, grid: dict) -> dict[str, tuple[str, dict]]:
    """Run label -> (variant, {dotted key: value}) for a grid experiment; label -> (label, {}) otherwise."""
    runs = {label: (label, {}) for label in variants}
    for key, values in grid.items():
        short = key.rsplit(".", 1)[-1]
        runs = {f"{label}_{short}{value}": (base, {**point, key: value})
                for label, (base, point) in runs.items() for value in values}
    return runs


def apply_protocol_grid(cfg: DictConfig, protocol: str) -> None:
    """Make the experiment's grid the one it names for this protocol, if it names one."""
    spec = cfg.experiment
    spec.grid = grid_for(spec, protocol)


def grid_for(spec, protocol: str):
    """The grid an experiment block (a config or its dict) runs under `protocol`: the one
    `protocol_grids` names for it, else `grid`."""
    unknown = sorted(set(spec["protocol_grids"]) - set(protocol_names()))
    if unknown:  # a misspelt protocol's grid would be skipped without a word
        raise UserError(f"experiment {spec['name']!r}: protocol_grids names no protocol {', '.join(map(repr, unknown))} "
                        f"(known: {', '.join(protocol_names())})")
    return spec["protocol_grids"].get(protocol, spec["grid"])


def override_key(override: str) -> str:
    """The key a command-line override sets ('+model.width=100' -> 'model.width')."""
    return override.lstrip("+~").split("=", 1)[0]


def protocol_settings(protocol: str) -> dict:
    """The settings a protocol gives the base config (configs/config.yaml's default model, data
    and optimizer, then configs/protocol/<protocol>.yaml), before any experiment changes them."""
    cfg = OmegaConf.structured(Config)
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "config.yaml").defaults)
    for entry in defaults:
        if isinstance(entry, dict):
            ((group, choice),) = entry.items()
            if group in ("model", "data", "optimizer"):
                cfg[group] = OmegaConf.merge(cfg[group], OmegaConf.load(CONFIG_DIR / group / f"{choice}.yaml"))
    cfg = OmegaConf.merge(cfg, OmegaConf.load(CONFIG_DIR / "protocol" / f"{protocol}.yaml"))
    return {group: OmegaConf.to_container(cfg[group], enum_to_str=True) for group in ("model", "data", "optimizer", "train")}
