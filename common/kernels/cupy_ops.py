"""CuPy launcher for the generated kernels (:mod:`common.kernels.cupy_codegen`) and the ``cupy`` IF/LIF backend.

Kernels are compiled with NVRTC through ``cupy.RawModule`` once per (variant, compile options, device) and launched on
torch's current CUDA stream with raw ``data_ptr()`` arguments (no copies, no CuPy arrays). ``cupy`` saves only
``h_seq`` for backward (autograd Function shared with ``cpp``: :mod:`common.kernels.compiled`).
:func:`unavailable_reason` says in one line what is missing (a CUDA device, CuPy, a kernel that compiles), with the
``pip install cupy-cudaNNx`` matching ``torch.version.cuda``.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from common.kernels import cupy_codegen as cg
from common.kernels.compiled import run_lif
from common.kernels.params import ChargeParams

TORCH_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
                torch.bfloat16: "bfloat16"}
_PROBE = 'extern "C" __global__ void snn_probe(float* x) { x[threadIdx.x] = 1.0f; }'


def install_hint() -> str:
    """``pip install cupy-cudaNNx`` for the CUDA major version torch was built with."""
    cuda = torch.version.cuda
    if not cuda:
        return "a CUDA build of torch and then the matching cupy-cudaNNx wheel"
    return f"pip install cupy-cuda{cuda.split('.')[0]}x (torch is built for CUDA {cuda})"


@functools.cache
def _status(device_index: int) -> str | None:
    """None when CuPy can compile and launch on CUDA device ``device_index``, else the reason."""
    try:
        import cupy
    except Exception as err:  # noqa: BLE001 - ImportError or a broken CUDA library load
        return f"CuPy is not importable ({type(err).__name__}: {err}); install it with {install_hint()}"
    try:
        with cupy.cuda.Device(device_index):
            probe = cupy.zeros(1, dtype=cupy.float32)
            cupy.RawKernel(_PROBE, "snn_probe", options=cg.CONFIG.options)((1,), (1,), (probe,))
            cupy.cuda.get_current_stream().synchronize()
    except Exception as err:  # noqa: BLE001 - NVRTC / driver errors come in many types
        return f"CuPy cannot compile or launch a kernel ({type(err).__name__}: {err}); check {install_hint()}"
    return None


def _index(device: torch.device) -> int:
    return torch.cuda.current_device() if device.index is None else device.index


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why ``cupy`` cannot run on ``device`` (one line), or None."""
    device = torch.device(device)
    missing = [] if importlib.util.find_spec("cupy") else [f"CuPy is not installed: {install_hint()}"]
    if device.type != "cuda":
        missing.insert(0, f"it needs CUDA tensors, got {device.type} tensors (use 'cpp' or 'fused' on CPU)")
    elif not torch.cuda.is_available():
        missing.insert(0, "torch sees no CUDA device")
    if missing:
        return "; ".join(missing)
    reason = _status(_index(device))
    return None if reason is None else " ".join(reason.split())


@functools.cache
def _functions(variant: cg.Variant, options: tuple[str, ...], device_index: int) -> dict:
    import cupy

    specs = cg.kernels(variant)
    with cupy.cuda.Device(device_index):
        module = cupy.RawModule(code=cg.source([variant]), options=options)
        return {role: (spec, module.get_function(spec.name)) for role, spec in specs.items()}


def _stream(device_index: int):
    import cupy

    stream = torch.cuda.current_stream(device_index)
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, device_index)


def launch(variant: cg.Variant, role: str, device: torch.device, **args) -> None:
    """Run kernel ``role`` of ``variant`` with one thread per neuron (``args["n"]`` neurons); ``args`` by parameter
    name: tensors (or None) for pointers, numbers for scalars and indices."""
    n = args["n"]
    if n == 0:
        return
    index = _index(device)
    spec, fn = _functions(variant, tuple(cg.CONFIG.options), index)[role]
    scalar = np.float64 if variant.ctype.compute == "double" else np.float32
    convert = {"ptr": lambda t: np.uint64(0 if t is None else t.data_ptr()),
               "theta": lambda t: np.uint64(t.data_ptr()), "scalar": scalar, "index": np.int64}
    values = tuple(convert[p.kind](args[p.name]) for p in spec.params)
    threads = cg.CONFIG.threads
    import cupy

    with cupy.cuda.Device(index), _stream(index):
        fn(((n + threads - 1) // threads,), (threads,), values)


def variant_dtype(x: torch.Tensor) -> str:
    return TORCH_DTYPES[x.dtype]


@dataclass(frozen=True)
class CupyKernels:
    """The forward / backward pair of one IF/LIF variant (:class:`~common.kernels.compiled.LIFKernels`)."""

    variant: cg.Variant

    def forward(self, x_seq, v_init, p: ChargeParams, spike_seq, h_seq, v_last) -> None:
        launch(self.variant, "fwd", x_seq.device, x_seq=x_seq, v_init=v_init, spike_seq=spike_seq, h_seq=h_seq,
               v_last=v_last, k_v=p.k_v, k_x=p.k_x, c=p.c, v_th=p.v_threshold, v_reset=p.v_reset or 0.0,
               steps=x_seq.shape[0], n=v_init.numel())

    def backward(self, grad_spike_seq, broadcast: bool, grad_v_last, h_seq, grad_x_seq, grad_v_init,
                 p: ChargeParams) -> None:
        launch(self.variant, "bwd", h_seq.device, grad_spike_seq=grad_spike_seq, grad_v_last=grad_v_last,
               h_seq=h_seq, grad_x_seq=grad_x_seq, grad_v_init=grad_v_init, k_v=p.k_v, k_x=p.k_x,
               v_th=p.v_threshold, v_reset=p.v_reset or 0.0, steps=h_seq.shape[0], n=h_seq[0].numel(),
               gs_t=grad_spike_seq.stride(0), gs_n=0 if broadcast else 1)


def cupy_multistep(x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams, surrogate):
    """Generated CUDA kernels (one thread per neuron, loop over T); saves only ``h_seq``."""
    variant = cg.Variant.make("lif", variant_dtype(x_seq), surrogate, hard_reset=p.v_reset is not None,
                              detach_reset=p.detach_reset)
    return run_lif(CupyKernels(variant), x_seq, v_init, p)
