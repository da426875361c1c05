r"""Gen1 automotive detection: recordings -> cached sparse samples -> ``[T, N, 4, 240, 304]`` batches with box targets.

Layout: ``ROOT/{train,val,test}/<name>_td.dat`` + ``<name>_bbox.npy`` (the official ``train_a/b/c`` folders are read
together as ``train`` when ``ROOT/train`` does not exist). Samples, as the survey builds them (spec §2.2):

* one per unique box time stamp ``ts``: the events of ``[ts - W, ts)`` with ``W = 100 ms`` (PSEELoader
  ``seek_time(ts - W)`` + ``load_delta_t(W)``, so a window starting before 0 becomes ``[0, W)``);
* targets: the **last** box of each ``track_id`` at ``ts`` (kept in descending track_id order), ``xywh -> xyxy``,
  ``x`` clamped to ``[0, 304]`` and ``y`` to ``[0, 240]``, boxes with zero width or height dropped;
* samples without events or without boxes are dropped;
* events -> counts ``[T=5, 4, 240, 304]`` (``SFOD.encoding``: 20 ms steps x 2 micro-bins x polarity, with the
  data-dependent channel offset).

Preprocessing streams recording by recording (parallel workers, tqdm bar) into a per-recording cache in
``CACHE/gen1_<split>_<params>/``: ``<name>.cells.npy`` (int32 flat cell indices), ``<name>.counts.npy`` (uint16) and
``<name>.meta.npz`` (per-sample offsets, boxes, labels, time stamps and the cache key), the meta written last. A
recording whose meta is missing, unreadable, inconsistent with its arrays or keyed to other parameters or another
source file (size, mtime) is (re)built; so an interrupted preprocessing resumes where it stopped. Samples are read
back through memory maps, one at a time.
"""
from __future__ import annotations

import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from common.errors import DataError
from SFOD import encoding
from SFOD.prophesee import DatFile, check_layout, load_boxes

CLASSES = ("car", "pedestrian")
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Gen1Params(encoding.WindowParams):
    """Sample construction parameters; every one of them is part of the cache key."""

    height: int = 240
    width: int = 304

    def tag(self) -> str:
        return f"T{self.T}_tbin{self.tbin}_w{self.window_us}us_{self.height}x{self.width}_v{CACHE_VERSION}"


@dataclass(frozen=True)
class Recording:
    name: str
    events: Path
    boxes: Path


def find_recordings(root, split: str) -> list[Recording]:
    """Sorted recordings of ``split`` (``train`` also from ``train_a/b/c``); raises on an empty or missing split."""
    if split not in SPLITS:
        raise ValueError(f"unknown Gen1 split '{split}'; valid: {', '.join(SPLITS)}")
    root = Path(root)
    folders = [root / split] if (root / split).is_dir() or split != "train" else sorted(root.glob("train_[abc]"))
    if not any(folder.is_dir() for folder in folders):
        raise FileNotFoundError(f"Gen1 {split} folder not found: {root / split}")
    recordings = {}
    for folder in folders:
        for boxes in sorted(folder.glob("*_bbox.npy")):
            name = boxes.name[:-len("_bbox.npy")]
            events = folder / f"{name}_td.dat"
            if not events.is_file():
                raise DataError(f"{boxes}: no matching event file {events.name}")
            if name in recordings:
                raise DataError(f"{boxes}: recording name {name} appears twice in the {split} split")
            recordings[name] = Recording(name, events, boxes)
    if not recordings:
        raise DataError(f"{' '.join(map(str, folders))}: no Gen1 recordings (<name>_bbox.npy + <name>_td.dat)")
    return [recordings[k] for k in sorted(recordings)]


