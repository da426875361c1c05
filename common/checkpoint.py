"""Checkpoints: atomic writes and the random-number-generator states needed to resume a run exactly.

Everything stored is loadable with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists, dicts),
so a checkpoint never executes pickled code.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.errors import UsageError


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or error mid-write leaves the previous ``path`` untouched and no temporary file behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find(path: str | Path, in_run_dir: str, flag: str) -> Path:
    """The checkpoint named by a CLI ``flag``: a file, or ``in_run_dir`` (e.g. ``checkpoint_latest.pt``) inside a run
    directory; a missing one is a one-line usage error."""
    path = Path(path)
    path = path / in_run_dir if path.is_dir() else path
    if not path.is_file():
        raise UsageError(f"{flag}: no checkpoint at {path}")
    return path


def load(path: str | Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """States of Python's ``random``, NumPy's global generator, torch CPU and every CUDA device."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
