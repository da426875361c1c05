"""The autograd Function shared by the compiled IF/LIF backends (``cpp`` on CPU, ``cupy`` on CUDA).

Both run the recurrence of :mod:`common.kernels.fused` in a kernel pair (:class:`LIFKernels`): forward writes the
spikes, ``v_last`` and (only when a gradient is needed and the saved tensors are kept, see
:func:`saved_tensors_discarded`) ``h_seq``; backward recomputes the spikes and ``g'(h - v_th)``
from ``h_seq``. A spike gradient that is one value per step for all neurons (the gradient of a sum: strides 0 after
the time dim) is read in place instead of being materialised; a missing one is a zero of that shape.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Protocol

import torch

from common.kernels.params import ChargeParams

# True while a recomputed block (common.memory) runs its forward: autograd keeps none of the tensors saved there
# (they are recomputed in backward), so the kernels skip writing h_seq and save a placeholder of its shape.
_DISCARDED = contextvars.ContextVar("saved_tensors_discarded", default=False)


@contextlib.contextmanager
def saved_tensors_discarded():
    """Mark a forward whose saved tensors are dropped and recomputed before backward (checkpointing)."""
    token = _DISCARDED.set(True)
    try:
        yield
    finally:
        _DISCARDED.reset(token)


class LIFKernels(Protocol):
    def forward(self, x_seq, v_init, p: ChargeParams, spike_seq, h_seq, v_last) -> None:
        """Fill ``spike_seq``, ``h_seq`` (None: not stored) and ``v_last`` (contiguous tensors)."""

    def backward(self, grad_spike_seq, broadcast: bool, grad_v_last, h_seq, grad_x_seq, grad_v_init,
                 p: ChargeParams) -> None:
        """Fill ``grad_x_seq`` and ``grad_v_init`` (None: not needed); ``grad_v_last`` None is zero;
        ``broadcast``: ``grad_spike_seq[t]`` is one value read at ``t * stride(0)``."""


def _forward(kernels: LIFKernels, x_seq, v_init, p: ChargeParams, store_h: bool):
    spike_seq, v_last = torch.empty_like(x_seq), torch.empty_like(v_init)
    h_seq = torch.empty_like(x_seq) if store_h else None
    kernels.forward(x_seq, v_init, p, spike_seq, h_seq, v_last)
    return spike_seq, h_seq, v_last


class CompiledMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v_init, p: ChargeParams, kernels: LIFKernels):
        discarded = _DISCARDED.get()
        spike_seq, h_seq, v_last = _forward(kernels, x_seq, v_init, p, store_h=not discarded)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None, not as a zero-filled tensor
        ctx.save_for_backward(x_seq.new_empty(()).expand(x_seq.shape) if discarded else h_seq)
        ctx.p, ctx.kernels = p, kernels
        return spike_seq, v_last

    @staticmethod
    def backward(ctx, grad_spike_seq, grad_v_last):
        (h_seq,) = ctx.saved_tensors
        if grad_spike_seq is None:
            grad_spike_seq = h_seq.new_zeros(()).expand_as(h_seq)
        broadcast = all(stride == 0 for stride in grad_spike_seq.stride()[1:])
        if not broadcast:
            grad_spike_seq = grad_spike_seq.contiguous()
        grad_v_last = None if grad_v_last is None else grad_v_last.contiguous()
        grad_x_seq = torch.empty_like(h_seq)
        grad_v_init = torch.empty_like(h_seq[0]) if ctx.needs_input_grad[1] else None
        ctx.kernels.backward(grad_spike_seq, broadcast, grad_v_last, h_seq, grad_x_seq, grad_v_init, ctx.p)
        return grad_x_seq, grad_v_init, None, None


def run_lif(kernels: LIFKernels, x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams):
    """``(spike_seq, v_last)``: one autograd node when a gradient is needed, else a forward without ``h_seq``."""
    x_seq, v_init = x_seq.contiguous(), v_init.to(x_seq.dtype).contiguous()
    if torch.is_grad_enabled() and (x_seq.requires_grad or v_init.requires_grad):
        return CompiledMultiStep.apply(x_seq, v_init, p, kernels)
    spike_seq, _, v_last = _forward(kernels, x_seq, v_init, p, store_h=False)
    return spike_seq, v_last
