"""Typed schema of every config: Hydra rejects unknown keys and wrong types against it.

The YAML files under `configs/` only set values; the shape and the allowed values live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Activation(str, Enum):
    sigmoid = "sigmoid"
    relu = "relu"
    tanh = "tanh"
    identity = "identity"


class Init(str, Enum):
    glorot_uniform = "glorot_uniform"  # Keras' default: Xavier uniform weights, zero biases
    torch_default = "torch_default"  # whatever nn.Linear does on construction
    he = "he"  # Kaiming normal (fan-in, ReLU gain), zero biases


class Loss(str, Enum):
    cross_entropy = "cross_entropy"
    mse = "mse"  # squared error between the softmax output and the one-hot target


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class ModelConfig:
    arch: str = "mlp"
    depth: int = 3  # hidden layers
    width: int = 500  # units per hidden layer
    activation: Activation = Activation.sigmoid
    init: Init = Init.glorot_uniform
    dropout: float = 0.0  # probability of dropping a hidden unit in training


@dataclass
class DataConfig:
    root: str = "data"
    train_size: int = 10000  # the first N training images (after the validation split)
    val_size: int = 0  # held out from the end of the 60k training images
    download: bool = True  # try torchvision's download when the files are missing


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    loss: Loss = Loss.cross_entropy
    batch_size: int = 100
    epochs: int = 20
    eval_batch_size: int = 10000


@dataclass
class VerdictConfig:
    metric: str = "test_acc"  # final-epoch column compared across variants
    better: str = MISSING  # variant the lecture says wins
    worse: str = MISSING
    tolerance: float = 0.05  # |ours - lecture| allowed for "reproduced" rather than "partly"


@dataclass
class ExperimentConfig:
    name: str = "${hydra:runtime.choices.name}"
    title: str = MISSING
    claim: str = MISSING
    lecture_ref: str = ""  # where the lecture's numbers come from
    # variant label -> partial config merged over the base config, e.g. {model: {activation: relu}}
    variants: Dict[str, Any] = field(default_factory=dict)
    # variant label -> the lecture's number for verdict.metric
    lecture: Dict[str, float] = field(default_factory=dict)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    device: Device = Device.auto
    results_dir: str = "results"
    force: bool = False  # re-run seeds that already completed
    only: Optional[List[str]] = None  # train just these variants


def register_schema() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)