def build_targets(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one time stamp -> (``xyxy`` float32 [M, 4], labels int64 [M]) as described in the module docstring."""
    track = boxes["track_id"]
    _, first_in_flipped = np.unique(track[::-1], return_index=True)  # ascending track_id
    last = (len(track) - 1 - first_in_flipped)[::-1]  # last occurrence of each track, descending track_id
    xywh = np.stack([boxes[k][last] for k in ("x", "y", "w", "h")], axis=1).astype(np.float32)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
    keep = (xyxy[:, 2] - xyxy[:, 0] != 0) & (xyxy[:, 3] - xyxy[:, 1] != 0)
    return xyxy[keep], boxes["class_id"][last][keep].astype(np.int64)


def build_recording(rec: Recording, params: Gen1Params) -> dict[str, np.ndarray]:
    """All samples of one recording as concatenated sparse arrays (see the module docstring)."""
    boxes = load_boxes(rec.boxes)
    video = DatFile(rec.events, (params.height, params.width))
    ts_all, starts = np.unique(boxes["t"], return_index=True)
    out = {k: [] for k in ("ts", "cells", "counts", "boxes", "labels", "n_cells", "n_boxes")}
    for ts, group in zip(ts_all, np.split(boxes, starts[1:])):
        xyxy, labels = build_targets(group, params.height, params.width)
        video.seek_time(int(ts) - params.window_us)
        events = video.load_delta_t(params.window_us)
        if len(xyxy) == 0 or len(events) == 0:
            continue
        cells, counts = encoding.sparse_counts(events, params.T, params.tbin, params.window_us, params.height,
                                               params.width)
        for key, value in (("ts", int(ts)), ("cells", cells), ("counts", counts), ("boxes", xyxy),
                           ("labels", labels), ("n_cells", len(cells)), ("n_boxes", len(xyxy))):
            out[key].append(value)
    return {
        "ts": np.asarray(out["ts"], dtype=np.int64),
        "cell_offsets": np.concatenate([[0], np.cumsum(out["n_cells"], dtype=np.int64)]),
        "box_offsets": np.concatenate([[0], np.cumsum(out["n_boxes"], dtype=np.int64)]),
        "boxes": np.concatenate(out["boxes"]) if out["boxes"] else np.zeros((0, 4), np.float32),
        "labels": np.concatenate(out["labels"]) if out["labels"] else np.zeros(0, np.int64),
        "cells": np.concatenate(out["cells"]) if out["cells"] else np.zeros(0, np.int32),
        "counts": np.concatenate(out["counts"]) if out["counts"] else np.zeros(0, np.uint16),
    }


# ----------------------------------------------------------------------------------------------------- cache


def source_key(rec: Recording, params: Gen1Params) -> str:
    stats = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in (rec.events, rec.boxes)}
    return json.dumps({"params": asdict(params), "version": CACHE_VERSION, "sources": stats}, sort_keys=True)


@dataclass(frozen=True)
class CachedRecording:
    """One recording's cache files and its small per-sample metadata (loaded in memory)."""

    cells_path: Path
    counts_path: Path
    ts: np.ndarray
    cell_offsets: np.ndarray
    box_offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


def _paths(folder: Path, name: str) -> tuple[Path, Path, Path]:
    return folder / f"{name}.cells.npy", folder / f"{name}.counts.npy", folder / f"{name}.meta.npz"


def open_cached(folder: Path, rec: Recording, params: Gen1Params) -> CachedRecording | None:
    """The cache of ``rec`` if it is complete, readable and keyed to ``params`` and the current source files."""
    cells, counts, meta = _paths(folder, rec.name)
    try:
        with np.load(meta, allow_pickle=False) as z:
            if str(z["key"]) != source_key(rec, params):
                return None
            arrays = {k: z[k] for k in ("ts", "cell_offsets", "box_offsets", "boxes", "labels")}
        n = int(arrays["cell_offsets"][-1])
        if any(np.load(p, mmap_mode="r").shape != (n,) for p in (cells, counts)):
            return None
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return CachedRecording(cells, counts, **arrays)


def _save_atomic(path: Path, save) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        save(f)
    os.replace(tmp, path)


def write_cache(folder: Path, rec: Recording, params: Gen1Params) -> str:
    """Build ``rec`` and write its cache (arrays first, meta last, each atomically); returns the name."""
    data = build_recording(rec, params)
    cells, counts, meta = _paths(folder, rec.name)
    _save_atomic(cells, lambda f: np.save(f, data["cells"]))
    _save_atomic(counts, lambda f: np.save(f, data["counts"]))
    small = {k: data[k] for k in ("ts", "cell_offsets", "box_offsets", "boxes", "labels")}
    _save_atomic(meta, lambda f: np.savez(f, key=np.array(source_key(rec, params)), **small))
    return rec.name


def check_sources(recordings: list[Recording]) -> None:
    """Cheap checks of every source before anything is written: headers, whole records, box fields."""
    for rec in recordings:
        check_layout(rec.events)
        load_boxes(rec.boxes)


def prepare_split(root, split: str, cache_dir, params: Gen1Params = Gen1Params(), workers: int = 0,
                  progress: bool = True) -> list[CachedRecording]:
    """Preprocess (or reuse) every recording of ``split``; ``workers`` > 0 builds that many in parallel."""
    recordings = find_recordings(root, split)
    folder = Path(cache_dir) / f"gen1_{split}_{params.tag()}"
    todo = [rec for rec in recordings if open_cached(folder, rec, params) is None]
    if todo:
        check_sources(todo)
        folder.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo), desc=f"Gen1 {split}", unit="rec", disable=not progress)
        if workers > 0:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(write_cache, [folder] * len(todo), todo, [params] * len(todo)):
                    bar.update()
        else:
            for rec in todo:
                write_cache(folder, rec, params)
                bar.update()
        bar.close()
    cached = [open_cached(folder, rec, params) for rec in recordings]
    if any(c is None for c in cached):
        raise DataError(f"{folder}: the cache is unreadable right after writing it")
    if sum(len(c) for c in cached) == 0:
        raise DataError(f"{root}/{split}: no sample has both events and boxes")
    return cached


