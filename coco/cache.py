"""The label cache: every image's size and parsed labels, checked once and stored next to the image list.

``ROOT/val2017.txt -> ROOT/val2017.cache`` (an image directory ``D`` -> ``<labels dir of D>.cache``), a NumPy ``.npz``
(no pickle) holding a format version and a SHA-256 over every image and label path with its file size (-1 when
missing). A cache whose version or hash differs (files added, removed or changed size), or that cannot be read, is
rebuilt; building streams the files through a thread pool with a progress bar. Samples that fail the checks of
:mod:`coco.labels` are left out and listed (one line per file) each time the cache is loaded.
"""
from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coco.labels import BadSample, image_files, label_path, load_sample
from common.errors import DataError

CACHE_VERSION = 1
MAX_LISTED = 20  # bad samples printed one per line; the rest are counted


@dataclass
class LabelIndex:
    """The usable samples of one split: ``files[i]``, ``shapes[i] = (h, w)``, ``labels[i] = [n, 5]`` rows
    ``cls cx cy w h`` (normalised); ``bad`` = one message per skipped file."""

    files: list[str]
    shapes: np.ndarray
    labels: list[np.ndarray]
    bad: list[str]


def cache_path(source: str | os.PathLike, files: list[str]) -> Path:
    source = Path(source)
    if source.is_file():
        return source.with_suffix(".cache")
    return Path(label_path(files[0])).parent.with_suffix(".cache")


def files_hash(files: list[str]) -> str:
    """SHA-256 over ``path size`` of every image and its label file (size -1 when missing)."""
    h = hashlib.sha256()
    for image in files:
        for path in (image, label_path(image)):
            size = os.path.getsize(path) if os.path.isfile(path) else -1
            h.update(f"{path}\0{size}\n".encode())
    return h.hexdigest()


def _check(args):
    path, nc = args
    try:
        shape, labels = load_sample(path, nc)
        return path, shape, labels, None
    except BadSample as e:
        return path, None, None, str(e)


def build_index(files: list[str], nc: int, workers: int = 8, desc: str = "labels") -> LabelIndex:
    """Check every sample (threads: the work is file I/O and PIL decoding, which release the GIL)."""
    good, shapes, labels, bad = [], [], [], []
    with ThreadPool(max(1, workers)) as pool:
        results = pool.imap(_check, ((f, nc) for f in files), chunksize=64)
        for path, shape, lab, problem in tqdm(results, total=len(files), desc=f"checking {desc}", file=sys.stderr,
                                              mininterval=1.0):
            if problem is not None:
                bad.append(problem)
                continue
            good.append(path)
            shapes.append(shape)
            labels.append(lab)
    return LabelIndex(good, np.asarray(shapes, np.int64).reshape(-1, 2), labels, bad)


def save_index(path: Path, index: LabelIndex, digest: str) -> bool:
    """Write atomically (temporary file + rename); returns False when the folder is not writable."""
    counts = np.asarray([len(lab) for lab in index.labels], np.int64)
    rows = np.concatenate(index.labels) if index.labels else np.zeros((0, 5), np.float32)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, version=CACHE_VERSION, hash=digest, files=np.asarray(index.files, dtype=str),
                 shapes=index.shapes, counts=counts, labels=rows.astype(np.float32),
                 bad=np.asarray(index.bad, dtype=str))
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def load_cached(path: Path, digest: str) -> LabelIndex | None:
    """The cached index, or None when missing, stale (other version or hash) or unreadable (corrupt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["hash"]) != digest:
                return None
            counts, rows = z["counts"], z["labels"]
            split = np.split(rows, np.cumsum(counts)[:-1]) if len(counts) else []
            return LabelIndex([str(f) for f in z["files"]], z["shapes"].astype(np.int64), split,
                              [str(b) for b in z["bad"]])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        print(f"WARNING coco: label cache {path} is corrupt; rebuilding it", file=sys.stderr)
        return None


def report_bad(index: LabelIndex, source) -> None:
    """Print each skipped sample once (the first ``MAX_LISTED``) on stderr."""
    if not index.bad:
        return
    print(f"WARNING coco: {len(index.bad)} sample(s) of {source} skipped:", file=sys.stderr)
    for message in index.bad[:MAX_LISTED]:
        print(f"  {message}", file=sys.stderr)
    if len(index.bad) > MAX_LISTED:
        print(f"  ... and {len(index.bad) - MAX_LISTED} more", file=sys.stderr)


def load_index(source: str | os.PathLike, nc: int = 80, workers: int = 8, use_cache: bool = True) -> LabelIndex:
    """The checked samples of ``source`` (list file or image directory), through the cache; raises
    :class:`DataError` when no usable sample is left."""
    files = image_files(source)
    path, digest = cache_path(source, files), f"{files_hash(files)}:nc{nc}"
    index = load_cached(path, digest) if use_cache else None
    if index is None:
        index = build_index(files, nc, workers, desc=Path(source).name)
        if use_cache and not save_index(path, index, digest):
            print(f"WARNING coco: cannot write label cache {path} (folder not writable)", file=sys.stderr)
    report_bad(index, source)
    if not index.files:
        raise DataError(f"{source}: none of its {len(files)} images is usable (see the warnings above)")
    return index
