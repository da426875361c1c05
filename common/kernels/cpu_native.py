"""Compiled CPU backend ``cpp``: the IF/LIF recurrence of ``lif_cpu.cpp`` built with g++ on first use.

Forward writes ``spike_seq``, ``h_seq`` and ``v_last`` and saves only ``h_seq``; backward recomputes the spikes from
``h_seq`` and runs the closed-form BPTT recurrence of :mod:`common.kernels.fused` (same equations, one pass over
memory each way; autograd Function shared with ``cupy`` in :mod:`common.kernels.compiled`). Chunks of 512 neurons
(all T steps each, vectorised) are spread over ``torch.get_num_threads()`` OpenMP threads. One shared library per
surrogate expression (``surrogate.cuda_expr``, float and double), cached in ``$SNN_KERNEL_CACHE`` (default
``$XDG_CACHE_HOME/snn-sg-kernels`` or ``~/.cache/snn-sg-kernels``) under a hash of source + flags + compiler + the
CPU that ``-march=native`` resolves to, and loaded with ctypes (no torch headers, ~1 s per compile). The cache
folder is created ``0700``; a cached library is loaded only if the current user owns it and no one else can write
to it (a shared library runs with the loader's rights).

Compiler: ``$SNN_CXX``, else ``$CXX``, else ``g++``. float32/float64 only; the dispatch
(:mod:`common.kernels.backend`) decides what runs when there is no compiler or a build fails.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from common.kernels.cexpr import to_double
from common.kernels.compiled import run_lif
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


def unavailable_reason(device: torch.device) -> str | None:
    """None when a C++ compiler is found, else the reason (the device type is checked by the dispatch)."""
    return None if compiler() else "no C++ compiler found (install g++ or set SNN_CXX / CXX)"


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


def private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 (tightened to 0700 if it exists); refuse a folder another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_owner(path, "kernel cache folder")
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def _check_owner(path: Path, what: str) -> None:
    """Refuse ``path`` unless the current user owns it and no one else can write to it."""
    info = path.stat()
    if info.st_uid != os.getuid() or (path.is_file() and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise CompileError(f"{what} {path} is owned by another user or writable by others; "
                           "set SNN_KERNEL_CACHE to a folder of your own")


def _compile(source: str, cxx: str, stem: str = "lif_cpu") -> Path:
    """Return the cached shared library ``{stem}_{hash}.so`` for ``source``, compiling it atomically if missing."""
    key = hashlib.sha256("\0".join([source, " ".join(FLAGS), _toolchain_id(cxx)]).encode()).hexdigest()[:20]
    target = private_dir(cache_dir()) / f"{stem}_{key}.so"
    if target.exists():
        _check_owner(target, "cached kernel library")
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / f"{stem}.cpp", Path(tmp) / "lib.so"
        src.write_text(source)
        run = subprocess.run([cxx, str(src), "-o", str(out), *FLAGS], capture_output=True, text=True)
        if run.returncode != 0:
            raise CompileError(f"{cxx} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
        out.chmod(0o700)
        os.replace(out, target)  # atomic: concurrent processes never load a half-written library
    return target


def _names(prefix: str, modes: tuple[str, str]) -> list[str]:
    return [f"{prefix}_{d}_{r}_{m}" for d in DTYPES.values() for r in ("hard", "soft") for m in modes]


@functools.cache
def library(sg_expr: str) -> dict[str, ctypes._CFuncPtr]:
    """Exported kernels of the library for surrogate expression ``sg_expr``, by symbol name, with ctypes signatures
    (built and loaded on first use; raises :class:`CompileError` / ``OSError`` when that fails)."""
    cxx = compiler()
    if cxx is None:
        raise CompileError(unavailable_reason(torch.device("cpu")))
    lib = ctypes.CDLL(str(_compile(_source(sg_expr), cxx)))
    kernels = {}
    for names, argtypes in ((_names("snn_fwd", ("h", "noh")), _FWD_ARGS),
                            (_names("snn_bwd", ("detach", "keep")), _BWD_ARGS)):
        for name in names:
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, None
            kernels[name] = fn
    return kernels


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def threads(numel: int) -> int:
    """OpenMP threads for a call over ``numel`` elements: one per :data:`GRAIN`, at most ``torch.get_num_threads()``."""
    return max(1, min(torch.get_num_threads(), numel // GRAIN))


@dataclass(frozen=True)
class CppKernels:
    """The forward / backward pair of one compiled library (:class:`~common.kernels.compiled.LIFKernels`)."""

    lib: dict

    def forward(self, x_seq, v_init, p: ChargeParams, spike_seq, h_seq, v_last) -> None:
        store = "h" if h_seq is not None else "noh"
        name = f"snn_fwd_{DTYPES[x_seq.dtype]}_{'soft' if p.v_reset is None else 'hard'}_{store}"
        self.lib[name](
            _ptr(x_seq), _ptr(v_init), _ptr(spike_seq), _ptr(h_seq), _ptr(v_last), x_seq.shape[0], v_init.numel(),
            p.k_v, p.k_x, p.c, p.v_threshold, p.v_reset or 0.0, threads(x_seq.numel()))

    def backward(self, grad_spike_seq, broadcast: bool, grad_v_last, h_seq, grad_x_seq, grad_v_init,
                 p: ChargeParams) -> None:
        name = (f"snn_bwd_{DTYPES[h_seq.dtype]}_{'soft' if p.v_reset is None else 'hard'}_"
                f"{'detach' if p.detach_reset else 'keep'}")
        self.lib[name](
            _ptr(grad_spike_seq), _ptr(grad_v_last), _ptr(h_seq), _ptr(grad_x_seq), _ptr(grad_v_init),
            h_seq.shape[0], h_seq[0].numel(), grad_spike_seq.stride(0), int(broadcast), p.k_v, p.k_x,
            p.v_threshold, p.v_reset or 0.0, threads(h_seq.numel()))


def cpp_multistep(x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams, surrogate):
    """Compiled OpenMP forward/backward on float32/float64 CPU tensors; saves only ``h_seq``."""
    return run_lif(CppKernels(library(surrogate.cuda_expr("x"))), x_seq, v_init, p)