# ----------------------------------------------------------------------------------------------------- dataset


class Gen1Dataset(Dataset):
    """Item ``i`` -> (counts float32 ``[T, 4, H, W]``, ``{"boxes": [M, 4] xyxy, "labels": [M]}``, ``i``)."""

    def __init__(self, recordings: list[CachedRecording], params: Gen1Params = Gen1Params()):
        self.recordings, self.params = recordings, params
        sizes = np.array([len(r) for r in recordings], dtype=np.int64)
        self.rec_of = np.repeat(np.arange(len(recordings)), sizes)
        self.local = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)

    def __len__(self) -> int:
        return len(self.rec_of)

    def target(self, i: int) -> dict[str, torch.Tensor]:
        rec, j = self.recordings[self.rec_of[i]], self.local[i]
        b0, b1 = rec.box_offsets[j], rec.box_offsets[j + 1]
        return {"boxes": torch.from_numpy(rec.boxes[b0:b1].copy()), "labels": torch.from_numpy(rec.labels[b0:b1])}

    def __getitem__(self, i: int):
        rec, j = self.recordings[self.rec_of[i]], self.local[i]
        c0, c1 = rec.cell_offsets[j], rec.cell_offsets[j + 1]
        cells = np.load(rec.cells_path, mmap_mode="r")[c0:c1]
        counts = np.load(rec.counts_path, mmap_mode="r")[c0:c1]
        p = self.params
        x = encoding.dense(cells, counts, p.T, p.tbin, p.height, p.width)
        return torch.from_numpy(x), self.target(i), i


def load_split(root, split: str, cache_dir, params: Gen1Params = Gen1Params(), workers: int = 0,
               progress: bool = True) -> Gen1Dataset:
    return Gen1Dataset(prepare_split(root, split, cache_dir, params, workers, progress), params)


# ----------------------------------------------------------------------------------------------------- collate


def collate(batch):
    """``[(x [T, C, H, W], target, index)]`` -> (inputs ``[T, N, C, H, W]``, targets list, ``{"index": [N]}``)."""
    xs, targets, index = zip(*batch)
    return torch.stack(xs, 1), list(targets), {"index": torch.tensor(index, dtype=torch.int64)}


def hflip_target(target: dict, width: int) -> dict:
    """Mirror ``xyxy`` boxes: ``x1' = W - x2``, ``x2' = W - x1``."""
    flipped = TF.horizontal_flip_bounding_boxes(target["boxes"], tv_tensors.BoundingBoxFormat.XYXY, (0, width))
    return {**target, "boxes": flipped}


class TrainCollate:
    """The survey's training collate: every sample that contains a pedestrian (label 1; the survey tests
    ``labels.sum() > 0``, the same for labels in {0, 1}) is emitted twice, and every emitted copy is mirrored
    horizontally with probability ``flip_p`` (Python ``random``, seeded per DataLoader worker), so a batch can hold
    up to ``2 N`` samples. The mirror of the event counts is exact (``x -> W - 1 - x``)."""

    def __init__(self, width: int = 304, flip_p: float = 0.5, duplicate_label: int = 1):
        self.width, self.flip_p, self.duplicate_label = width, flip_p, duplicate_label

    def __call__(self, batch):
        out = []
        for x, target, index in batch:
            copies = 2 if bool((target["labels"] == self.duplicate_label).any()) else 1
            for _ in range(copies):
                if random.random() < self.flip_p:
                    out.append((x.flip(-1), hflip_target(target, self.width), index))
                else:
                    out.append((x, dict(target), index))
        return collate(out)
