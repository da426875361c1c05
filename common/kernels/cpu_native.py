"""Compiled CPU backend ``cpp``: the IF/LIF recurrence of ``lif_cpu.cpp`` built with g++ on first use.

Forward writes ``spike_seq``, ``h_seq`` and ``v_last`` and saves only ``h_seq``; backward recomputes the spikes from
``h_seq`` and runs the closed-form BPTT recurrence of :mod:`common.kernels.fused` (same equations, one pass over
memory each way). Chunks of 512 neurons (all T steps each, vectorised) are spread over ``torch.get_num_threads()``
OpenMP threads. One shared library per surrogate expression (``surrogate.cuda_expr``, float and double), cached in
``$SNN_KERNEL_CACHE`` (default ``~/.cache/snn-sg-kernels``) under a hash of source + flags + compiler + the CPU that
``-march=native`` resolves to, and loaded with ctypes (no torch headers, ~1 s per compile).

Compiler: ``$SNN_CXX``, else ``$CXX``, else ``g++``. Without a working compiler ``is_available`` is False (warned
once) and ``auto`` picks ``fused``; a library that fails to compile is warned about once and ``fused`` runs instead.
float32/float64 run compiled; other dtypes (bf16/fp16 on CPU) run ``fused``.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from common.kernels import BACKENDS
from common.kernels.cexpr import to_double
from common.kernels.fused import fused_multistep
from common.kernels.params import ChargeParams

SOURCE = Path(__file__).with_name("lif_cpu.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17", "-ffp-contract=off", "-fno-math-errno",
         *(("-DSNN_LIBMVEC", "-lmvec") if platform.libc_ver()[0] == "glibc" and platform.machine() == "x86_64" else ()))
DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_VOID = ctypes.c_void_p
_FWD_ARGS = [_VOID] * 5 + [ctypes.c_int64] * 2 + [ctypes.c_double] * 5 + [ctypes.c_int]
_BWD_ARGS = [_VOID] * 5 + [ctypes.c_int64] * 3 + [ctypes.c_int] + [ctypes.c_double] * 4 + [ctypes.c_int]
GRAIN = 1 << 16  # neuron-steps per thread: smaller calls use fewer threads (a parallel region costs ~10 us idle,
#                   milliseconds when the cores are busy with other processes)
_failed: dict[str, str] = {}  # reason why compiled kernels are unusable in this process (warned once)


class CompileError(RuntimeError):
    pass


def cache_dir() -> Path:
    """``$SNN_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/snn-sg-kernels`` (default ``~/.cache/snn-sg-kernels``)."""
    if os.environ.get("SNN_KERNEL_CACHE"):
        return Path(os.environ["SNN_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snn-sg-kernels"


def compiler() -> str | None:
    """Path of the C++ compiler (``$SNN_CXX``, ``$CXX`` or ``g++``), None if not found."""
    return shutil.which(os.environ.get("SNN_CXX") or os.environ.get("CXX") or "g++")


@functools.cache
def _toolchain_id(cxx: str) -> str:
    """Compiler version + the target flags ``-march=native`` expands to (the CPU the code is tuned for)."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    probe = subprocess.run([cxx, "-march=native", "-E", "-v", "-x", "c++", os.devnull],
                           capture_output=True, text=True, check=False)
    target = [line for line in probe.stderr.splitlines() if "cc1" in line and "-march" in line]
    return version + "\n" + (target[0].split(os.devnull, 1)[-1] if target else "")


def _source(sg_expr: str) -> str:
    """Full C++ source for the surrogate derivative ``sg_expr`` (``surrogate.cuda_expr("x")``)."""
    return (f"#define SNN_SG_FLOAT(x) ({sg_expr})\n#define SNN_SG_DOUBLE(x) {to_double(f'({sg_expr})')}\n"
            + SOURCE.read_text())


