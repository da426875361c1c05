"""Wall time and peak memory of one call of a function, in **milliseconds** and **MiB** on every device.

Timing (:func:`time_call`): ``warmup`` untimed calls, then ``repeats`` timed calls; each call is bracketed by

* CUDA: ``torch.cuda.Event`` records before and after the call, then ``end.synchronize()``; ``elapsed_time`` is ms;
* CPU: ``time.perf_counter()`` before and after (seconds, multiplied by 1000).

The result is the median and the inter-quartile range ``IQR = q75 - q25`` (linear interpolation between order
statistics, numpy's default) of the per-call times, all in ms. (SpikingJelly's ``cal_fun_t`` returns the *mean of the
last n of 2n* calls, in ms on CUDA but in seconds on CPU; here both devices report ms.)

Peak memory (:func:`peak_memory_mb`), measured on one extra, untimed call; ``MB`` means MiB = 2**20 bytes:

* CUDA: ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` before the call, after
  ``reset_peak_memory_stats``: bytes the call allocated at its peak through torch's caching allocator.
* CPU: resident-set high-water mark. ``malloc_trim(0)`` hands freed heap pages back to the OS, writing ``5`` to
  ``/proc/self/clear_refs`` resets the kernel's high-water mark ``VmHWM``; then
  ``peak = VmHWM(after the call) - VmRSS(before the call)``, i.e. the memory the call newly touched at its peak
  (kB in ``/proc``, converted to MiB). It counts every allocator (torch, Python, C++ extensions), so it is a slight
  over-estimate of the tensor bytes; tracemalloc would miss torch's allocator entirely. ``nan`` where ``/proc``
  is unavailable (non-Linux).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MIB = 2**20


@dataclass(frozen=True)
class Timing:
    """Per-call times in ms and their median / inter-quartile range."""

    median_ms: float
    iqr_ms: float
    times_ms: tuple[float, ...]

    @classmethod
    def from_times(cls, times_ms) -> Timing:
        t = np.asarray(list(times_ms), dtype=np.float64)
        if t.size == 0:
            raise ValueError("no timed calls")
        q25, q50, q75 = np.percentile(t, [25, 50, 75])
        return cls(float(q50), float(q75 - q25), tuple(float(v) for v in t))


def call_ms(fn: Callable[[], object], device: torch.device | str = "cpu",
            clock: Callable[[], float] = time.perf_counter) -> float:
    """Time one ``fn()`` call in ms: CUDA events (after a synchronize) on CUDA, ``clock`` (seconds) elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    begin = clock()
    fn()
    return (clock() - begin) * 1e3


def time_call(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 20, warmup: int = 1,
              max_seconds: float | None = None, min_repeats: int = 3,
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then time up to ``repeats`` calls (ms on every device).

    ``max_seconds`` caps the timed phase: after at least ``min_repeats`` calls, stop once the measured calls add up to
    more than ``max_seconds``. ``clock`` (seconds) is only used on CPU; tests pass a fake one.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for i in range(repeats):
        times.append(call_ms(fn, device, clock))
        if max_seconds is not None and i + 1 >= min_repeats and sum(times) > max_seconds * 1e3:
            break
    return Timing.from_times(times)


_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_kb(field: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def _malloc_trim() -> None:
    """Return freed heap pages to the OS (glibc), so that re-touching them shows in the RSS."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def cpu_rss_supported() -> bool:
    return _PROC_STATUS.exists() and _CLEAR_REFS.exists()


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Extra memory (MiB) held at the peak of one ``fn()`` call, relative to its start (see module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / MIB
    if not cpu_rss_supported():
        return math.nan
    _malloc_trim()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return math.nan
    base_kb = _proc_kb("VmRSS")
    fn()
    return max(_proc_kb("VmHWM") - base_kb, 0) * 1024 / MIB
