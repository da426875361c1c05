"""1 bit per spike: pack a tensor whose values are exactly 0 or 1 into bytes and back, bit-exact.

Element ``i`` of the flattened tensor goes to bit ``i % 8`` of byte ``i // 8`` (NumPy's
``packbits(bitorder="little")``), so ``n`` spikes take ``ceil(n / 8)`` bytes instead of ``n * itemsize``. Only the
zero test is used (``x != 0``), so a value other than 0/1 would come back as 1: callers pack only tensors that a
spiking neuron emitted (:mod:`common.memory`).

Kernels: ``bitpack_cpu.cpp`` (OpenMP, one pass over memory each way, built like the ``cpp`` neuron backend) on CPU
tensors when a C++ compiler is found; torch ops elsewhere (CUDA, no compiler).
"""
from __future__ import annotations

import ctypes
import functools
import struct
from pathlib import Path

import torch

from common.kernels import cpu_native

SOURCE = Path(__file__).with_name("bitpack_cpu.cpp")
# The raw bits of 1.0 per element width / dtype: unpack writes them directly.
_ONE = {torch.float16: 0x3C00, torch.bfloat16: 0x3F80, torch.float32: struct.unpack("<I", struct.pack("<f", 1.0))[0],
        torch.float64: struct.unpack("<Q", struct.pack("<d", 1.0))[0]}
_SHIFTS = {}  # device -> arange(8) as uint8, for the torch-op path
# Eight 0/1 bytes read as one little-endian int64, times this constant, carry byte k to bit k of the top byte.
_GATHER = 0x0102040810204080


@functools.cache
def _library():
    """The compiled pack/unpack pair, or None where no compiler is found or the build fails."""
    cxx = cpu_native.compiler()
    if cxx is None:
        return None
    try:
        lib = ctypes.CDLL(str(cpu_native._compile(SOURCE.read_text(), cxx, stem="bitpack_cpu")))
    except (cpu_native.CompileError, OSError):
        return None
    lib.snn_pack_bits.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    lib.snn_unpack_bits.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint64,
                                    ctypes.c_int]
    return lib


def _native(x: torch.Tensor):
    return _library() if x.device.type == "cpu" and x.dtype in _ONE else None


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """``uint8 [ceil(n / 8)]``: bit ``i % 8`` of byte ``i // 8`` is ``x.flatten()[i] != 0``."""
    flat = x.contiguous().view(-1)
    n = flat.numel()
    out = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device)
    lib = _native(flat)
    if lib is not None:
        lib.snn_pack_bits(flat.data_ptr(), out.data_ptr(), n, flat.element_size(), 1)  # ~1 ms per 16 MiB read
        return out
    nonzero = torch.zeros(out.numel() * 8, dtype=torch.bool, device=x.device)
    torch.ne(flat, 0, out=nonzero[:n])
    torch.bitwise_and((nonzero.view(torch.int64) * _GATHER) >> 56, 0xFF, out=nonzero.view(torch.int64))
    return nonzero.view(torch.int64).to(torch.uint8)


def unpack_bits(bits: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """The flat ``[n]`` tensor of 0/1 values of ``dtype`` that :func:`pack_bits` packed into ``bits``."""
    out = torch.empty(n, dtype=dtype, device=bits.device)
    lib = _native(out)
    if lib is not None:
        lib.snn_unpack_bits(bits.data_ptr(), out.data_ptr(), n, out.element_size(), _ONE[dtype], cpu_native.threads(n))
        return out
    shifts = _SHIFTS.setdefault(bits.device, torch.arange(8, dtype=torch.uint8, device=bits.device))
    return out.copy_(((bits.unsqueeze(1) >> shifts) & 1).view(-1)[:n])
