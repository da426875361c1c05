"""Tiny CIFAR10 in the real ``cifar-10-batches-py`` pickle format, for tests of any task that reads CIFAR10.

    from tests.fakedata import write_fake_cifar10, skip_cifar10_md5
    write_fake_cifar10(tmp_path, n_train=64, n_test=32)
    skip_cifar10_md5(monkeypatch)      # tiny files cannot match torchvision's md5 sums

Images are class-dependent (a per-class colour plus noise), so a model can learn them.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """``[n, 3072]`` uint8 rows (channel-major 3x32x32), as in the official files."""
    colours = np.linspace(30, 225, 10)[np.arange(30).reshape(10, 3) % 10]  # 10 distinct RGB triples
    base = colours[labels][:, :, None].repeat(1024, axis=2)
    noise = rng.normal(0, 25, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8).reshape(len(labels), 3072)


def _write_batch(path: Path, rng: np.random.Generator, n: int, name: str) -> None:
    labels = rng.integers(0, 10, size=n)
    entry = {
        "batch_label": name,
        "labels": labels.tolist(),
        "data": _images(rng, labels),
        "filenames": [f"fake_{name.replace(' ', '_')}_{i}.png" for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def write_fake_cifar10(root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py/`` (5 train batches, ``test_batch``, ``batches.meta``); returns that folder.

    ``n_train`` is split over the 5 train batches (torchvision concatenates them in order)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [len(part) for part in np.array_split(np.arange(n_train), 5)]
    for i, size in enumerate(sizes, start=1):
        _write_batch(folder / f"data_batch_{i}", rng, size, f"training batch {i} of 5")
    _write_batch(folder / "test_batch", rng, n_test, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": LABEL_NAMES, "num_cases_per_batch": max(sizes), "num_vis": 3072}, f)
    return folder


def skip_cifar10_md5(monkeypatch) -> None:
    """Make torchvision accept the fake files (its integrity check compares md5 sums); tests only."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def smoke_args(data_dir, out_dir, *extra, channels: int = 8, batch_size: int = 8, epochs: int = 1,
               limit_batches: int = 2) -> list[str]:
    """Flags of a seconds-long CPU run of a CIFAR10 task (cf10/scf10 ``train.main``) on the fake data."""
    return ["--data-dir", str(data_dir), "--out-dir", str(out_dir), "--device", "cpu", "--workers", "0",
            "--channels", str(channels), "-b", str(batch_size), "--epochs", str(epochs),
            "--limit-batches", str(limit_batches), *extra]
