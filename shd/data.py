"""Spiking Heidelberg Digits: official HDF5 files -> binned 10 ms spike-count frames -> padded time-first batches.

File layout (``shd_train.h5`` / ``shd_test.h5`` in ``data_dir`` or ``data_dir/extract``): ``labels`` [N] integers
0..19; ``spikes/times`` [N] variable-length float arrays of ascending spike times in seconds (float16 in the official
files); ``spikes/units`` [N] variable-length unsigned integer arrays of channel ids 0..699, aligned with ``times``.

Preprocessing of one sample (SpikingJelly's fixed-duration integration, arithmetic kept in the file's float dtype):
``t = 1000 times; t = t - t[0]; T = ceil(t[-1] / dt)``; spike -> frame ``min(floor(t / dt), T - 1)`` (the last frame
also takes everything after ``(T-1) dt``); then channels are binned ``c = unit // n_bins`` (700 // n_bins outputs,
leftover units dropped), ``x[k, c]`` = number of spikes. Defaults dt = 10 ms, n_bins = 5 -> ``[T, 140]``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from common import quirks
from common.errors import DataError, UsageError

N_UNITS = 700
N_CLASSES = 20
SPLITS = ("train", "test")
CACHE_VERSION = 1
_CHUNK = 256  # samples integrated at once (bounds the per-spike temporaries)
quirks.register("shd_folder_test_order", "the SHD splits as SpikingJelly's frame-folder dataset (torchvision "
                "DatasetFolder over <label>/<index>.npz): the unshuffled test set in string-sorted class-folder and "
                "file-name order (class-grouped batches), class indices numbered in string order of the folder names",
                ("shd",))


class SHDFormatError(DataError, ValueError):
    """A malformed SHD file (exit code 3); the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"SHD file {path}: {problem}")


def find_file(data_dir, split: str) -> Path:
    """``data_dir/shd_<split>.h5``, else ``data_dir/extract/shd_<split>.h5``."""
    if split not in SPLITS:
        raise ValueError(f"unknown SHD split '{split}'; valid splits: {', '.join(SPLITS)}")
    candidates = [Path(data_dir) / f"shd_{split}.h5", Path(data_dir) / "extract" / f"shd_{split}.h5"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"SHD {split} file not found; looked for {' and '.join(map(str, candidates))}")


