"""Multi-step IF/LIF backends behind one contract.

Every backend is ``fn(x_seq, v_init, params, surrogate) -> (spike_seq, v_last)`` for the recurrence

    h[t] = k_v * v[t-1] + k_x * x[t] + c
    s[t] = H(h[t] - v_threshold)
    v[t] = h[t] * (1 - s[t]) + v_reset * s[t]      (hard reset)
    v[t] = h[t] - v_threshold * s[t]                 (soft reset, v_reset is None)

with ``s`` detached inside the reset when ``detach_reset``. ``x_seq`` is ``[T, ...]``; ``v_init`` has the shape of
``x_seq[0]``. The ``torch`` backend is the reference every faster path is tested against.
"""
from __future__ import annotations

import torch

from common.kernels.params import ChargeParams
from common.registry import Registry

BACKENDS = Registry("backend")

# ``auto`` tries these in order and takes the first one that is available on the device.
AUTO_ORDER = {"cuda": ("cupy", "fused"), "cpu": ("cpp", "fused")}


def available(name: str, device: torch.device | str, registry: Registry = BACKENDS) -> bool:
    fn = registry.get(name)
    check = getattr(fn, "is_available", None)
    return True if check is None else bool(check(torch.device(device)))


def resolve_backend(name: str, device: torch.device | str, registry: Registry = BACKENDS) -> str:
    """Map ``auto`` to a concrete backend of ``registry`` for ``device``; check that an explicit name exists.
    (The CLIF and online-LIF registries in ``common.kernels.clif`` / ``online`` resolve through the same order.)"""
    device = torch.device(device)
    if name != "auto":
        registry.get(name)
        return name
    for candidate in AUTO_ORDER.get(device.type, ("fused",)):
        if candidate in registry and available(candidate, device, registry):
            return candidate
    return "torch"


def multistep(backend: str, x_seq, v_init, params: ChargeParams, surrogate):
    """Run the IF/LIF recurrence with ``backend`` (``auto`` resolved on ``x_seq.device``)."""
    return BACKENDS.get(resolve_backend(backend, x_seq.device))(x_seq, v_init, params, surrogate)


# Registration happens on import of the backend modules.
from common.kernels import cpu_native, cupy_ops, fused, torch_loop  # noqa: E402,F401

__all__ = ["BACKENDS", "ChargeParams", "multistep", "resolve_backend", "available"]
