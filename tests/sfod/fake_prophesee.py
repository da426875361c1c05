"""Write Prophesee files in the exact on-disk formats, for tests (nothing here reads them).

    write_dat(path, t, x, y, p)                     # Event2D .dat with the usual Gen1 header
    write_dat(path, ..., header=None)               # header-less file (no type/size bytes either)
    write_boxes(path, rows)                         # Gen1 _bbox.npy, rows = (ts, x, y, w, h, class_id, track_id)
    write_gen1(root, {"train": {"rec": (events, boxes)}, ...})
    write_ncars(root, n_per_class=3)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

GEN1_HEADER = ("% Date 2019-01-01 00:00:00", "% Version 2", "% Height 240", "% Width 304")
BOX_DTYPE = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "u1"),
                      ("confidence", "<f4"), ("track_id", "<u4")])


def pack(x, y, p) -> np.ndarray:
    """The 32-bit address word: ``x | y << 14 | p << 28``."""
    return (np.asarray(x, np.uint32) | (np.asarray(y, np.uint32) << 14) | (np.asarray(p, np.uint32) << 28))


def write_dat(path, t, x, y, p, header=GEN1_HEADER, ev_type: int = 0, ev_size: int = 8, line_end: str = "\n"):
    """Write events (``t`` µs, sorted) as an Event2D ``.dat``; ``header=None`` writes no header and no type/size."""
    records = np.empty(len(t), dtype=[("t", "<u4"), ("w", "<u4")])
    records["t"], records["w"] = t, pack(x, y, p)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if header:
            f.write("".join(line + line_end for line in header).encode("latin-1"))
            f.write(bytes([ev_type, ev_size]))
        f.write(records.tobytes())
    return path


def write_boxes(path, rows, dtype=BOX_DTYPE):
    """``rows`` of ``(ts, x, y, w, h, class_id, track_id)`` -> ``_bbox.npy`` (confidence 1)."""
    arr = np.zeros(len(rows), dtype=dtype)
    for i, (ts, x, y, w, h, c, track) in enumerate(rows):
        values = dict(ts=ts, x=x, y=y, w=w, h=h, class_id=c, confidence=1.0, track_id=track)
        for name in dtype.names:
            arr[i][name] = values[name]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return path


def moving_object_events(rng, t_end_us: int, box=(40, 30, 60, 40), speed=(0.2, 0.0), rate_per_ms: int = 20,
                         t_start_us: int = 0, sensor=(240, 304)):
    """Events (t, x, y, p) on the edges of a box moving at ``speed`` px/ms, inside a ``sensor`` (H, W) frame."""
    n = (t_end_us - t_start_us) // 1000 * rate_per_ms
    t = np.sort(rng.integers(t_start_us, t_end_us, n))
    x0 = box[0] + speed[0] * t / 1000
    y0 = box[1] + speed[1] * t / 1000
    edge = rng.integers(0, 4, n)
    u = rng.random(n)
    x = np.where(edge < 2, x0 + u * box[2], np.where(edge == 2, x0, x0 + box[2]))
    y = np.where(edge >= 2, y0 + u * box[3], np.where(edge == 0, y0, y0 + box[3]))
    x = np.clip(x, 0, sensor[1] - 1).astype(np.int64)
    y = np.clip(y, 0, sensor[0] - 1).astype(np.int64)
    p = rng.integers(0, 2, n)
    return t, x, y, p


def write_recording(folder, name: str, events, box_rows, header=GEN1_HEADER):
    folder = Path(folder)
    write_dat(folder / f"{name}_td.dat", *events, header=header)
    write_boxes(folder / f"{name}_bbox.npy", box_rows)


def write_gen1(root, splits: dict, header=GEN1_HEADER) -> Path:
    """``splits = {"train": {name: (events, box_rows)}, ...}`` -> ``root/<split>/<name>_td.dat`` + ``_bbox.npy``."""
    for split, recordings in splits.items():
        for name, (events, rows) in recordings.items():
            write_recording(Path(root) / split, name, events, rows, header)
    return Path(root)


def synthetic_gen1(root, seed: int = 0, n_recordings: int = 2, splits=("train", "val", "test")) -> Path:
    """Small recordings (0.6 s) with a moving car and a pedestrian and boxes every 100 ms from 200 ms."""
    rng = np.random.default_rng(seed)
    spec = {}
    for split in splits:
        spec[split] = {}
        for k in range(n_recordings):
            car = moving_object_events(rng, 600_000, box=(40 + 10 * k, 60, 80, 50), speed=(0.1, 0.0))
            ped = moving_object_events(rng, 600_000, box=(200, 100, 24, 60), speed=(-0.05, 0.0), rate_per_ms=10)
            order = np.argsort(np.concatenate([car[0], ped[0]]), kind="stable")
            events = tuple(np.concatenate([a, b])[order] for a, b in zip(car, ped))
            rows = []
            for ts in range(200_000, 600_001, 100_000):
                rows.append((ts, 40 + 10 * k + 0.1 * ts / 1000, 60, 80, 50, 0, 1))
                if k == 0 or ts % 200_000 == 0:
                    rows.append((ts, 200 - 0.05 * ts / 1000, 100, 24, 60, 1, 2))
            spec[split][f"{split}_rec{k}"] = (events, rows)
    return write_gen1(root, spec)


def small_gen1(root, sensor=(128, 160), seed: int = 0, n_recordings: int = 2, splits=("train", "test")) -> Path:
    """Like :func:`synthetic_gen1` on a smaller ``sensor`` (H, W; header with that size): a car (label 0) moving
    right in every recording, a pedestrian (label 1) in the first; boxes every 100 ms from 200 ms to 600 ms."""
    rng = np.random.default_rng(seed)
    header = (*GEN1_HEADER[:2], f"% Height {sensor[0]}", f"% Width {sensor[1]}")
    spec = {}
    for split in splits:
        spec[split] = {}
        for k in range(n_recordings):
            car = moving_object_events(rng, 600_000, box=(10 + 8 * k, 20, 50, 36), speed=(0.05, 0.0),
                                       sensor=sensor)
            ped = moving_object_events(rng, 600_000, box=(110, 40, 22, 50), speed=(-0.02, 0.0), rate_per_ms=10,
                                       sensor=sensor)
            parts = [car, ped] if k == 0 else [car]
            order = np.argsort(np.concatenate([part[0] for part in parts]), kind="stable")
            events = tuple(np.concatenate([part[i] for part in parts])[order] for i in range(4))
            rows = []
            for ts in range(200_000, 600_001, 100_000):
                rows.append((ts, 10 + 8 * k + 0.05 * ts / 1000, 20, 50, 36, 0, 1))
                if k == 0:
                    rows.append((ts, 110 - 0.02 * ts / 1000, 40, 22, 50, 1, 2))
            spec[split][f"{split}_rec{k}"] = (events, rows)
    return write_gen1(root, spec, header)


def write_ncars(root, n_per_class: int = 3, seed: int = 0, splits=("train", "test")) -> Path:
    """``root/<split>/{background,cars}/obj_k_td.dat``: 100x120-pixel samples 120 ms long (cars: a moving box)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for cls in ("background", "cars"):
            for k in range(n_per_class):
                if cls == "cars":
                    t, x, y, p = moving_object_events(rng, 120_000, box=(20, 20, 60, 40), speed=(0.1, 0))
                else:
                    n = 1500
                    t = np.sort(rng.integers(0, 120_000, n))
                    x, y, p = rng.integers(0, 120, n), rng.integers(0, 100, n), rng.integers(0, 2, n)
                x, y = np.minimum(x, 119), np.minimum(y, 99)
                write_dat(Path(root) / split / cls / f"obj_{k}_td.dat", t, x, y, p,
                          header=("% Date 2018-01-01", "% Version 2"))
    return Path(root)
