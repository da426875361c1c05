"""Write synthetic SHD files in the official HDF5 layout (reusable test fixture).

``labels`` [N] integers (uint16 by default), ``spikes/times`` [N] vlen float16 seconds (ascending),
``spikes/units`` [N] vlen uint16 in 0..699, plus an unused ``extra/speaker`` group like the released files.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def random_samples(n: int, seed: int = 0, max_spikes: int = 400, duration_s=(0.3, 1.25), separable: bool = False):
    """``n`` random samples -> (times list float16, units list uint16, labels int); every sample spans > 10 ms.
    ``separable``: units cluster around ``35 * label + 17`` (sd 20), so a network can learn the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 20, n)
    times, units = [], []
    for label in labels:
        k = int(rng.integers(2, max_spikes))
        start, span = rng.uniform(0.0, 0.2), rng.uniform(*duration_s)
        t = np.sort(rng.uniform(start, start + span, k)).astype(np.float16)
        t[0], t[-1] = np.float16(start), np.float16(start + span)
        times.append(np.sort(t))
        u = rng.normal(35 * label + 17, 20, k) if separable else rng.integers(0, 700, k)
        units.append(np.clip(u, 0, 699).astype(np.uint16))
    return times, units, labels


def write_file(path, times, units, labels, labels_dtype=np.uint16, times_dtype=np.float16) -> Path:
    """One HDF5 file with the official datasets holding the given per-sample arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=np.asarray(labels, dtype=labels_dtype))
        t_ds = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.dtype(times_dtype)))
        u_ds = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (t, u) in enumerate(zip(times, units)):
            t_ds[i] = np.asarray(t, dtype=times_dtype)
            u_ds[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype=np.uint16))
    return path


def write_fake_shd(root, n_train: int = 40, n_test: int = 20, seed: int = 0, extract: bool = True, **kwargs):
    """``root/[extract/]shd_{train,test}.h5`` with random samples; returns ``{split: (times, units, labels)}``."""
    folder = Path(root) / "extract" if extract else Path(root)
    written = {}
    for k, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        times, units, labels = random_samples(n, seed + k, **kwargs)
        write_file(folder / f"shd_{split}.h5", times, units, labels)
        written[split] = (times, units, labels)
    return written
