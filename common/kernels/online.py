"""Online-LIF kernels (kind ``online_lif``, no gradient through time): ``torch`` (reference loop), ``fused`` (torch
ops) and ``cupy``; registered in :mod:`common.kernels`.

Per step, with ``threshold(h)`` a caller-supplied no-grad policy (e.g. OTS: ``mu + sd r`` of the whole layer)::

    h[t] = decay sg(v[t-1]) + x[t];   theta[t] = threshold(h[t]);   s[t] = H(h[t] - theta[t])
    v[t] = h[t] - sg(s[t]) theta[t]

so ``grad_x[t] = grad_s[t] g'(h[t] - theta[t])`` (+ ``grad_v_last`` at the last step) and ``v_init`` gets none.
``fused``/``cupy`` build one autograd node per call that saves ``h_seq`` and the ``T`` thresholds; ``cupy`` runs
a charge and a fire kernel per step (theta stays on the device: no host sync) and one elementwise backward kernel.
The global statistics behind theta need a reduction between charge and fire, so time cannot be looped in-kernel.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from common.kernels import cupy_codegen as cg
from common.kernels import cupy_ops


@dataclass(frozen=True)
class OnlineParams:
    """``decay`` of the membrane; ``threshold(h_t)`` (float or 0-dim tensor) is called once per step, in order."""

    decay: float
    threshold: Callable


def online_torch(x_seq, v_init, p: OnlineParams, surrogate):
    """Autograd per step (reference)."""
    v, spikes = v_init, []
    for x in x_seq.unbind(0):
        v = p.decay * v.detach() + x
        theta = p.threshold(v)
        s = surrogate(v - theta)
        v = v - s.detach() * theta
        spikes.append(s)
    return torch.stack(spikes), v


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _forward_torch(x_seq, v, decay, threshold, h_seq, theta_seq):
    spike_seq = torch.empty_like(x_seq)
    for t, x in enumerate(x_seq.unbind(0)):
        h = decay * v + x
        h_seq[t] = h
        theta_seq[t] = threshold(h)
        fired = h >= theta_seq[t]
        spike_seq[t] = fired
        v = torch.where(fired, h - theta_seq[t], h).to(h.dtype)
    return spike_seq, v


def _forward_cupy(variant):
    def run(x_seq, v, decay, threshold, h_seq, theta_seq):
        spike_seq, v, n = torch.empty_like(x_seq), v.clone(), v.numel()
        for t in range(x_seq.shape[0]):
            cupy_ops.launch(variant, "charge", x_seq.device, x_seq=x_seq, v=v, h_seq=h_seq, decay=decay, t=t, n=n)
            theta_seq[t] = threshold(h_seq[t])
            cupy_ops.launch(variant, "fire", x_seq.device, h_seq=h_seq, spike_seq=spike_seq, v=v,
                            theta=theta_seq, t=t, n=n)
        return spike_seq, v

    return run


def _backward_torch(grad_spike_seq, h_seq, theta_seq, surrogate):
    over = h_seq - theta_seq.view(-1, *([1] * (h_seq.dim() - 1))).to(h_seq.dtype)
    return grad_spike_seq * surrogate.derivative(over)


def _backward_cupy(variant):
    def run(grad_spike_seq, h_seq, theta_seq, surrogate):
        grad_x_seq, n = torch.empty_like(h_seq), h_seq[0].numel()
        cupy_ops.launch(variant, "bwd", h_seq.device, grad_spike_seq=grad_spike_seq, h_seq=h_seq,
                        grad_x_seq=grad_x_seq, theta=theta_seq, steps=h_seq.shape[0], n=n)
        return grad_x_seq

    return run


class OnlineFused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v_init, decay, threshold, surrogate, impl):
        forward, ctx.backward_impl = impl
        h_seq = torch.empty_like(x_seq)
        theta_seq = torch.empty(x_seq.shape[0], dtype=_compute_dtype(x_seq), device=x_seq.device)
        spike_seq, v_last = forward(x_seq, v_init, decay, threshold, h_seq, theta_seq)
        ctx.set_materialize_grads(False)  # unused outputs: None gradients, no zero-filled tensors
        ctx.save_for_backward(h_seq, theta_seq)
        ctx.surrogate = surrogate
        return spike_seq, v_last

    @staticmethod
    def backward(ctx, grad_spike_seq, grad_v_last):
        h_seq, theta_seq = ctx.saved_tensors
        if grad_spike_seq is None:
            grad_x_seq = torch.zeros_like(h_seq)
        else:
            grad_x_seq = ctx.backward_impl(grad_spike_seq.contiguous(), h_seq, theta_seq, ctx.surrogate)
        if grad_v_last is not None:  # v_last = h[T-1] - sg(s) theta: d v_last / d x[T-1] = 1
            grad_x_seq[-1] += grad_v_last
        return grad_x_seq, None, None, None, None, None


def _run(x_seq, v_init, decay, threshold, surrogate, impl):
    x_seq, v_init = x_seq.contiguous(), v_init.detach().to(x_seq.dtype).contiguous()
    if torch.is_grad_enabled() and x_seq.requires_grad:
        return OnlineFused.apply(x_seq, v_init, decay, threshold, surrogate, impl)
    with torch.no_grad():
        h_seq = torch.empty_like(x_seq)
        theta_seq = torch.empty(x_seq.shape[0], dtype=_compute_dtype(x_seq), device=x_seq.device)
        return impl[0](x_seq, v_init, decay, threshold, h_seq, theta_seq)


def online_fused(x_seq, v_init, p: OnlineParams, surrogate):
    """One autograd node per call in torch ops (any device); saves ``h_seq`` and theta."""
    return _run(x_seq, v_init, p.decay, p.threshold, surrogate, (_forward_torch, _backward_torch))


def online_cupy(x_seq, v_init, p: OnlineParams, surrogate):
    """Generated charge / fire / backward CUDA kernels; saves ``h_seq`` and theta."""
    variant = cg.Variant.make("online_lif", cupy_ops.variant_dtype(x_seq), surrogate)
    return _run(x_seq, v_init, p.decay, p.threshold, surrogate, (_forward_cupy(variant), _backward_cupy(variant)))
