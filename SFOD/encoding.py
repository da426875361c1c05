r"""The survey's event-window encoding (Gen1 and N-CARS): events -> counts ``[T, 2 tbin, H, W]``.

For the events of one window, with ``t`` made relative to the **first event** (not to the window start), step length
``S = window / T`` and micro-bin length ``S / tbin``::

    step  = floor(t / S)                                  (0 .. T-1)
    mb    = floor((t mod S) tbin / S)                     (micro-bin, 0 .. tbin-1)
    c     = q (mb + 1),  q = +1 (p = 1) or -1 (p = 0);    c -= 1 where c > 0;    c += max(mb) + 1

so with both micro-bins present (tbin = 2) channel 0 = negative & 2nd micro-bin, 1 = negative & 1st, 2 = positive &
1st, 3 = positive & 2nd. The offset ``max(mb) + 1`` depends on the window's data: if no event falls in a 2nd
micro-bin, only channels 0 (negative) and 1 (positive) are used -- the survey's quirk, kept on purpose.
``y``, ``x`` are clamped to the frame; repeated (step, channel, y, x) cells add up (event counts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def check_params(T: int, tbin: int, window_us: int) -> None:
    if T < 1 or tbin < 1 or window_us < 1 or window_us % (T * tbin):
        raise ValueError(f"need T, tbin >= 1 and a window divisible by T*tbin, got T={T}, tbin={tbin}, "
                         f"window={window_us} µs")


@dataclass(frozen=True)
class WindowParams:
    """The encoding of one window: ``T`` steps of ``tbin`` micro-bins over ``window_us`` (checked on creation)."""

    T: int = 5
    tbin: int = 2
    window_us: int = 100_000

    def __post_init__(self):
        check_params(self.T, self.tbin, self.window_us)


def cell_index(events: np.ndarray, T: int, tbin: int, window_us: int, height: int, width: int) -> np.ndarray:
    """Flat index into ``[T, 2 tbin, height, width]`` of every event of one window (int64, one per event)."""
    check_params(T, tbin, window_us)
    if len(events) == 0:
        return np.empty(0, dtype=np.int64)
    t = events["t"].astype(np.int64)
    t = t - t[0]
    step_us = window_us // T
    step = np.minimum(t // step_us, T - 1)  # only reachable when a caller passes a window longer than window_us
    mb = (t % step_us) * tbin // step_us
    code = np.where(events["p"] > 0, 1, -1) * (mb + 1)
    code = np.where(code > 0, code - 1, code) + mb.max() + 1
    y = np.clip(events["y"].astype(np.int64), 0, height - 1)
    x = np.clip(events["x"].astype(np.int64), 0, width - 1)
    return ((step * (2 * tbin) + code) * height + y) * width + x


def sparse_counts(events: np.ndarray, T: int, tbin: int, window_us: int, height: int, width: int):
    """``(cells int32 [K] sorted, counts uint16 [K])``: the non-zero cells of the count tensor."""
    cells, counts = np.unique(cell_index(events, T, tbin, window_us, height, width), return_counts=True)
    if len(counts) and counts.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"a cell received {counts.max()} events, more than a uint16 count holds")
    return cells.astype(np.int32), counts.astype(np.uint16)


def dense(cells: np.ndarray, counts: np.ndarray, T: int, tbin: int, height: int, width: int) -> np.ndarray:
    """Sparse cells -> dense float32 ``[T, 2 tbin, height, width]``."""
    out = np.zeros(T * 2 * tbin * height * width, dtype=np.float32)
    out[np.asarray(cells)] = np.asarray(counts)
    return out.reshape(T, 2 * tbin, height, width)