def integrate_events(times, units, dt_ms: float = 10.0, n_bins: int = 5, first_index: int = 0):
    """Per-sample spike lists -> (frames ``[sum_i T_i, 700 // n_bins]`` int64 counts, lengths ``T_i``).

    ``times[i]`` (seconds) and ``units[i]`` belong to sample ``first_index + i``; see the module docstring for the
    frame rule. Raises ``ValueError`` naming the sample for empty, unaligned, unsorted or single-instant samples.
    """
    check_params(dt_ms, n_bins)
    counts = np.array([len(t) for t in times], dtype=np.int64)
    _check_samples(counts, np.array([len(u) for u in units], dtype=np.int64), first_index)
    t_all, u_all = np.concatenate(times), np.concatenate(units).astype(np.int64)
    starts = np.cumsum(counts) - counts
    sample = np.repeat(np.arange(len(counts)), counts)
    _check_times(t_all, sample, first_index)
    _check_order(t_all, starts, sample, first_index)
    if u_all.min() < 0 or u_all.max() >= N_UNITS:
        bad = sample[np.flatnonzero((u_all < 0) | (u_all >= N_UNITS))[0]]
        raise ValueError(f"sample {first_index + bad}: unit ids must lie in 0..{N_UNITS - 1}")

    dt = t_all.dtype.type(dt_ms)
    t_ms = t_all * t_all.dtype.type(1000)
    rel = t_ms - t_ms[starts][sample]
    lengths = np.ceil(rel[starts + counts - 1] / dt).astype(np.int64)
    if (lengths <= 0).any():
        bad = np.flatnonzero(lengths <= 0)[0]
        raise ValueError(f"sample {first_index + bad}: all spikes at one instant, so it has zero frames")
    frame = np.minimum((rel // dt).astype(np.int64), lengths[sample] - 1)
    width = N_UNITS // n_bins
    channel = u_all // n_bins
    keep = channel < width
    row = (np.cumsum(lengths) - lengths)[sample] + frame
    frames = np.bincount((row * width + channel)[keep], minlength=int(lengths.sum()) * width)
    return frames.reshape(-1, width), lengths


def check_params(dt_ms: float, n_bins: int) -> None:
    if not dt_ms > 0 or not 1 <= n_bins <= N_UNITS:
        raise ValueError(f"need dt_ms > 0 and 1 <= n_bins <= {N_UNITS}, got dt_ms={dt_ms}, n_bins={n_bins}")


def _check_samples(n_times: np.ndarray, n_units: np.ndarray, first_index: int) -> None:
    if len(n_times) != len(n_units):
        raise ValueError(f"{len(n_times)} spike-time lists but {len(n_units)} unit lists")
    for bad, problem in (((n_times != n_units), "times and units differ in length"), ((n_times == 0), "no spikes")):
        if bad.any():
            raise ValueError(f"sample {first_index + np.flatnonzero(bad)[0]}: {problem}")


def _check_times(t_all: np.ndarray, sample: np.ndarray, first_index: int) -> None:
    """Finite times whose millisecond values fit the file's float type (float16 overflows above 65.5 s)."""
    bad = ~np.isfinite(t_all)
    if bad.any():
        raise ValueError(f"sample {first_index + sample[np.flatnonzero(bad)[0]]}: spike time "
                         f"{t_all[bad][0]} is not a finite number")
    limit = float(np.finfo(t_all.dtype).max) / 1000 if t_all.dtype.kind == "f" else np.inf
    big = np.abs(t_all) > limit
    if big.any():
        raise ValueError(f"sample {first_index + sample[np.flatnonzero(big)[0]]}: spike time {t_all[big][0]} s "
                         f"overflows {t_all.dtype} in milliseconds (the official files hold seconds below 1.4)")


def _check_order(t_all: np.ndarray, starts: np.ndarray, sample: np.ndarray, first_index: int) -> None:
    descending = np.diff(t_all) < 0
    descending[starts[1:] - 1] = False  # sample boundaries
    if descending.any():
        raise ValueError(f"sample {first_index + sample[np.flatnonzero(descending)[0] + 1]}: spike times not ascending")


def read_and_integrate(path, dt_ms: float = 10.0, n_bins: int = 5):
    """Validate and integrate one official file -> (frames ``[sum T_i, C]``, lengths ``[N]``, labels ``[N]``)."""
    check_params(dt_ms, n_bins)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SHDFormatError(path, f"not a readable HDF5 file ({e})") from None
    with f:
        times, units, labels = _datasets(f, path)
        frames, lengths = [], []
        for start in range(0, len(labels), _CHUNK):
            try:
                fr, ln = integrate_events(times[start:start + _CHUNK], units[start:start + _CHUNK],
                                          dt_ms, n_bins, first_index=start)
            except ValueError as e:
                raise SHDFormatError(path, str(e)) from None
            frames.append(fr.astype(np.min_scalar_type(fr.max())))
            lengths.append(ln)
    if not frames:
        raise SHDFormatError(path, "contains no samples")
    return np.concatenate(frames), np.concatenate(lengths), labels


def _datasets(f: h5py.File, path):
    """The three official datasets, checked for presence, kind and matching lengths."""
    found = {}
    for key, kind in (("labels", "iu"), ("spikes/times", "f"), ("spikes/units", "iu")):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise SHDFormatError(path, f"missing dataset '{key}'")
        ds = f[key]
        base = ds.dtype if key == "labels" else h5py.check_vlen_dtype(ds.dtype)
        expected = "integer" if key == "labels" else f"variable-length {'float' if kind == 'f' else 'integer'}"
        if base is None or base.kind not in kind or ds.ndim != 1:
            raise SHDFormatError(path, f"dataset '{key}' should be 1-D {expected}, found {ds.dtype} {ds.shape}")
        found[key] = ds
    labels = found["labels"][()].astype(np.int64)
    n_times, n_units = len(found["spikes/times"]), len(found["spikes/units"])
    if not len(labels) == n_times == n_units:
        raise SHDFormatError(path, f"{len(labels)} labels, {n_times} time lists and {n_units} unit lists")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise SHDFormatError(path, f"labels must lie in 0..{N_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return found["spikes/times"], found["spikes/units"], labels


class SHDFrames(Dataset):
    """Binned frames of one split; item ``i`` -> (``[T_i, C]`` float32 spike counts, label)."""

    def __init__(self, frames: np.ndarray, lengths: np.ndarray, labels: np.ndarray):
        self.frames, self.lengths, self.labels = frames, np.asarray(lengths), np.asarray(labels)
        self.offsets = np.cumsum(self.lengths) - self.lengths

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        o, n = self.offsets[i], self.lengths[i]
        return torch.from_numpy(self.frames[o:o + n].astype(np.float32)), int(self.labels[i])

    @property
    def channels(self) -> int:
        return self.frames.shape[1]

    @property
    def max_len(self) -> int:
        return int(self.lengths.max())


def folder_order(labels: np.ndarray) -> np.ndarray:
    """Sample indices in the order of a torchvision ``DatasetFolder`` over ``<label>/<index>.npz`` (SpikingJelly's
    SHD frame folders): class folders, then file names, each sorted as strings ("1" < "10" < "2")."""
    return np.array(sorted(range(len(labels)), key=lambda i: (str(int(labels[i])), f"{i}.npz")), dtype=np.int64)


def folder_label(labels: np.ndarray) -> np.ndarray:
    """``DatasetFolder``'s class index of each label: the rank of its folder name among the string-sorted names of
    all :data:`N_CLASSES` folders ("10" -> 2)."""
    rank = {int(name): k for k, name in enumerate(sorted(str(c) for c in range(N_CLASSES)))}
    return np.array([rank[int(label)] for label in labels], dtype=np.int64)


def as_folder_dataset(ds: SHDFrames, reorder: bool) -> SHDFrames:
    """``ds`` as the survey's SpikingJelly frame-folder dataset: labels renumbered (:func:`folder_label`) and, with
    ``reorder`` (the unshuffled test set), samples in :func:`folder_order`."""
    order = folder_order(ds.labels) if reorder else np.arange(len(ds))
    frames = np.concatenate([ds.frames[ds.offsets[i]:ds.offsets[i] + ds.lengths[i]] for i in order]) if reorder \
        else ds.frames
    return SHDFrames(frames, ds.lengths[order], folder_label(ds.labels[order]))


def cache_path(cache_dir, source: Path, split: str, dt_ms: float, n_bins: int) -> Path:
    """Cache file named by a hash of the preprocessing parameters and the source file's size and mtime."""
    st = source.stat()
    key = {"file": source.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "dt_ms": float(dt_ms),
           "n_bins": int(n_bins), "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"shd_{split}_dt{float(dt_ms):g}_bins{n_bins}_{digest}.npz"


def load_split(data_dir, split: str, dt_ms: float = 10.0, n_bins: int = 5, cache_dir=None) -> SHDFrames:
    """One split as :class:`SHDFrames`; with ``cache_dir`` the frames are stored there and reused while the
    parameters and the source file stay the same (a change gives a new cache file)."""
    check_params(dt_ms, n_bins)
    source = find_file(data_dir, split)
    cache = cache_path(cache_dir, source, split, dt_ms, n_bins) if cache_dir else None
    cached = _read_cache(cache) if cache is not None and cache.is_file() else None
    if cached is not None:
        return cached
    frames, lengths, labels = read_and_integrate(source, dt_ms, n_bins)
    if cache is not None:
        _write_cache(cache, frames, lengths, labels)
    return SHDFrames(frames, lengths, labels)


def _read_cache(cache: Path) -> SHDFrames | None:
    """The cached frames, or ``None`` (with a warning line) when the file is damaged: it is then rebuilt."""
    try:
        with np.load(cache) as z:
            frames, lengths, labels = z["frames"], z["lengths"], z["labels"]
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError for a damaged file
        problem = f"unreadable ({type(e).__name__})"
    else:
        if frames.ndim == 2 and len(labels) == len(lengths) and int(lengths.sum()) == len(frames):
            return SHDFrames(frames, lengths, labels)
        problem = "inconsistent (frame count and lengths differ)"
    print(f"warning: SHD frame cache {cache} is {problem}; rebuilding it", file=sys.stderr)
    return None


def _write_cache(cache: Path, frames, lengths, labels) -> None:
    """Write the cache atomically; a failure is one line naming the file and the ``--no-cache`` remedy."""
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, frames=frames, lengths=lengths, labels=labels)
        os.replace(tmp, cache)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsageError(f"cannot write the SHD frame cache {cache} ({e.strerror or e}); pass --no-cache, or "
                         "--cache-dir a writable folder") from None


def pad_collate(batch, pad_to: int | None = None):
    """``[(x_i [T_i, C], y_i)]`` -> ``x [T, B, C]`` float32 zero-padded at the end, ``y [B]`` and ``lengths [B]``
    int64; ``T = max T_i``, or ``pad_to`` when given (a fixed length for neurons with T-dependent parameters)."""
    xs, ys = zip(*batch)
    lengths = torch.tensor([len(x) for x in xs], dtype=torch.int64)
    T = int(lengths.max()) if pad_to is None else pad_to
    if T < int(lengths.max()):
        raise ValueError(f"a sample has {int(lengths.max())} frames, more than the fixed length {pad_to}")
    x = xs[0].new_zeros(T, len(xs), xs[0].shape[1])
    for i, xi in enumerate(xs):
        x[:len(xi), i] = xi
    return x, torch.tensor(ys, dtype=torch.int64), lengths


def pad_collate_batch(batch, pad_to: int | None = None):
    """:func:`pad_collate` as the engine's ``(x, targets, extras)`` batch with ``extras = {"lengths": lengths}``."""
    x, y, lengths = pad_collate(batch, pad_to)
    return x, y, {"lengths": lengths}
