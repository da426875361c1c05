r"""The ultralytics "coco2017labels" layout: image lists, label files and their parsing.

    ROOT/train2017.txt, ROOT/val2017.txt     one image path per line; a leading ``./`` means ROOT (the list's folder)
    ROOT/images/val2017/000000000139.jpg     (a directory may be given instead of a list: searched recursively)
    ROOT/labels/val2017/000000000139.txt     label file = image path with the last /images/ -> /labels/, ext -> .txt

A label row is ``cls cx cy w h`` (class 0..nc-1, box centre and size normalised by the image width/height), or a
polygon ``cls x1 y1 x2 y2 x3 y3 ...`` (at least 3 points) that becomes its bounding box
``(min x, min y, max x, max y)``. Identical rows are kept once; a missing or empty label file means no objects.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import DataError, UsageError

IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "png", "tif", "tiff", "dng", "webp", "mpo")
MIN_IMAGE_SIDE = 10  # pixels; smaller images are rejected (as YOLOv5 does)


class BadSample(ValueError):
    """One image or label file that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def _is_image(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def image_files(source: str | os.PathLike) -> list[str]:
    """Image paths listed by ``source``: a ``.txt`` list (``./x`` is relative to the list's folder, other relative
    paths too) or a directory searched recursively; sorted, images only."""
    source = Path(source)
    if source.is_dir():
        files = [str(p) for p in source.rglob("*") if p.is_file()]
    elif source.is_file():
        parent = source.parent
        lines = [line.strip() for line in source.read_text().splitlines()]
        files = [str(parent / line[2:]) if line.startswith("./") else str(parent / line) for line in lines if line]
    else:
        raise UsageError(f"image list {source} does not exist (expected a .txt list or an image directory)")
    files = sorted(f for f in files if _is_image(f))
    if not files:
        raise DataError(f"image list {source} names no images (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return files


def label_path(image_path: str) -> str:
    """``.../images/x/name.jpg -> .../labels/x/name.txt`` (the last ``/images/`` only)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = image_path.rpartition(sa)
    stem = (head + sb + tail) if sep else image_path
    return stem.rsplit(".", 1)[0] + ".txt"


def check_image(path: str) -> tuple[int, int]:
    """``(height, width)`` of a readable, complete image; raises :class:`BadSample` otherwise."""
    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums (not every pixel)
        with Image.open(path) as im:
            w, h = im.size
            fmt = im.format
    except (OSError, SyntaxError, ValueError) as e:
        reason = " ".join(str(e).replace(f"'{path}'", "").replace(path, "").split())  # the path is said once
        raise BadSample(path, f"unreadable image ({reason})") from None
    if min(w, h) < MIN_IMAGE_SIDE:
        raise BadSample(path, f"image is {w}x{h}, smaller than {MIN_IMAGE_SIDE} px")
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(-2, os.SEEK_END)
            if f.read() != b"\xff\xd9":
                raise BadSample(path, "truncated JPEG (no end-of-image marker)")
    return h, w


def _row_to_box(values: list[float], path: str, line_no: int) -> list[float]:
    """``[cls, cx, cy, w, h]`` from a box row or a polygon row."""
    n = len(values)
    if n == 5:
        return values
    if n >= 7 and n % 2 == 1:
        xy = np.asarray(values[1:], dtype=np.float64).reshape(-1, 2)
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        return [values[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    raise BadSample(path, f"line {line_no} has {n} columns (expected 5 = cls cx cy w h, or cls + >= 3 xy points)")


def parse_labels(path: str, nc: int) -> np.ndarray:
    """Rows ``[cls, cx, cy, w, h]`` (float32, duplicates removed, file order kept) of label file ``path``; a missing
    file gives ``[0, 5]``. Raises :class:`BadSample` for a malformed row, a class outside ``0..nc-1`` or a
    coordinate outside [0, 1]."""
    if not os.path.isfile(path):
        return np.zeros((0, 5), np.float32)
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                raise BadSample(path, f"line {line_no} is not numeric: {line.strip()[:40]!r}") from None
            rows.append(_row_to_box(values, path, line_no))
    if not rows:
        return np.zeros((0, 5), np.float32)
    labels = np.asarray(rows, dtype=np.float64)
    cls = labels[:, 0]
    if (cls != np.round(cls)).any() or (cls < 0).any() or (cls >= nc).any():
        raise BadSample(path, f"class id {cls[(cls != np.round(cls)) | (cls < 0) | (cls >= nc)][0]:g} "
                              f"is not an integer in 0..{nc - 1}")
    xy = labels[:, 1:]
    if (xy < 0).any() or (xy > 1).any():
        raise BadSample(path, "box coordinates outside [0, 1] (labels must be normalised by the image size)")
    _, first = np.unique(labels, axis=0, return_index=True)
    return labels[np.sort(first)].astype(np.float32)


def load_sample(image_path: str, nc: int) -> tuple[tuple[int, int], np.ndarray]:
    """``((height, width), labels [n, 5])`` of one image; raises :class:`BadSample`."""
    return check_image(image_path), parse_labels(label_path(image_path), nc)
