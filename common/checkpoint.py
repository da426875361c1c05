"""Checkpoints: verified atomic writes and the random-number-generator states needed to resume a run exactly.

File format: ``torch.save({"format": FORMAT, "sha256": hex, "payload": uint8 tensor})`` where ``payload`` is the
``torch.save`` bytes of the state and ``sha256`` their hash, checked by :func:`load`; so flipped, truncated or
missing bytes are reported instead of loaded. Everything is loadable with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, dicts): a checkpoint never executes pickled code.

A run directory keeps ``checkpoint_latest.pt`` (every epoch), ``checkpoint_previous.pt`` (the latest before it) and
``checkpoint_best.pt`` (best test metric), see :func:`save_run_checkpoint`.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common.errors import CheckpointError, StorageError, UsageError

FORMAT = "snn-checkpoint-v2"
LATEST, PREVIOUS, BEST = "checkpoint_latest.pt", "checkpoint_previous.pt", "checkpoint_best.pt"

__all__ = ["BEST", "LATEST", "PREVIOUS", "CheckpointError", "find", "load", "model_weights", "rng_state", "save_atomic",
           "save_run_checkpoint", "set_rng_state", "verify"]


def _serialise(obj) -> bytes:
    """The on-disk bytes of ``obj``: the hashed wrapper around its ``torch.save`` payload."""
    payload = io.BytesIO()
    torch.save(obj, payload)
    data = payload.getbuffer()
    wrapper = {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
               "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    out = io.BytesIO()
    torch.save(wrapper, out)
    return out.getvalue()


def _write_aside(data: bytes, path: Path) -> Path:
    """Write ``data`` to a new temporary file next to ``path`` and fsync it; returns the temporary path.

    Raises :class:`StorageError` (one line naming ``path``) when the disk is full; nothing is left behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"no space left on device while writing {path}; the previous checkpoint is "
                               "intact") from None
        raise
    return Path(tmp)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy where links are unsupported), replacing ``dst`` atomically."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_atomic(obj, path: str | Path) -> None:
    """Save ``obj`` with its content hash to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or error mid-write leaves the previous ``path`` untouched and no temporary file behind; a full disk
    raises :class:`StorageError`."""
    path = Path(path)
    os.replace(_write_aside(_serialise(obj), path), path)


def save_run_checkpoint(state: dict, run_dir: str | Path, improved: bool) -> Path:
    """Write ``run_dir/checkpoint_latest.pt``, keeping the latest before it as ``checkpoint_previous.pt``, and
    ``checkpoint_best.pt`` when ``improved``; returns the latest's path.

    Every step is a rename or a hard link, so at any instant each name holds a complete, verified checkpoint."""
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    tmp = _write_aside(_serialise(state), latest)
    try:
        if latest.exists():
            link_or_copy(latest, run_dir / PREVIOUS)
        os.replace(tmp, latest)
    finally:
        tmp.unlink(missing_ok=True)
    if improved:
        link_or_copy(latest, run_dir / BEST)
    return latest


def _intact_neighbours(path: Path) -> list[Path]:
    """The other checkpoints in ``path``'s folder that pass :func:`verify` (latest, previous, best first)."""
    order = {LATEST: 0, PREVIOUS: 1, BEST: 2}
    others = sorted((p for p in path.parent.glob("*.pt") if p.name != path.name),
                    key=lambda p: (order.get(p.name, 3), p.name))
    return [p for p in others if _problem(p) is None]


def _read_wrapper(path: Path) -> tuple[object, str | None]:
    """``(loaded object, None)`` or ``(None, what is wrong)``."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return None, f"cannot be read ({e.strerror})"
    if size == 0:
        return None, "is empty"
    try:
        return torch.load(path, map_location="cpu", weights_only=True), None
    except Exception as e:  # torch reports damage as RuntimeError, UnpicklingError, EOFError, ValueError ...
        if isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower():
            return None, "holds pickled objects other than tensors and plain values"
        with open(path, "rb") as f:
            zip_magic = f.read(4) == b"PK\x03\x04"
        return None, ("is truncated or damaged (not a readable PyTorch archive)" if zip_magic
                      else "is not a PyTorch checkpoint")


def _is_wrapper(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _hash_problem(wrapper: dict) -> str | None:
    payload = wrapper.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        return "has no payload"
    if hashlib.sha256(payload.numpy()).hexdigest() != wrapper.get("sha256"):
        return "fails its content-hash check (altered or damaged)"
    return None


def _problem(path: Path) -> str | None:
    """What is wrong with checkpoint ``path`` (``None`` if it loads and its content hash matches)."""
    obj, problem = _read_wrapper(path)
    return problem or (_hash_problem(obj) if _is_wrapper(obj) else None)


def _fail(path: Path, problem: str) -> CheckpointError:
    good = _intact_neighbours(path)
    offer = f"; intact checkpoints in the same folder: {', '.join(map(str, good))}" if good else ""
    return CheckpointError(f"checkpoint {path} {problem}{offer}")


def verify(path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line, offering intact neighbours) unless ``path``'s hash matches."""
    path = Path(path)
    problem = _problem(path)
    if problem:
        raise _fail(path, problem)


def load(path: str | Path, map_location="cpu") -> dict:
    """The state saved by :func:`save_atomic` / :func:`save_run_checkpoint`, after checking its content hash.

    Raises :class:`CheckpointError` naming the file and what is wrong (empty, truncated, not a checkpoint, altered)
    and offering the intact checkpoints of the same folder. A checkpoint of the older unhashed format loads with a
    note on stderr."""
    path = Path(path)
    obj, problem = _read_wrapper(path)
    if problem:
        raise _fail(path, problem)
    if not _is_wrapper(obj):
        print(f"note: {path} has no content hash (written by an older version); loading it unverified",
              file=sys.stderr)
        return torch.load(path, map_location=map_location, weights_only=True) if map_location != "cpu" else obj
    problem = _hash_problem(obj)
    if problem:
        raise _fail(path, problem)
    try:
        return torch.load(io.BytesIO(obj["payload"].numpy().tobytes()), map_location=map_location, weights_only=True)
    except Exception:  # the hash matched, so the payload was saved like this: objects weights_only refuses
        raise _fail(path, "holds objects that cannot be loaded safely (weights only)") from None


def model_weights(state: dict) -> dict:
    """The weights a loaded checkpoint is evaluated with: its EMA weights when it has them, else the raw ones."""
    return state["ema"]["model"] if "ema" in state else state["model"]


def find(path: str | Path, in_run_dir: str, flag: str) -> Path:
    """The checkpoint named by a CLI ``flag``: a file, or ``in_run_dir`` (e.g. ``checkpoint_latest.pt``) inside a run
    directory. A missing one is a one-line :class:`UsageError` that names the checkpoints the folder does hold."""
    path = Path(path)
    if path.is_dir():
        folder, path = path, path / in_run_dir
    else:
        folder = path.parent
    if path.is_file():
        return path
    if not folder.is_dir():
        raise UsageError(f"{flag}: no checkpoint or run directory at {path if folder == path.parent else folder}")
    held = sorted(p.name for p in folder.glob("checkpoint_*.pt"))
    if held:
        raise UsageError(f"{flag}: {folder} has no {path.name}; it holds {', '.join(held)}: name one of them, e.g. "
                         f"{flag} {folder / held[0]}")
    raise UsageError(f"{flag}: no checkpoint at {path} ({folder} holds none: the run stopped before its first "
                     "epoch ended)")


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
