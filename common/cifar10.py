"""CIFAR10 as in the survey's recipe (shared by cf10 and scf10): torchvision dataset, transforms, download errors."""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets import cifar
from torchvision.transforms import v2

from common import distributed
from common.errors import DataError, UsageError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
NUM_CLASSES = 10
FOLDER = "cifar-10-batches-py"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _to_normalised_tensor() -> list:
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


def train_transform(auto_augment: str = "ta_wide", random_erase: float = 0.1) -> v2.Compose:
    """HFlip(0.5) -> TrivialAugmentWide(bilinear) -> [0, 1] tensor -> Normalize -> RandomErasing(p) (no crop)."""
    steps = [v2.RandomHorizontalFlip(0.5)]
    if auto_augment == "ta_wide":
        steps.append(v2.TrivialAugmentWide(interpolation=v2.InterpolationMode.BILINEAR))
    steps += _to_normalised_tensor()
    if random_erase > 0:
        steps.append(v2.RandomErasing(p=random_erase))
    return v2.Compose(steps)


def test_transform() -> v2.Compose:
    return v2.Compose(_to_normalised_tensor())


def add_args(parser) -> None:
    """``--cifar10-unverified``: use local CIFAR10 files whose checksums do not match (says so on stderr)."""
    parser.add_argument("--cifar10-unverified", action="store_true",
                        help="use the local cifar-10-batches-py files even if their md5 sums differ from the "
                             "official ones (a warning says so)")


class _UnverifiedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 over local files whose md5 sums were deliberately not checked (--cifar10-unverified)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = list(CLASSES)
        self.class_to_idx = {name: i for i, name in enumerate(CLASSES)}


def _files() -> list[tuple[str, str]]:
    """(file name, official md5) of every file torchvision checks: 5 train batches, test batch, meta."""
    meta = datasets.CIFAR10.meta
    return [*datasets.CIFAR10.train_list, *datasets.CIFAR10.test_list, [meta["filename"], meta["md5"]]]


def check_checksums(folder: Path) -> None:
    """Every file's md5 equals the official one; else :class:`DataError` "checksum mismatch for FILE"."""
    for name, md5 in _files():
        if not cifar.check_integrity(str(folder / name), md5):
            raise DataError(f"checksum mismatch for {folder / name} (not the official CIFAR10 file: damaged or "
                            f"changed); extract {URL} again, or pass --cifar10-unverified to use it as it is")


def check_batch_file(path: Path) -> int:
    """One ``data_batch_*`` / ``test_batch`` pickle: uint8 images ``[N, 3072]``, N integer labels in 0..9; returns N.
    Raises :class:`DataError` naming the file and the problem."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as e:  # any unpickling failure means a damaged file
        raise DataError(f"CIFAR10 file {path} is not readable ({type(e).__name__}: {e})") from None
    labels = entry.get("labels", entry.get("fine_labels")) if isinstance(entry, dict) else None
    if labels is None or "data" not in entry:
        raise DataError(f"CIFAR10 file {path} lacks the 'data' and 'labels' entries")
    data, labels = np.asarray(entry["data"]), np.asarray(labels)
    if data.dtype != np.uint8:
        raise DataError(f"CIFAR10 file {path} holds {data.dtype} pixels; expected uint8 values 0..255")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR10 file {path} holds images of shape {list(data.shape)}; expected [N, 3072]")
    if len(labels) != len(data):
        raise DataError(f"CIFAR10 file {path} has {len(labels)} labels for {len(data)} images")
    if len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"CIFAR10 file {path}: labels must be integers in 0..{NUM_CLASSES - 1}, found "
                        f"{labels.min()}..{labels.max()} ({labels.dtype})")
    return len(data)


def _download(root: Path, train: bool, transform) -> datasets.CIFAR10:
    try:
        with distributed.main_process_first():
            return datasets.CIFAR10(str(root), train=train, transform=transform, download=True)
    except Exception as e:  # network errors, corrupt or partial downloads
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(
            f"could not download CIFAR10 into {root} ({reason}); download {URL} by hand and extract it there, so "
            f"that {root / FOLDER / 'data_batch_1'} exists") from None


def dataset(root: str | Path, train: bool, transform, unverified: bool = False) -> datasets.CIFAR10:
    """torchvision's CIFAR10 under ``root``: downloaded by rank 0 when ``root/cifar-10-batches-py`` is absent;
    local files are checked (md5 unless ``unverified``; then the split's image/label arrays) before loading, and a
    partial folder is refused rather than overwritten by a download. The caller warns about ``unverified``."""
    root = Path(root)
    folder = root / FOLDER
    missing = [name for name, _ in _files() if not (folder / name).is_file()]
    if len(missing) == len(_files()):
        return _download(root, train, transform)
    if missing:
        raise DataError(f"CIFAR10 folder {folder} lacks {', '.join(missing)}; extract {URL} there again")
    if not unverified:
        check_checksums(folder)
    split = datasets.CIFAR10.train_list if train else datasets.CIFAR10.test_list
    for name, _ in split:
        check_batch_file(folder / name)
    cls = _UnverifiedCIFAR10 if unverified else datasets.CIFAR10
    return cls(str(root), train=train, transform=transform, download=False)


def datasets_from_args(args):
    """``(train_set, test_set)`` with the augmentation flags of ``common.data.add_augment_args`` and
    ``--cifar10-unverified`` (:func:`add_args`; off when the parser lacks it)."""
    unverified = getattr(args, "cifar10_unverified", False)
    if unverified and distributed.is_main():
        print(f"warning: --cifar10-unverified: using the CIFAR10 files in {Path(args.data_dir) / FOLDER} without "
              "checking their md5 sums", file=sys.stderr)
    train = dataset(args.data_dir, True, train_transform(args.auto_augment, args.random_erase), unverified)
    test = dataset(args.data_dir, False, test_transform(), unverified)
    return train, test
