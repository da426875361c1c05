"""CIFAR10 as in the survey's recipe (shared by cf10 and scf10): torchvision dataset, transforms, download errors."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from common import distributed
from common.errors import UsageError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
NUM_CLASSES = 10


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


def dataset(root: str | Path, train: bool, transform) -> datasets.CIFAR10:
    """torchvision's CIFAR10 under ``root`` (downloaded by rank 0 when missing; md5 sums are checked)."""
    root = Path(root)
    try:
        with distributed.main_process_first():
            return datasets.CIFAR10(str(root), train=train, transform=transform, download=True)
    except Exception as e:  # network errors, corrupt or partial files
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(
            f"could not load or download CIFAR10 into {root} ({reason}); download {URL} by hand and extract it "
            f"there, so that {root / 'cifar-10-batches-py' / 'data_batch_1'} exists") from None


def datasets_from_args(args):
    """``(train_set, test_set)`` with the augmentation flags of ``common.data.add_augment_args``."""
    train = dataset(args.data_dir, True, train_transform(args.auto_augment, args.random_erase))
    test = dataset(args.data_dir, False, test_transform())
    return train, test
