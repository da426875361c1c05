"""Multi-step neuron kernels behind one backend contract (:mod:`common.kernels.backend`).

Kernel kind ``lif`` (IF and LIF through :class:`ChargeParams`) is the recurrence

    h[t] = k_v * v[t-1] + k_x * x[t] + c
    s[t] = H(h[t] - v_threshold)
    v[t] = h[t] * (1 - s[t]) + v_reset * s[t]      (hard reset)
    v[t] = h[t] - v_threshold * s[t]                 (soft reset, v_reset is None)

with ``s`` detached inside the reset when ``detach_reset``; ``clif`` and ``online_lif`` are documented in
:mod:`common.kernels.clif` / :mod:`common.kernels.online`. Backends (``--backend``):

* ``torch``: a plain autograd loop, the reference every faster path is tested against (every kind, device, dtype);
* ``fused``: forward without a graph, closed-form BPTT backward in torch ops (every kind, device, dtype);
* ``cpp``: compiled OpenMP C++ (``lif`` on float32/float64 CPU tensors; needs a C++ compiler);
* ``cupy``: generated CUDA kernels (every kind on CUDA tensors; needs CuPy).

``auto`` picks ``cupy`` > ``fused`` on CUDA and ``cpp`` > ``fused`` on CPU.

>>> spike_seq, v_last = multistep("lif", "auto", x_seq, (v_init,), ChargeParams.leaky(2.0), surrogate)
"""
from __future__ import annotations

from common.kernels import clif, cpu_native, cupy_ops, fused, online, torch_loop
from common.kernels.backend import (
    AUTO_ORDER,
    BACKENDS,
    KINDS,
    Backend,
    check,
    cuda_expr,
    forget,
    multistep,
    names_for,
    register,
    resolve,
)
from common.kernels.params import ChargeParams

register(Backend("torch", {"lif": torch_loop.torch_multistep, "clif": clif.clif_torch,
                           "online_lif": online.online_torch}))
register(Backend("fused", {"lif": fused.fused_multistep, "clif": clif.clif_fused, "online_lif": online.online_fused}))
register(Backend("cpp", {"lif": cpu_native.cpp_multistep}, devices=frozenset({"cpu"}),
                 dtypes=frozenset(cpu_native.DTYPES), compiled=True,
                 unavailable=cpu_native.unavailable_reason, build=cpu_native.library))
register(Backend("cupy", {"lif": cupy_ops.cupy_multistep, "clif": clif.clif_cupy, "online_lif": online.online_cupy},
                 devices=frozenset({"cuda"}), dtypes=frozenset(cupy_ops.TORCH_DTYPES), compiled=True,
                 unavailable=cupy_ops.unavailable_reason))

__all__ = ["AUTO_ORDER", "BACKENDS", "KINDS", "Backend", "ChargeParams", "check", "cuda_expr", "forget", "multistep",
           "names_for", "register", "resolve"]
