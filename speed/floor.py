"""Memory-bandwidth floor of a multi-step LIF layer: the least time its unavoidable memory traffic takes.

For ``T`` steps of ``N`` neurons in ``itemsize``-byte floats (each tensor below is ``T*N`` elements):

* infer: read ``x``, write ``s``                                        -> ``2 * T * N * itemsize`` bytes;
* train: forward reads ``x``, writes ``s`` and the saved ``h``; backward reads ``h`` and ``grad_s``, writes
  ``grad_x``                                                            -> ``6 * T * N * itemsize`` bytes.

(The state ``v`` lives in registers across steps, so it adds no ``T``-scaled traffic; it is ignored.)
The bandwidth is that of ``dst.copy_(src)`` measured in the same run: ``B = 2 * nbytes / t_copy`` (read + write).
``floor_ms = bytes / B * 1e3`` and the share of the floor an implementation reaches is ``100 * floor_ms / t_ms``.
"""
from __future__ import annotations

import torch

from common.timing import time_call

TENSORS_MOVED = {"infer": 2, "train": 6}


def lif_bytes(mode: str, T: int, N: int, itemsize: int = 4) -> int:
    """Bytes a LIF layer must move for one call (see module docstring)."""
    return TENSORS_MOVED[mode] * T * N * itemsize


def floor_ms(nbytes: int, bandwidth_bytes_per_s: float) -> float:
    return nbytes / bandwidth_bytes_per_s * 1e3


def percent_of_floor(floor: float, measured_ms: float) -> float:
    return 100.0 * floor / measured_ms


def copy_bandwidth(device: torch.device | str = "cpu", nbytes: int = 256 * 2**20, repeats: int = 10) -> float:
    """Bytes/s moved by ``dst.copy_(src)`` of ``nbytes`` (counted twice: read and write), median of ``repeats``."""
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), device, repeats=repeats, warmup=2)
    return 2 * nbytes / (t.median_ms * 1e-3)
