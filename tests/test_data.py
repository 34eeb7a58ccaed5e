import os
from pathlib import Path

import pytest
import torch

from experiments.data import RAW_FILES, load_mnist, make_splits
from experiments.errors import UserError


def data_cfg(root, train_size=1000, val_size=0, download=False, test_size=10000):
    return {"dataset": "mnist", "root": root, "train_size": train_size, "val_size": val_size, "test_size": test_size, "download": download}


def test_splits_have_documented_shapes_range_and_first_labels(mnist_root):
    splits = make_splits(data_cfg(mnist_root, train_size=1000, val_size=500), torch.device("cpu"))
    assert set(splits) == {"train", "val", "test"}
    assert splits["train"].x.shape == (1000, 784) and splits["train"].y.shape == (1000,)
    assert splits["val"].x.shape == (500, 784)
    assert splits["test"].x.shape == (10000, 784)
    for split in splits.values():
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.min() == 0.0 and split.x.max() == 1.0
    assert splits["train"].y[:5].tolist() == [5, 0, 4, 1, 9]
    assert splits["test"].y[:5].tolist() == [7, 2, 1, 0, 4]


def test_validation_split_comes_from_the_end_of_the_training_set(mnist_root):
    train_x, train_y, _, _ = load_mnist(mnist_root, False)
    splits = make_splits(data_cfg(mnist_root, train_size=100, val_size=50), torch.device("cpu"))
    assert torch.equal(splits["val"].y, train_y[-50:])
    assert torch.equal(splits["val"].x, train_x[-50:].reshape(50, -1).float() / 255)


def test_a_smaller_test_set_is_the_first_test_images(mnist_root):
    _, _, test_x, test_y = load_mnist(mnist_root, False)
    test = make_splits(data_cfg(mnist_root, test_size=300), torch.device("cpu"))["test"]
    assert torch.equal(test.y, test_y[:300]) and test.x.shape == (300, 784)


def test_no_validation_split_by_default(mnist_root):
    assert set(make_splits(data_cfg(mnist_root), torch.device("cpu"))) == {"train", "test"}


def test_split_larger_than_mnist_is_rejected(mnist_root):
    with pytest.raises(UserError, match="exceeds"):
        make_splits(data_cfg(mnist_root, train_size=59000, val_size=5000), torch.device("cpu"))


def test_missing_files_offline_name_the_folder(tmp_path):
    with pytest.raises(UserError) as err:
        load_mnist(str(tmp_path), False)
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)


def test_truncated_file_is_reported(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        os.symlink(Path(mnist_root) / "MNIST" / "raw" / name, raw / name)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes((Path(mnist_root) / "MNIST/raw/t10k-labels-idx1-ubyte").read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupted or truncated"):
        load_mnist(str(tmp_path), False)


def test_the_adding_problem_sums_the_two_marked_values_one_in_each_half():
    splits = make_splits({"dataset": "adding", "seq_len": 20, "train_size": 300, "val_size": 50, "test_size": 100},
                         torch.device("cpu"))
    assert [len(splits[name]) for name in ("train", "val", "test")] == [300, 50, 100]
    x, y = splits["train"].x, splits["train"].y
    assert x.shape == (300, 20, 2) and splits["train"].shape == (2, 1)
    values, markers = x[..., 0], x[..., 1]
    assert torch.all(markers.sum(1) == 2) and torch.all(markers[:, :10].sum(1) == 1)
    assert torch.allclose((values * markers).sum(1), y)
    # a constant guess of 1 scores about 1/6
    assert abs((y - 1).square().mean().item() - 1 / 6) < 0.03
    # a fixed draw: the same sequences every time, different between the splits
    again = make_splits({"dataset": "adding", "seq_len": 20, "train_size": 300, "val_size": 50, "test_size": 100},
                        torch.device("cpu"))
    assert torch.equal(again["train"].x, x) and not torch.equal(splits["test"].x[:50], x[:50])


def test_mnist_reads_as_torchvision_reads_it(mnist_root):
    from torchvision.datasets import MNIST

    train_x, train_y, test_x, test_y = load_mnist(mnist_root, False)
    for ours, theirs in ((train_x, MNIST(mnist_root, train=True).data), (train_y, MNIST(mnist_root, train=True).targets),
                         (test_x, MNIST(mnist_root, train=False).data), (test_y, MNIST(mnist_root, train=False).targets)):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
