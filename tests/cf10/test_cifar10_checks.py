"""CIFAR10 input checks (common/cifar10.py): bad labels, float pixels, label/image count mismatch, checksum mismatch,
a partial folder, and the explicit --cifar10-unverified escape hatch; each a one-line DataError naming the file."""
from __future__ import annotations

import argparse
import hashlib
import pickle

import numpy as np
import pytest
from torchvision import datasets

from common import cifar10
from common.errors import DataError
from tests.fakedata import write_fake_cifar10


@pytest.fixture
def fake(tmp_path):
    write_fake_cifar10(tmp_path, n_train=10, n_test=4)
    return tmp_path


def rewrite(path, **changes) -> None:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry.update(changes)
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def bytes_md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("change, problem", [
    (lambda e: {"labels": [10] + e["labels"][1:]}, "labels must be integers in 0..9, found"),
    (lambda e: {"labels": [-1] + e["labels"][1:]}, "labels must be integers in 0..9, found -1"),
    (lambda e: {"data": e["data"].astype(np.float32)}, "holds float32 pixels; expected uint8"),
    (lambda e: {"labels": e["labels"][:-1]}, "has 1 labels for 2 images"),
    (lambda e: {"data": e["data"][:, :100]}, "holds images of shape [2, 100]; expected [N, 3072]"),
])
def test_malformed_batch_file_is_a_data_error_naming_it(fake, cifar10_no_md5, change, problem):
    path = fake / "cifar-10-batches-py" / "data_batch_3"
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    rewrite(path, **change(entry))
    with pytest.raises(DataError) as info:
        cifar10.dataset(fake, True, None)
    message = str(info.value)
    assert message.startswith(f"CIFAR10 file {path}") and problem in message and "\n" not in message
    assert info.value.exit_code == 3


def test_garbage_batch_file(fake, cifar10_no_md5):
    path = fake / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match=f"CIFAR10 file {path} is not readable"):
        cifar10.dataset(fake, False, None)


def test_good_fake_files_load(fake, cifar10_no_md5):
    train = cifar10.dataset(fake, True, None)
    assert len(train) == 10 and train.classes[0] == "airplane"


def test_checksum_mismatch_names_the_file(fake):
    """The fake files are not the official ones, so torchvision's md5 of data_batch_1 differs (checked by hashlib)."""
    first = fake / "cifar-10-batches-py" / "data_batch_1"
    assert bytes_md5(first) != datasets.CIFAR10.train_list[0][1]
    before = first.read_bytes()
    with pytest.raises(DataError) as info:
        cifar10.dataset(fake, True, None)
    assert str(info.value).startswith(f"checksum mismatch for {first} ")
    assert "--cifar10-unverified" in str(info.value)
    assert first.read_bytes() == before  # nothing downloaded over it


def test_unverified_flag_uses_the_local_copy_with_a_warning(fake, capsys):
    parser = argparse.ArgumentParser()
    cifar10.add_args(parser)
    args = parser.parse_args(["--cifar10-unverified"])
    args.data_dir, args.auto_augment, args.random_erase = str(fake), "none", 0.0
    train, test = cifar10.datasets_from_args(args)
    assert (len(train), len(test)) == (10, 4)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --cifar10-unverified")


def test_unverified_still_checks_the_content(fake):
    path = fake / "cifar-10-batches-py" / "data_batch_1"
    rewrite(path, labels=[42, 0])
    with pytest.raises(DataError, match="labels must be integers"):
        cifar10.dataset(fake, True, None, unverified=True)


def test_partial_folder_is_refused_not_overwritten(fake, cifar10_no_md5):
    (fake / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="lacks data_batch_4; extract"):
        cifar10.dataset(fake, True, None)
