r"""Prophesee files: Event2D ``.dat`` event streams (Gen1 ``<name>_td.dat``, N-CARS) and Gen1 ``<name>_bbox.npy`` boxes.

``.dat`` layout: ASCII header lines that start with ``"% "`` (``% Height 240``, ``% Width 304``, ...; the first line
without that prefix ends the header); then, only if there was a header line, two bytes ``event type`` and
``event size`` (uint8; 0 and 8 for Event2D); then packed little-endian 8-byte records::

    t    uint32   time stamp in microseconds, non-decreasing
    w    uint32   x = w & 0x3FFF (bits 0-13),  y = (w & 0x0FFFC000) >> 14 (bits 14-27),  p = (w >> 28) & 1 (bit 28)

A header-less file is read as type 0, size 8. :class:`DatFile` memory-maps the records and reproduces the semantics of
Prophesee's ``PSEELoader`` that the survey uses: ``seek_time(t)`` puts the cursor on the first event with time stamp
``>= t`` and sets the current time to ``t`` (``t <= 0``: file start and time 0; ``t`` after the last event: file end
and time ``last + 1``); ``load_delta_t(d)`` returns the events from the cursor with time stamp ``< current + d`` and
advances the current time to ``current + d`` (to ``last + 1`` when the file ends first). We chose this ~150-line NumPy
reader over PyPI readers; the reasons are in ``docs/sfod.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError

RECORD = np.dtype([("t", "<u4"), ("w", "<u4")])
EVENT = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
BOX_FIELDS = ("t", "x", "y", "w", "h", "class_id", "track_id")  # read by the sample builder; ``ts`` -> ``t``
_CHUNK = 1 << 22  # records checked at once (bounds the temporaries of the order check)


def _fail(path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


@dataclass(frozen=True)
class DatHeader:
    """What the header says: byte ``offset`` of the first record, event type and size, sensor size (or None)."""

    offset: int
    ev_type: int
    ev_size: int
    height: int | None
    width: int | None


def _header_value(path, line: str, key: str) -> int | None:
    words = line.split()
    if len(words) < 3 or words[1] != key:
        return None
    try:
        return int(words[2])
    except ValueError:
        raise _fail(path, f"header line {line!r} has no integer {key}") from None


def read_header(path) -> DatHeader:
    """Parse the ``% `` header and the type/size bytes of a ``.dat`` file."""
    sizes = {"Height": None, "Width": None}
    n_lines = 0
    with open(path, "rb") as f:
        while True:
            start = f.tell()
            line = f.readline()
            if not line.startswith(b"% "):
                break
            n_lines += 1
            text = line.decode("latin-1").rstrip("\r\n")
            for key in sizes:
                value = _header_value(path, text, key)
                sizes[key] = sizes[key] if value is None else value
        f.seek(start)
        if n_lines == 0:
            return DatHeader(start, 0, RECORD.itemsize, None, None)
        type_size = f.read(2)
    if len(type_size) < 2:
        raise _fail(path, "the header is not followed by the event type and size bytes")
    return DatHeader(start + 2, type_size[0], type_size[1], sizes["Height"], sizes["Width"])


def check_layout(path) -> DatHeader:
    """The header of ``path`` after checking the record size and that the file holds whole records, at least one."""
    header = read_header(path)
    if header.ev_size != RECORD.itemsize:
        raise _fail(path, f"event size {header.ev_size} bytes; only {RECORD.itemsize}-byte Event2D records are "
                          "supported")
    n_bytes = Path(path).stat().st_size - header.offset
    if n_bytes == 0:
        raise _fail(path, "contains no events (header only)")
    if n_bytes % RECORD.itemsize:
        raise _fail(path, f"truncated: {n_bytes} bytes of events is not a whole number of {RECORD.itemsize}-byte "
                          "records")
    return header


def decode(records: np.ndarray) -> np.ndarray:
    """8-byte records -> structured events ``(t int64, x uint16, y uint16, p uint8)``."""
    w = records["w"]
    out = np.empty(len(records), dtype=EVENT)
    out["t"] = records["t"]
    out["x"] = w & 0x3FFF
    out["y"] = (w & 0x0FFFC000) >> 14
    out["p"] = (w >> 28) & 1
    return out


class DatFile:
    """A memory-mapped Event2D ``.dat`` file with PSEELoader's cursor (see the module docstring).

    ``sensor_size = (height, width)`` is used when the header gives no ``Height``/``Width``; with a known size, loaded
    events outside it raise :class:`DataError`. Opening checks the header, the record size, that the file holds
    whole records and at least one, and that time stamps never decrease.
    """

    def __init__(self, path, sensor_size: tuple[int, int] | None = None):
        self.path = Path(path)
        header = check_layout(self.path)
        self.records = np.memmap(self.path, dtype=RECORD, mode="r", offset=header.offset)
        default = sensor_size or (None, None)
        self.height = header.height if header.height is not None else default[0]
        self.width = header.width if header.width is not None else default[1]
        self._check_order()
        self.position, self.current_time = 0, 0

    def _check_order(self) -> None:
        t = self.records["t"]
        for start in range(0, len(t), _CHUNK):
            chunk = np.asarray(t[start:start + _CHUNK + 1])
            bad = np.flatnonzero(chunk[1:] < chunk[:-1])
            if len(bad):
                raise _fail(self.path, f"time stamps decrease at event {start + bad[0] + 1}")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def times(self) -> np.ndarray:
        return self.records["t"]

    def total_time(self) -> int:
        """Time stamp of the last event (µs)."""
        return int(self.times[-1])

    def seek_time(self, t: int) -> None:
        if t > self.total_time():
            self.position, self.current_time = len(self), self.total_time() + 1
        elif t <= 0:
            self.position, self.current_time = 0, 0
        else:
            self.position, self.current_time = int(np.searchsorted(self.times, t, side="left")), int(t)

    def load_delta_t(self, delta_t: int) -> np.ndarray:
        """Events with time stamp in ``[cursor, current_time + delta_t)``; advances the cursor and the time."""
        if delta_t < 1:
            raise ValueError(f"load_delta_t: delta_t must be at least 1 µs, got {delta_t}")
        if self.position >= len(self):
            return np.empty(0, dtype=EVENT)
        final = self.current_time + delta_t
        end = self.position + int(np.searchsorted(self.times[self.position:], final, side="left"))
        events = decode(self.records[self.position:end])
        self.current_time = final if end < len(self) else self.total_time() + 1
        self.position = end
        self._check_inside(events)
        return events

    def _check_inside(self, events: np.ndarray) -> None:
        for axis, limit in (("x", self.width), ("y", self.height)):
            if limit is not None and len(events) and int(events[axis].max()) >= limit:
                i = int(np.argmax(events[axis] >= limit))
                raise _fail(self.path, f"event at t={events['t'][i]} has {axis}={events[axis][i]} outside the "
                                       f"{self.width}x{self.height} sensor")


def load_boxes(path) -> np.ndarray:
    """A Gen1 ``_bbox.npy`` structured array (``ts`` renamed to ``t``), checked for the fields the sample builder
    reads (``ts, x, y, w, h, class_id, track_id``; ``confidence`` is optional) and for sorted time stamps."""
    try:
        boxes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise _fail(path, f"not a readable .npy box array ({' '.join(str(e).split())})") from None
    names = boxes.dtype.names
    if names is None or boxes.ndim != 1:
        raise _fail(path, f"expected a 1-D structured box array, found dtype {boxes.dtype} shape {boxes.shape}")
    boxes = boxes.copy()
    boxes.dtype.names = tuple("t" if name == "ts" else name for name in names)
    missing = [("ts" if f == "t" else f) for f in BOX_FIELDS if f not in boxes.dtype.names]
    if missing:
        raise _fail(path, f"box array lacks the field(s) {', '.join(missing)}")
    if len(boxes) > 1 and (np.diff(boxes["t"].astype(np.int64)) < 0).any():
        raise _fail(path, "box time stamps are not sorted")
    return boxes
