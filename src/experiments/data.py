"""The data as tensors on the training device, split by config: MNIST (loaded once per process),
a 1-D function to regress, or the adding problem's sequences (both sampled)."""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.errors import UserError

# Byte-exact sizes and MD5s of the four raw files torchvision reads (MNIST/raw/).
RAW_FILES = {
    "train-images-idx3-ubyte": (47040016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7840016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10008, "27ae3e4e09519cfbb04c329615203637"),
}
N_TRAIN_TOTAL = 60000
N_TEST_TOTAL = 10000
N_FEATURES = 28 * 28
N_CLASSES = 10


@dataclass
class Split:
    x: torch.Tensor  # float32, (n, 784), pixels in [0, 1]; of a 1-D function, (n, 1) in [-1, 1]; of the adding problem, (n, steps, 2)
    y: torch.Tensor  # int64, (n,), the class; of a regression, float32 (n,), its value

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int]:
        """(inputs, outputs) of a model for this data: 10 classes, or one value to regress."""
        return self.x.shape[-1], (1 if self.y.is_floating_point() else N_CLASSES)


def _read_checked(path: Path, size: int, md5: str) -> bytes:
    """A raw MNIST file's bytes, refused unless its size and MD5 are the original's."""
    data = path.read_bytes()
    if len(data) != size or hashlib.md5(data).hexdigest() != md5:
        raise UserError(f"MNIST file {path} is corrupted or truncated (size/MD5 mismatch); "
                        f"delete it and download again, or copy the original file there")
    return data


def read_idx(data: bytes) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format): a 4-byte magic whose last byte is the number of
    dimensions, one big-endian 32-bit size per dimension, then the values. Read here rather than
    through torchvision, whose import alone costs a command seconds (it loads torch's compiler stack);
    torchvision is imported only to download."""
    if data[:3] != b"\x00\x00\x08":
        raise UserError("an MNIST file is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).view(*shape)


@functools.lru_cache(maxsize=4)
def load_mnist(root: str, download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The raw uint8 images and int64 labels of MNIST train and test, on the CPU."""
    raw_dir = Path(root) / "MNIST" / "raw"
    missing = [name for name in RAW_FILES if not (raw_dir / name).exists()]
    if missing and download:
        created = next((p for p in reversed([raw_dir, *raw_dir.parents]) if not p.exists()), None)
        try:
            from torchvision.datasets import MNIST

            MNIST(root, train=True, download=True)
            MNIST(root, train=False, download=True)
        except Exception as exc:  # no network, proxy, mirror down: all end in the same advice
            if created is not None:  # leave no empty folders behind a failed download
                shutil.rmtree(created, ignore_errors=True)
            raise UserError(f"MNIST is not in {raw_dir.resolve()} and could not be downloaded "
                            f"({type(exc).__name__}); put the four raw MNIST files there or set "
                            f"data.root / MNIST_ROOT to a folder holding MNIST/raw/") from None
        missing = [name for name in RAW_FILES if not (raw_dir / name).exists()]
    if missing:
        raise UserError(f"MNIST files missing in {raw_dir.resolve()}: {', '.join(missing)}; put them there "
                        f"or set data.root / MNIST_ROOT to a folder holding MNIST/raw/")
    images, labels = "images-idx3-ubyte", "labels-idx1-ubyte"
    tensors = {name: read_idx(_read_checked(raw_dir / name, *RAW_FILES[name])) for name in RAW_FILES}
    return (tensors[f"train-{images}"], tensors[f"train-{labels}"].long(),
            tensors[f"t10k-{images}"], tensors[f"t10k-{labels}"].long())


def _to_split(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> Split:
    x = images.to(device).reshape(len(images), N_FEATURES).float().div_(255.0)
    return Split(x=x, y=labels.to(device))


def make_splits(data: dict, device: torch.device) -> dict[str, Split]:
    """MNIST: train, the first `train_size` images; val, the last `val_size` of the 60k; test, the
    first `test_size` of the 10k. A 1-D function: function_splits; the adding problem: adding_splits."""
    if data["dataset"] == "adding":
        return adding_splits(data, device)
    if data["dataset"] != "mnist":
        return function_splits(data, device)
    train_x, train_y, test_x, test_y = load_mnist(data["root"], data["download"])
    train_size, val_size = data["train_size"], data["val_size"]
    if train_size + val_size > N_TRAIN_TOTAL:
        raise UserError(f"data.train_size + data.val_size = {train_size + val_size} exceeds the "
                        f"{N_TRAIN_TOTAL} MNIST training images")
    splits = {"train": _to_split(train_x[:train_size], train_y[:train_size], device)}
    if val_size:
        splits["val"] = _to_split(train_x[-val_size:], train_y[-val_size:], device)
    splits["test"] = _to_split(test_x[:data["test_size"]], test_y[:data["test_size"]], device)
    return splits


# 1-D functions on [-1, 1] for the universality claim: a smooth one and a triangle wave whose `teeth`
# teeth need 2 * teeth linear pieces (a one-hidden-layer ReLU net: about that many units)
FUNCTIONS = {
    "smooth": lambda x, teeth: torch.sin(math.pi * x),
    "sawtooth": lambda x, teeth: 1 - (2 * torch.frac(teeth * (x + 1) / 2) - 1).abs(),
}
FUNCTION_DATA_SEED = 1234  # the sample points are data: the same for every training seed


def function_splits(data: dict, device: torch.device) -> dict[str, Split]:
    """train and val: points drawn uniformly from [-1, 1] (each its own fixed draw); test: an even
    grid of `test_size` points over [-1, 1], so that the test error measures the fit everywhere."""
    target = FUNCTIONS[data["dataset"]]
    draw = torch.Generator().manual_seed(FUNCTION_DATA_SEED)
    xs = {"train": torch.rand(data["train_size"], generator=draw) * 2 - 1}
    if data["val_size"]:
        xs["val"] = torch.rand(data["val_size"], generator=draw) * 2 - 1
    xs["test"] = torch.linspace(-1, 1, data["test_size"])
    return {name: Split(x=x[:, None].to(device), y=target(x, data["teeth"]).to(device)) for name, x in xs.items()}


ADDING_DATA_SEED = 4321  # like the function data: one fixed draw, the same for every training seed


def adding_splits(data: dict, device: torch.device) -> dict[str, Split]:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015): each step of a
    sequence of `seq_len` carries a value drawn uniformly from [0, 1] and a marker, 1 at two steps (one in
    each half) and 0 elsewhere; the target is the sum of the two marked values. Predicting the mean, 1,
    scores a squared error of 1/6 ≈ 0.167; beating it needs a memory that spans the sequence.
    train, val and test: independent draws of train_size, val_size and test_size sequences."""
    draw = torch.Generator().manual_seed(ADDING_DATA_SEED)
    steps, half = data["seq_len"], data["seq_len"] // 2
    splits = {}
    for name, n in (("train", data["train_size"]), ("val", data["val_size"]), ("test", data["test_size"])):
        if not n:
            continue
        values = torch.rand(n, steps, generator=draw)
        rows = torch.arange(n)
        first = torch.randint(0, half, (n,), generator=draw)
        second = torch.randint(half, steps, (n,), generator=draw)
        markers = torch.zeros(n, steps)
        markers[rows, first] = markers[rows, second] = 1.0
        splits[name] = Split(x=torch.stack([values, markers], dim=-1).to(device),
                             y=(values[rows, first] + values[rows, second]).to(device))
    return splits