def _compile(source: str, cxx: str) -> Path:
    """Return the cached shared library for ``source``, compiling it atomically if missing."""
    key = hashlib.sha256("\0".join([source, " ".join(FLAGS), _toolchain_id(cxx)]).encode()).hexdigest()[:20]
    target = cache_dir() / f"lif_cpu_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / "lif_cpu.cpp", Path(tmp) / "lib.so"
        src.write_text(source)
        run = subprocess.run([cxx, str(src), "-o", str(out), *FLAGS], capture_output=True, text=True)
        if run.returncode != 0:
            raise CompileError(f"{cxx} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
        os.replace(out, target)  # atomic: concurrent processes never load a half-written library
    return target


def _names(prefix: str, modes: tuple[str, str]) -> list[str]:
    return [f"{prefix}_{d}_{r}_{m}" for d in DTYPES.values() for r in ("hard", "soft") for m in modes]


@functools.cache
def _library(sg_expr: str) -> dict[str, ctypes._CFuncPtr]:
    """Exported kernels of the library for surrogate expression ``sg_expr``, by symbol name, with ctypes signatures."""
    cxx = compiler()
    if cxx is None:
        raise CompileError("no C++ compiler found (install g++ or set SNN_CXX / CXX)")
    lib = ctypes.CDLL(str(_compile(_source(sg_expr), cxx)))
    kernels = {}
    for names, argtypes in ((_names("snn_fwd", ("h", "noh")), _FWD_ARGS),
                            (_names("snn_bwd", ("detach", "keep")), _BWD_ARGS)):
        for name in names:
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, None
            kernels[name] = fn
    return kernels


def _disable(reason: str) -> None:
    if not _failed:
        warnings.warn(f"backend 'cpp' unavailable, using 'fused' instead: {reason}", RuntimeWarning, stacklevel=3)
    _failed.setdefault("reason", reason)


def is_available(device: torch.device) -> bool:
    """CPU device and a C++ compiler that has not failed in this process."""
    if torch.device(device).type != "cpu":
        return False
    if not _failed and compiler() is None:
        _disable("no C++ compiler found (install g++ or set SNN_CXX / CXX)")
    return not _failed


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def _threads(numel: int) -> int:
    return max(1, min(torch.get_num_threads(), numel // GRAIN))


def _forward(lib, x_seq, v_init, p: ChargeParams, store_h: bool):
    spike = torch.empty_like(x_seq)
    h_seq = torch.empty_like(x_seq) if store_h else None
    v_last = torch.empty_like(v_init)
    name = f"snn_fwd_{DTYPES[x_seq.dtype]}_{'soft' if p.v_reset is None else 'hard'}_{'h' if store_h else 'noh'}"
    lib[name](
        _ptr(x_seq), _ptr(v_init), _ptr(spike), _ptr(h_seq), _ptr(v_last), x_seq.shape[0], v_init.numel(),
        p.k_v, p.k_x, p.c, p.v_threshold, p.v_reset or 0.0, _threads(x_seq.numel()))
    return spike, h_seq, v_last


class CppMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v_init, p: ChargeParams, lib):
        spike, h_seq, v_last = _forward(lib, x_seq, v_init, p, store_h=True)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not as a zero-filled tensor
        ctx.save_for_backward(h_seq)
        ctx.p, ctx.lib = p, lib
        return spike, v_last

    @staticmethod
    def backward(ctx, grad_spike, grad_v_last):
        (h_seq,) = ctx.saved_tensors
        p = ctx.p
        grad_spike = h_seq.new_zeros(()).expand_as(h_seq) if grad_spike is None else grad_spike
        # one value per step for all neurons (the gradient of a sum) is read in place, not materialised
        broadcast = all(stride == 0 for stride in grad_spike.stride()[1:])
        if not broadcast:
            grad_spike = grad_spike.contiguous()
        grad_v_last = None if grad_v_last is None else grad_v_last.contiguous()  # None: zero (kernel reads nothing)
        grad_x = torch.empty_like(h_seq)
        grad_v_init = torch.empty_like(h_seq[0]) if ctx.needs_input_grad[1] else None
        name = (f"snn_bwd_{DTYPES[h_seq.dtype]}_{'soft' if p.v_reset is None else 'hard'}_"
                f"{'detach' if p.detach_reset else 'keep'}")
        ctx.lib[name](
            _ptr(grad_spike), _ptr(grad_v_last), _ptr(h_seq), _ptr(grad_x), _ptr(grad_v_init), h_seq.shape[0],
            h_seq[0].numel(), grad_spike.stride(0), int(broadcast), p.k_v, p.k_x, p.v_threshold, p.v_reset or 0.0,
            _threads(h_seq.numel()))
        return grad_x, grad_v_init, None, None


@BACKENDS.register("cpp")
def cpp_multistep(x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams, surrogate):
    """Compiled OpenMP forward/backward; saves only ``h_seq``. Runs ``fused`` instead for other dtypes, surrogates
    without ``cuda_expr``, and (warned once) when no library can be built."""
    if x_seq.device.type != "cpu":
        raise ValueError(f"backend 'cpp' runs on CPU tensors, got {x_seq.device}; use 'cupy' or 'fused' on GPU")
    try:
        sg_expr = surrogate.cuda_expr("x")
    except NotImplementedError:
        sg_expr = None
    if x_seq.dtype not in DTYPES or _failed or sg_expr is None:
        return fused_multistep(x_seq, v_init, p, surrogate)
    try:
        lib = _library(sg_expr)
    except (CompileError, OSError, subprocess.SubprocessError) as err:
        _disable(str(err))
        return fused_multistep(x_seq, v_init, p, surrogate)
    x_seq, v_init = x_seq.contiguous(), v_init.to(x_seq.dtype).contiguous()
    if torch.is_grad_enabled() and (x_seq.requires_grad or v_init.requires_grad):
        return CppMultiStep.apply(x_seq, v_init, p, lib)
    spike, _, v_last = _forward(lib, x_seq, v_init, p, store_h=False)
    return spike, v_last


cpp_multistep.is_available = is_available
